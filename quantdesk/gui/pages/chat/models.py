"""The Chat page's model: pick one (the library, or a GGUF file), load it, unload it, watch it.

Loading runs ``chat.load.start_model`` on the thread pool; Cancel sets its event, and a load that
was cancelled or superseded (each load has a generation number) is stopped, not shown. A failed load
is told from the failure's type (:func:`load_failure_text`), never from the words of its message.
"""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from quantdesk.base.errors import QuantDeskError, explain
from quantdesk.base.units import fmt_bytes
from quantdesk.chat.engine import Engine, LoadReport, PlannedLoad
from quantdesk.chat.load import start_model
from quantdesk.chat.sampling import defaults_for
from quantdesk.chat.session import ChatSession
from quantdesk.gui.pages.chat.workers import sentence
from quantdesk.gui.widgets.status_text import breakable
from quantdesk.gui.tasks import run_task

log = logging.getLogger("quantdesk.gui")

OPEN_FILE = "__open_file__"
FILE_ROLE = Qt.ItemDataRole.UserRole + 1  # marks models opened as files (kept when the library list refreshes)
# Chat's own next step where it knows better than explain()'s general advice for that type
MISSING_FILE_STEP = "Choose another model, or add it to the library again."


def kv_suffix(kv_type: str | None) -> str:
    """" (q8_0 KV cache)" when the KV cache is quantized; nothing for the default f16."""
    return f" ({kv_type} KV cache)" if kv_type and kv_type != "f16" else ""


def load_failure_text(name: str, error: BaseException) -> str:
    """"Could not load NAME: what went wrong. What to do." — the next step from the error's type
    (``explain``: a damaged GGUF, a model process that failed, the raiser's own ``next_step``)."""
    told = explain(error, MISSING_FILE_STEP if isinstance(error, FileNotFoundError) else None)
    what = str(error) if isinstance(error, QuantDeskError) else told.sentence
    what = what.strip().rstrip(".")
    return f"Could not load {name}: {what}." + (f" {told.next_step}" if told.next_step else "")


def _ignore(_error: Exception) -> None:
    """Stopping a model that is already gone has nothing left to report."""


class ModelsMixin:
    """The model list, loading (cancellable), unloading, and noticing a model process that died."""

    def refresh_models(self) -> None:
        """Library models, any files opened this session, then "Open GGUF file…"."""
        from quantdesk.library.index import Library

        current = self.model_path()
        opened = [(self.model_combo.itemText(i), self.model_combo.itemData(i))
                  for i in range(self.model_combo.count())
                  if self.model_combo.itemData(i, FILE_ROLE)]
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        try:
            models = Library().models()
        except Exception as exc:  # noqa: BLE001 - an unreadable library must not take the page down
            models = []
            self.status_label.setText(f"The model library could not be read ({exc}).")
        for m in models:
            self.model_combo.addItem(f"{m.name} — {m.quant or '?'}, {fmt_bytes(m.size)}", m.path)
            self.model_combo.setItemData(self.model_combo.count() - 1, m.path, Qt.ItemDataRole.ToolTipRole)
        for text, path in opened:
            if self.model_combo.findData(path) < 0:
                self._add_file_item(path, text)
        self.model_combo.addItem("Open GGUF file…", OPEN_FILE)
        self.model_combo.blockSignals(False)
        if current:
            self.select_model(current)
        elif models:
            self.model_combo.setCurrentIndex(0)
        self._last_model_index = self.model_combo.currentIndex()

    def _add_file_item(self, path: str, text: str | None = None) -> int:
        index = max(0, self.model_combo.findData(OPEN_FILE))
        if self.model_combo.findData(OPEN_FILE) < 0:
            index = self.model_combo.count()
        self.model_combo.insertItem(index, text or Path(path).name, path)
        self.model_combo.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        self.model_combo.setItemData(index, True, FILE_ROLE)
        return index

    def model_path(self) -> str | None:
        data = self.model_combo.currentData()
        return data if isinstance(data, str) and data != OPEN_FILE else None

    def select_model(self, path: str) -> bool:
        """Pick a model by path, adding it when it is a GGUF file outside the library."""
        if not path:
            return False
        index = self.model_combo.findData(path)
        if index < 0:
            if not Path(path).is_file():
                return False
            index = self._add_file_item(path)
        self.model_combo.setCurrentIndex(index)
        self._last_model_index = index
        return True

    def _model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) != OPEN_FILE:
            self._last_model_index = index
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", "", "GGUF models (*.gguf)")
        if path and self.select_model(path):
            return
        self.model_combo.setCurrentIndex(self._last_model_index)

    def _model_label(self, path: str) -> str:
        from quantdesk.library.index import Library, model_name_for

        try:
            found = Library().find(path)
        except Exception:  # noqa: BLE001 - the file name is a fine label
            found = None
        return found.name if found else model_name_for(path)

    def set_context(self, ctx: int) -> None:
        """Pick ``ctx`` in the Context list (added when it is not one of the usual sizes)."""
        index = self.ctx_combo.findData(ctx)
        if index < 0:
            self.ctx_combo.addItem(f"{ctx:,}", ctx)
            index = self.ctx_combo.count() - 1
        self.ctx_combo.setCurrentIndex(index)

    def load_model(self, path: str | None = None, ctx: int | None | str = "ui", kv_type: str | None = None) -> None:
        """Plan and start the model off the GUI thread; Cancel ends the child it started.
        ``kv_type`` (q8_0, q4_0, …) quantizes the KV cache as planned on Discover; None keeps f16."""
        if self._streaming:
            self.show_error("A reply is still being written: stop it first, then load another model.")
            return
        path = path or self.model_path()
        if not path:
            self.show_error("Pick a model first: choose one from the library in the Model list, "
                            "or “Open GGUF file…”.")
            return
        if ctx == "ui":
            ctx = self.ctx_combo.currentData()
        if self.loading:
            self.cancel_load()
        self.unload_model(quiet=True)
        name = self._model_label(path)
        self._load_generation += 1
        generation = self._load_generation
        cancel, done = threading.Event(), threading.Event()
        self._load_cancel, self._load_done = cancel, done
        hw = self.hardware  # the machine planned for now (the app's, when the page has its context)
        options = self.engine_options()  # the server's address and key, when serving

        def job() -> tuple[Engine, PlannedLoad]:
            try:
                return start_model(path, hw, ctx, kv_type or "f16", cancel=cancel, **options)
            finally:
                done.set()

        self.hide_error()
        self._loading_name = name
        self._loading_path = path
        ctx_text = (f"{ctx:,} tokens of context" if ctx else "the planner's context") + kv_suffix(kv_type)
        self.report_label.setText(f"Loading <b>{breakable(name)}</b> with {ctx_text}…")
        self.loading_bar.show()
        self._update_actions()
        run_task(lambda _: job(), lambda result: self._load_succeeded(result, generation, path, name, ctx, kv_type),
                 lambda error: self._load_failed(error, generation, name))

    @property
    def loading(self) -> bool:
        return self._load_cancel is not None

    def cancel_load(self) -> None:
        if self._load_cancel is None:
            return
        self._load_cancel.set()
        self._load_generation += 1  # whatever the job returns now is stopped, not shown
        self._load_cancel = None
        self.loading_bar.hide()
        self.report_label.setText(f"Loading {html.escape(self._loading_name)} was cancelled. {self._idle_hint()}")
        self._update_actions()

    def _load_succeeded(self, result: tuple[Engine, PlannedLoad], generation: int, path: str, name: str,
                        ctx: int | None, kv_type: str | None = None) -> None:
        engine, planned = result
        if generation != self._load_generation or self._shut_down:
            run_task(lambda _: engine.stop(), None, _ignore)
            return
        self._load_cancel = None
        self.loading_bar.hide()
        self.engine = engine
        self.model_name = name
        self._loaded_args = (path, name, ctx, kv_type)
        self._planned_notes = list(planned.notes)
        self._death_reported = False
        metadata = dict(engine.report.raw.get("metadata", {})) if engine.report else {}
        self._model_defaults = defaults_for(metadata)
        self._template_note = engine.template.note if engine.template else None
        self.session = None
        self._ensure_session()
        self._populate_settings()
        self.report_label.setText(self._report_html(engine.report, name))
        self._server_loaded()
        self._update_actions()
        self.render(force=True)
        self.input.setFocus()
        self.model_loaded.emit()

    def _load_failed(self, error: Exception, generation: int, name: str) -> None:
        if generation != self._load_generation:
            return  # cancelled or superseded: already told
        self._load_cancel = None
        self.loading_bar.hide()
        self.report_label.setText(f"No model loaded. {self._idle_hint()}")
        if self._server_load_failed(error):
            return  # said, and the model loads again without the server
        if not isinstance(error, (QuantDeskError, OSError)):
            log.warning("loading %s failed", name, exc_info=error)
        self.show_error(load_failure_text(name, error))
        self._update_actions()

    def _report_html(self, report: LoadReport | None, name: str) -> str:
        if report is None:
            return ""
        seconds = f"{report.load_s:.1f}" if report.load_s >= 1 else f"{report.load_s:.2f}"
        lines = [f"<b>{breakable(name)}</b> loaded in {seconds} s — {html.escape(report.summary)}. "
                 f"{fmt_bytes(report.ram)} RAM in use · {report.n_ctx:,} tokens of context"
                 f"{kv_suffix(self._loaded_args[3] if self._loaded_args else None)}."]
        for note in self._planned_notes + report.notes:
            lines.append(f"⚠ {html.escape(note[0].upper() + note[1:])}.")
        if self._template_note:
            lines.append(f"⚠ Chat template: {html.escape(self._template_note)}.")
        return "<br>".join(lines)

    def reload_model(self) -> None:
        """Load the last model again with the same context (after a crash, or to start fresh)."""
        if self._loaded_args is None:
            self.load_model()
            return
        path, _name, ctx, kv_type = self._loaded_args
        self.load_model(path, ctx, kv_type)

    def unload_model(self, quiet: bool = False) -> None:
        """Stop the model's process (off the GUI thread); conversations stay."""
        if self._streaming:
            self.stop()
            return
        engine, self.engine, self.session = self.engine, None, None
        if engine is not None:
            run_task(lambda _: engine.stop(), None, _ignore)
        self.serving = None
        if not quiet:  # the user unloaded: the server stops with the model (a reload keeps serving)
            self._serve_wanted = None
        self._show_server_state()
        if not quiet:
            self.report_label.setText(f"Model unloaded. {self._idle_hint()}")
            self.hide_error()
            self.render(force=True)
        self._update_actions()

    def models_in_use(self) -> set[str]:
        """The model file the chat has loaded or is loading."""
        if self.engine is not None and self._loaded_args is not None:
            return {self._loaded_args[0]}
        if self.loading and self._loading_path:
            return {self._loading_path}
        return set()

    def release_model(self, path: str) -> None:
        """Unload ``path`` (a delete or a folder move needs it): stops a reply or a load first."""
        if path not in self.models_in_use():
            return
        note = f"Model unloaded: {html.escape(Path(path).name)} was deleted or moved. {self._idle_hint()}"
        if self.loading:
            self.cancel_load()
        if self._streaming:  # the reply stops within a token; the model goes when it has
            self._unload_note = note
            self.stop()
            return
        self.unload_model()
        self.report_label.setText(note)

    def _idle_hint(self) -> str:
        return "Pick a model from the library and press Load."

    def _check_engine(self) -> None:
        """A model process that dies while idle is reported, not discovered at the next Send; one
        loaded again after a forced Stop is shown as reloading, then as loaded."""
        self._poll_served()
        engine = self.engine
        if engine is not None and engine.restarting.is_set():
            if not self._reloading_shown:
                self._reloading_shown = True
                self.report_label.setText(f"Loading {breakable(self.model_name or 'the model')} again: it did "
                                          "not stop in time, so its process was ended…")
                self._update_actions()
            return
        if self._reloading_shown and engine is not None:
            self._reloading_shown = False
            if engine.restart_error is not None:
                self._death_reported = True
                self.show_error(f"{sentence(str(engine.restart_error))} Reload the model to go on.", reload=True)
            else:
                self.report_label.setText(self._report_html(engine.report, self.model_name or ""))
            self._update_actions()
            return
        if self.engine is None or self._streaming or self._death_reported or self.engine.alive:
            return
        self._death_reported = True
        self.report_label.setText(f"{breakable(self.model_name or 'The model')} is not running.")
        self.show_error(f"{sentence(self.engine.death_message())} Reload the model to go on.", reload=True)
        self._update_actions()

    def _ensure_session(self) -> ChatSession | None:
        if self.engine is None or self.engine.report is None or self.conversation_id is None:
            return None
        if self.session is None or self.session.conversation_id != self.conversation_id:
            self.session = ChatSession(self.engine, self.store, self.conversation_id, model_name=self.model_name)
        return self.session

    @property
    def model_ready(self) -> bool:
        return (self.engine is not None and self.engine.report is not None and self.engine.alive
                and not self.engine.restarting.is_set())

