"""Discover: find a model (a hub search, the bundled catalog when offline, a repo id or a local
.gguf), see how each of its quants would run here — fit, speed, quality loss and where the
memory goes — and get the best fit running in Chat with one click."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.errors import QuantDeskError
from quantdesk.catalog.search import SearchResults, search
from quantdesk.gui.best_fit import NO_BAR, BestFitDownload, BestFitProgress
from quantdesk.gui.context import AppContext
from quantdesk.gui.tasks import TaskSlot
from quantdesk.gui.widgets.discover_results import ResultsList
from quantdesk.gui.widgets.plan_view import PlanTitle, PlanView, esc, size_text
from quantdesk.planning.discover import quantize_suggestion
from quantdesk.planning.plan import NoGGUFFiles, Plan, kind_of, plan_named, replan
from quantdesk.quantize.source import CheckpointOffer, checkpoint_offer

CONTEXTS = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
SORTS = {"Most downloaded": "downloads", "Most liked": "likes", "Recently updated": "recent", "Trending": "trending"}


class DiscoverPage(QWidget):
    searched = Signal(object)  # SearchResults, once shown
    planned = Signal(object)  # Plan, once shown

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.results: SearchResults | None = None
        self.plan: Plan | None = None
        self.ref = ""  # what is planned: a repo id or a file path
        self._ref_offline = False
        self._last_search: str | None = None
        self._then_download = False
        self._searching, self._planning = TaskSlot(self), TaskSlot(self)
        self._checkpoint_offer: CheckpointOffer | None = None
        self.best_fit = BestFitDownload(context, self)
        self._build()
        self.best_fit.active_changed.connect(lambda _: self._update_actions())
        context.hardware_changed.connect(lambda _: self.replan())
        context.catalog_refreshed.connect(lambda _: self._catalog_refreshed())
        context.library_changed.connect(self._update_actions)  # a download landed: the button opens it now
        self._update_actions()

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search models (Ctrl+F) — words, a repo id (owner/name) or a .gguf path")
        self.search_edit.setAccessibleName("Search models")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.returnPressed.connect(self.submit)
        self.search_button = self._button("Search", "Search", self.submit)
        self.sort_combo = QComboBox()
        for label, key in SORTS.items():
            self.sort_combo.addItem(label, key)
        self.sort_combo.setAccessibleName("Sort results")
        self.sort_combo.setToolTip("How hub results are ordered (the offline catalog lists smallest first)")
        self.sort_combo.currentTextChanged.connect(self._resort)
        browse = self._button("Open file…", "Open a local GGUF file", self._browse)
        row.addWidget(self.search_edit, 1)
        row.addWidget(self.sort_combo)
        row.addWidget(self.search_button)
        row.addWidget(browse)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.source_label = QLabel()
        self.source_label.setAccessibleName("Results source")
        self.spinner = QProgressBar()
        self.spinner.setRange(0, 0)
        self.spinner.setFixedWidth(70)
        self.spinner.setMaximumHeight(12)
        self.spinner.setTextVisible(False)
        self.spinner.setAccessibleName("Working")
        self.status = QLabel()
        self.status.setAccessibleName("Status")
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long text never
        # widens the window; the tooltip has it whole
        row.addWidget(self.source_label)
        row.addWidget(self.status, 1)
        row.addWidget(self.spinner)
        layout.addLayout(row)

        self.results_list = ResultsList()
        self.results_list.currentRowChanged.connect(self._result_chosen)
        detail = QWidget()
        d = QVBoxLayout(detail)
        d.setContentsMargins(6, 0, 0, 0)
        self.title = PlanTitle()
        d.addWidget(self.title)
        row = QHBoxLayout()
        self.ctx_slider = QSlider(Qt.Orientation.Horizontal)
        self.ctx_slider.setRange(0, len(CONTEXTS) - 1)
        self.ctx_slider.setValue(CONTEXTS.index(4096))
        self.ctx_slider.setPageStep(1)
        self.ctx_slider.setAccessibleName("Context length")
        self.ctx_label = QLabel()
        self.ctx_label.setMinimumWidth(self.ctx_label.fontMetrics().horizontalAdvance("131,072 tokens") + 4)
        self.kv_combo = QComboBox()
        self.kv_combo.addItems(["f16", "q8_0", "q4_0"])
        self.kv_combo.setAccessibleName("KV cache type")
        self.kv_combo.setToolTip("KV cache type: q8_0 halves the cache at a small quality cost")
        row.addWidget(QLabel("Context:"))
        row.addWidget(self.ctx_slider, 1)
        row.addWidget(self.ctx_label)
        row.addWidget(QLabel("KV cache:"))
        row.addWidget(self.kv_combo)
        d.addLayout(row)

        row = QHBoxLayout()
        self.best_button = self._button("Download best fit", "Download best fit", self.download_best_fit,
                                        "Plan, download, verify and open the best quant for this machine in Chat")
        font = QFont(self.best_button.font())
        font.setBold(True)
        self.best_button.setFont(font)
        self.best_button.setMinimumHeight(34)
        self.best_button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.best_button.setStyleSheet(
            "QPushButton { background: #1565C0; color: white; border-radius: 5px; padding: 4px 14px; }"
            "QPushButton:hover { background: #1976D2; } QPushButton:disabled { background: #9FB3C8; }")
        self.quantize_button = self._button("Quantize locally…", "Quantize locally", self._quantize)
        self.quantize_button.setMinimumHeight(34)
        self.progress = BestFitProgress(self.best_fit)
        row.addWidget(self.best_button)
        row.addWidget(self.quantize_button)
        row.addWidget(self.progress, 1)
        d.addLayout(row)

        self.view = PlanView()
        d.addWidget(self.view, 1)

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(self.results_list)
        main.addWidget(detail)
        main.setStretchFactor(1, 1)
        main.setSizes([270, 680])
        main.setChildrenCollapsible(False)
        layout.addWidget(main, 1)
        self.spinner.hide()

        # re-plan live while the slider moves, without a plan per pixel
        self._debounce = QTimer(self, singleShot=True, interval=150, timeout=self.replan)
        self.ctx_slider.valueChanged.connect(self._ctx_changed)
        self.kv_combo.currentTextChanged.connect(lambda _: self._debounce.start())
        self._ctx_changed()
        # Ctrl+F wherever the focus is while the page is shown (a hidden page's shortcuts never fire);
        # Esc only inside the page, where it cannot take Esc from anything else
        for keys, slot, scope in ((QKeySequence.StandardKey.Find, self.focus_search, Qt.ShortcutContext.WindowShortcut),
                                  ("Esc", self.stop_waiting, Qt.ShortcutContext.WidgetWithChildrenShortcut)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(scope)
            shortcut.activated.connect(slot)

    def _button(self, text: str, name: str, slot, tip: str | None = None) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(name)
        if tip:
            button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def showEvent(self, event) -> None:  # noqa: N802 - Qt naming
        """The first time the page is seen with nothing asked yet, list the popular GGUF models."""
        if self._last_search is None and not self.ref and not self._searching.busy:
            self.search("")
        super().showEvent(event)

    # --- searching -------------------------------------------------------------------------
    def focus_search(self) -> None:
        self.search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_edit.selectAll()

    def open_ref(self, text: str) -> None:
        """Search for, or plan, what was typed (as ``gui --model`` does at start)."""
        self.search_edit.setText(text)
        self.submit()

    def submit(self) -> None:
        text = self.search_edit.text().strip()
        kind = kind_of(text)
        if kind == "file":
            self._last_search = None
            self.results_list.show_rows([])
            self.source_label.setText("<b>Local file</b>")
            self.plan_model(text)
        elif kind == "repo":  # plan it at once; the search only lists it with its neighbours
            self.search(text, select=text)
            self.plan_model(text)
        else:
            self.search(text)

    def search(self, text: str, select: str | None = None) -> None:
        self._last_search = text
        sort = self.sort_combo.currentData()
        self._searching.run(lambda _: search(text, sort=sort), lambda found: self._show_results(found, select),
                            self._search_failed)
        what = f"“{text}”" if text else "popular GGUF models"
        self._set_status(f"Searching for {what}…")

    def _resort(self, _sort: str) -> None:
        if self._last_search is not None:
            self.search(self._last_search, select=self.ref or None)

    def _show_results(self, found: SearchResults, select: str | None) -> None:
        self.results = found
        self.results_list.show_rows(found.rows)
        count = f"{len(found.rows)} model{'s' if len(found.rows) != 1 else ''}"
        offline = " · the hub cannot be reached" if found.source == "catalog" else ""
        self.source_label.setText(f"<b>{esc(found.label)}</b> · {count}{offline}")
        self.source_label.setToolTip(found.reason or "")
        if not found.rows:
            self._set_status(f"No GGUF models match “{found.text}”.")
        elif not self._planning.busy:  # a plan under way keeps its own status
            self._set_status("")
        if select:
            self.results_list.select_repo(select)
        elif found.rows:
            self.results_list.setCurrentRow(0)
        self.searched.emit(found)

    def _search_failed(self, exc: BaseException) -> None:
        self._set_status("The search failed.")
        self.context.errors.report("Discover", exc)

    def _catalog_refreshed(self) -> None:
        """Offline results came from the catalog that just changed: list them again from the new one."""
        if self.results is not None and self.results.source == "catalog" and self._last_search is not None:
            self.search(self._last_search, select=self.ref or None)

    def _result_chosen(self, row: int) -> None:
        if row >= 0 and self.results is not None:
            self.plan_model(self.results.rows[row].repo_id, offline=self.results.source == "catalog")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.open_ref(path)

    def stop_waiting(self) -> None:
        """Esc: stop waiting for a search or plan (an in-flight request's answer is dropped)."""
        if self._searching.busy or self._planning.busy:
            self._searching.cancel()
            self._planning.cancel()
            self._then_download = False
            self._set_status("Stopped.")

    # --- planning --------------------------------------------------------------------------
    @property
    def ctx(self) -> int:
        return CONTEXTS[self.ctx_slider.value()]

    @property
    def kv_type(self) -> str:
        return self.kv_combo.currentText()

    def _ctx_changed(self) -> None:
        self.ctx_label.setText(f"{self.ctx:,} tokens")
        self._debounce.start()

    def plan_model(self, ref: str, offline: bool = False) -> None:
        """Plan every quant of ``ref`` off the GUI thread (remote headers: the first megabytes only)."""
        self.ref, self._ref_offline, self.plan = ref, offline, None
        if not self.best_fit.active:  # an earlier download's last word is about another model
            self.progress.show_progress("", NO_BAR)
        self._show_plan(None)
        self._checkpoint_offer = None
        hw, ctx, kv = self.context.hardware, self.ctx, self.kv_type
        self._planning.run(lambda _: _plan_or_offer(ref, hw, ctx, kv, offline), self._planned, self._plan_failed)
        how = "reading its files' headers, nothing is downloaded" if kind_of(ref) == "repo" and not offline else ""
        self._set_status(f"Planning {ref}{f' ({how})' if how else ''}…")

    def replan(self) -> None:
        """The same files at the slider's context and the chosen KV type, from the headers already read."""
        if self.plan is None:
            return
        previous, hw, ctx, kv = self.plan, self.context.hardware, self.ctx, self.kv_type
        if (previous.ctx, previous.kv_type, previous.hardware) == (ctx, kv, hw):
            return
        self._planning.run(lambda _: replan(previous, hw, ctx, kv), self._planned, self._plan_failed)
        self._set_status(f"Re-planning at {ctx:,} tokens…")

    def _current(self, plan: Plan) -> bool:
        return (plan.ctx, plan.kv_type, plan.hardware) == (self.ctx, self.kv_type, self.context.hardware)

    def _planned(self, plan: Plan | CheckpointOffer) -> None:
        if isinstance(plan, CheckpointOffer):  # no GGUF files, but a checkpoint to quantize locally
            self._then_download = False  # a best-fit click waiting for this plan has nothing to download
            self._checkpoint_offer = plan
            self._set_status("No GGUF files here, but a checkpoint to quantize locally.")
            self.view.notes.setText(esc(plan.summary()) + ". It is fetched and verified file by file, converted to "
                                    "GGUF without leaving the app, then quantized to the type you choose on the "
                                    "Quantize page; the result opens in Chat from there.")
            self._update_actions()
            return
        self.plan = plan
        self._set_status("")
        self._show_plan(plan)
        if not self._current(plan):  # the slider moved while the headers were read
            self.replan()
        elif self._then_download:
            self._then_download = False
            self.best_fit.start(plan)
        self.planned.emit(plan)

    def _plan_failed(self, exc: BaseException) -> None:
        self._then_download = False
        self._set_status(f"Could not plan {self.ref}.")
        self.context.errors.report("Discover", exc)

    def _show_plan(self, plan: Plan | None) -> None:
        self.view.show_plan(plan)
        if self.ref:
            self.title.show_ref(self.ref, plan)
        self._update_actions()

    # --- actions ---------------------------------------------------------------------------
    def download_best_fit(self) -> None:
        """One click: plan (if not already planned here), download the pick, verify it, open it in Chat."""
        if not self.ref:
            self._set_status("Pick a model first: search above, then choose one on the left.")
            return
        if kind_of(self.ref) == "file":
            self.context.open_in_chat_planned.emit(str(self.ref), self.ctx, self.kv_type)
            return
        if self.plan is not None and self._current(self.plan) and not self._planning.busy:
            self.best_fit.start(self.plan)
            return
        self._then_download = True
        if self.plan is not None:
            self.replan()
        elif not self._planning.busy:
            self.plan_model(self.ref, self._ref_offline)

    def _quantize(self) -> None:
        if self._checkpoint_offer is not None and self.plan is None:
            self.context.quantize_requested.emit(self._checkpoint_offer.repo, "")
            return
        offer = quantize_suggestion(self.plan) if self.plan else None
        if offer is not None:
            self.context.quantize_requested.emit(offer.source, offer.type)

    def _update_actions(self) -> None:
        plan = self.plan
        rec = plan.recommended if plan else None
        local = bool(self.ref) and kind_of(self.ref) == "file"
        if local:
            self.best_button.setText("Open in Chat")
        elif rec is not None and self._in_library(plan.model, rec.file):
            self.best_button.setText(f"Open in Chat: {rec.quant} (in the library)")
        elif rec is not None:
            self.best_button.setText(f"Download best fit: {rec.quant} · {size_text(rec)}")
        else:
            self.best_button.setText("Download best fit")
        self.best_button.setEnabled(bool(self.ref) and not self.best_fit.active
                                    and (plan is None or rec is not None or plan.source == "file"))
        checkpoint = getattr(self, "_checkpoint_offer", None) if plan is None else None
        if checkpoint is not None:
            self.best_button.setEnabled(False)
            self.quantize_button.setVisible(True)
            self.quantize_button.setText("Quantize locally (from its checkpoint)…")
            self.quantize_button.setToolTip(checkpoint.summary())
            return
        offer = quantize_suggestion(plan) if plan else None
        self.quantize_button.setVisible(offer is not None)
        if offer is not None:
            self.quantize_button.setText(f"Quantize locally to {offer.type}…" if offer.type
                                         else "Quantize locally…")
            self.quantize_button.setToolTip(offer.why)

    def _in_library(self, repo: str, file: str) -> bool:
        """Whether the pick is downloaded already (then the button opens it instead)."""
        from quantdesk.library.download import final_path

        try:
            path = final_path(repo, file)
        except QuantDeskError:
            return False
        return path.is_file() and self.context.library().find(str(path)) is not None

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setToolTip(text)
        self.spinner.setVisible(self._searching.busy or self._planning.busy)

    def shutdown(self) -> None:
        """The window closes: answers still in flight are dropped."""
        self._debounce.stop()
        self._searching.cancel()
        self._planning.cancel()
        self.best_fit.cancel_lookup()


def _plan_or_offer(ref: str, hw, ctx: int, kv: str, offline: bool) -> Plan | CheckpointOffer:
    """The plan; for a hub repo with no GGUF files, the checkpoint it offers to quantize locally."""
    try:
        return plan_named(ref, hw, ctx, kv, offline)
    except NoGGUFFiles as exc:
        offer = checkpoint_offer(exc.repo_id)
        if offer is None:
            raise
        return offer
