"""Library page: the installed models with quant, size, origin and verification state; chat, verify,
quantize, show in folder, delete, and import of GGUF files already on disk (dialog or drag and drop).

Verify and import hash whole files (gigabytes), so they run as a task on a thread of its own with a progress
strip and Cancel; one at a time, since both read the disk flat out.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.settings import models_dir
from quantdesk.gui.theme import MUTED, themed_style, tone
from quantdesk.base.units import fmt_bytes
from quantdesk.gui.context import AppContext
from quantdesk.gui.widgets.status_text import breakable
from quantdesk.gui.tasks import Task, TaskControl, run_task
from quantdesk.gui.widgets.library_model import NAME, SORT_ROLE, LibraryTableModel
from quantdesk.gui.widgets.progress_strip import ProgressStrip, TaskProgress
from quantdesk.library.index import HashingCancelled, ImportOutcome, Library, LibraryModel


def dropped_paths(urls: Iterable[QUrl]) -> list[str]:
    """The local .gguf files and folders among dropped URLs."""
    paths = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
    return [str(p) for p in paths if p.is_dir() or p.suffix.lower() == ".gguf"]


def _names(models: list[LibraryModel]) -> str:
    """A few names, or a count: the status line must not grow with a folder of fifty models."""
    return ", ".join(m.name for m in models) if len(models) <= 3 else f"{len(models)} models"


class LibraryPage(QWidget):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.task: Task | None = None
        self.setAcceptDrops(True)
        title = QLabel("<h2>Library</h2>")
        self.summary = QLabel()
        self.summary.setAccessibleName("Library summary")
        self.summary.setWordWrap(True)  # the models folder's path can be long: it wraps, never widens the window
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.import_button = QPushButton("&Import")
        self.import_button.setAccessibleName("Import GGUF models")
        menu = QMenu(self.import_button)
        self.import_files_action = menu.addAction("GGUF files…", self.import_files_dialog)
        self.import_files_action.setShortcut(QKeySequence.StandardKey.Open)
        menu.addAction("A folder (searched for .gguf files)…", self.import_folder_dialog)
        self.import_button.setMenu(menu)
        self.addAction(self.import_files_action)
        head = QHBoxLayout()
        head.addWidget(title)
        head.addWidget(self.summary, 1, Qt.AlignmentFlag.AlignBottom)
        head.addWidget(self.import_button, 0, Qt.AlignmentFlag.AlignBottom)

        self.table_model = LibraryTableModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setAccessibleName("Installed models")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        self.table.activated.connect(lambda _: self.chat())  # Enter or double-click
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.empty = QLabel("No models yet. Download one from the Discover page, or import GGUF files you already "
                            "have: Import, or drop files or folders here (an LM Studio or Hugging Face cache folder "
                            "works too).")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        themed_style(self.empty, lambda: f"color: {tone(*MUTED)}; padding: 40px;")

        self.chat_action = self._action("&Chat", self.chat, "Load the model on the Chat page")
        self.verify_action = self._action("&Verify", lambda: self.verify(),
                                          "Re-hash the file(s) against the recorded SHA-256")
        self.quantize_action = self._action("&Quantize…", self.quantize, "Make another quant of it on the Quantize page")
        self.folder_action = self._action("Show in &folder", self.show_in_folder, "Open the folder that holds it")
        self.delete_action = self._action("&Delete…", lambda: self.delete_model(), "Remove it from the library",
                                          QKeySequence.StandardKey.Delete)
        actions = QHBoxLayout()
        for action in (self.chat_action, self.verify_action, self.quantize_action, self.folder_action,
                       self.delete_action):
            button = QToolButton()
            button.setDefaultAction(action)
            button.setAccessibleName(action.text().replace("&", "").rstrip("…"))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            actions.addWidget(button)
            self.table.addAction(action)
        actions.addStretch(1)
        self.status = QLabel()  # the outcome of the last verify or import
        self.status.setAccessibleName("Library status")
        actions.addWidget(self.status)

        self.task_strip = ProgressStrip("verify or import")
        self.hint = QLabel("Drop .gguf files or folders on this page to import them; imported files stay where "
                           "they are.")
        self.hint.setWordWrap(True)
        themed_style(self.hint, lambda: f"color: {tone(*MUTED)};")

        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty, 1)
        layout.addLayout(actions)
        layout.addWidget(self.task_strip)
        layout.addWidget(self.hint)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        context.library_changed.connect(self.refresh)
        context.settings_changed.connect(self.refresh)  # the models folder may have moved
        self.table.sortByColumn(NAME, Qt.SortOrder.AscendingOrder)
        self.refresh()

    def _action(self, text: str, slot, tip: str, key: QKeySequence.StandardKey | None = None) -> QAction:
        action = QAction(text, self)
        action.setToolTip(tip)
        action.triggered.connect(slot)
        if key is not None:
            action.setShortcut(key)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        return action

    # --- showing -----------------------------------------------------------------------------
    def refresh(self) -> None:
        keep = self.selected()
        models = self.context.library().models()
        self.table_model.set_models(models)
        self.table.setVisible(bool(models))
        self.empty.setVisible(not models)
        total = sum(m.size for m in models)
        folder = models_dir()
        free = shutil.disk_usage(folder).free
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self.summary.setText(f"{count} · {fmt_bytes(total)} on disk · {fmt_bytes(free)} free in {breakable(str(folder))}")
        if keep is not None:
            self.select(keep.name)
        elif models and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)
        self._update_actions()

    def selected(self) -> LibraryModel | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table_model.models[self.proxy.mapToSource(rows[0]).row()]

    def select(self, name: str) -> bool:
        for row, model in enumerate(self.table_model.models):
            if model.name == name:
                self.table.selectRow(self.proxy.mapFromSource(self.table_model.index(row, 0)).row())
                return True
        return False

    def _update_actions(self) -> None:
        model, busy = self.selected(), self.task is not None
        present = model is not None and model.name not in self.table_model.missing
        self.chat_action.setEnabled(present)
        self.quantize_action.setEnabled(present)
        self.folder_action.setEnabled(model is not None)
        self.verify_action.setEnabled(model is not None and not busy)
        self.delete_action.setEnabled(model is not None and not busy)
        self.import_button.setEnabled(not busy)

    # --- actions on the selected model -------------------------------------------------------
    def chat(self) -> None:
        model = self.selected()
        if model is not None:
            self.context.open_in_chat.emit(model.path)

    def quantize(self) -> None:
        model = self.selected()
        if model is not None:
            self.context.quantize_requested.emit(model.name, "")

    def show_in_folder(self) -> None:
        model = self.selected()
        if model is None:
            return
        folder = Path(model.path).parent
        if not folder.is_dir():
            self.context.errors.report("Library", f"the folder {folder} no longer exists",
                                       "The model was moved or deleted outside QuantDesk: import it again from "
                                       "where it is now, or delete it from the library.")
        elif not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.context.errors.report("Library", f"no file manager could open {folder}",
                                       "Open that folder yourself; the path can be copied from this message.")

    def delete_model(self, name: str | None = None, confirm: bool = True) -> None:
        """Files the library downloaded or made are deleted; imported files stay where they are."""
        model = self.context.library().find(name) if name else self.selected()
        if model is None or self.task is not None:
            return
        owned = model.source != "imported"
        users = self.context.model_users([str(f["path"]) for f in model.files] + [model.path])
        stuck = self.context.holding_on(users)
        if stuck is not None:
            self.context.errors.report("Library", f"{stuck[1]} is using {model.name}",
                                       f"Let it finish or cancel it on the {stuck[0]} page, then delete the model.")
            return
        if confirm:
            text = (f"Delete {model.name} and its file{'s' if len(model.files) > 1 else ''} "
                    f"({fmt_bytes(model.size)}) from disk? This cannot be undone." if owned else
                    f"Remove {model.name} from the library? The file stays where it is:\n{model.path}")
            if users:
                text += f"\n\nIt is loaded in {' and '.join(sorted(users))}: it is unloaded there first."
            answer = QMessageBox.question(self, "Delete model" if owned else "Remove model", text,
                                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                          QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.context.release_models(users)
        run_task(lambda _: Library().remove(model.name), lambda _: self.context.library_changed.emit(),
                 lambda error: self.context.errors.report("Library", error))

    def verify(self, name: str | None = None) -> None:
        model = self.context.library().find(name) if name else self.selected()
        if model is None or self.task is not None:
            return

        def run(control: TaskControl) -> tuple[LibraryModel, list[str]]:
            return Library().verify(model.name, lambda done, total: _report(control, done, total,
                                                                            f"Verifying {model.name}"),
                                    control.cancel_event)

        self.table_model.set_checking(model.name)
        self._start(run, f"Verifying {model.name}…", self._verified)

    def _verified(self, result: tuple[LibraryModel, list[str]]) -> None:
        model, problems = result
        self._end(f"{model.name}: every file matches its SHA-256." if not problems else "")
        if problems:
            self.context.errors.report(
                "Library", f"Verification failed for {model.name}: " + "; ".join(problems),
                "The file changed on disk after it was added (a disk fault or another program wrote to it), or it "
                "was moved: delete it and download it again, or import it from where it is now.")
        self.context.library_changed.emit()

    # --- import ------------------------------------------------------------------------------
    def import_files_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import GGUF models", str(Path.home()), "GGUF models (*.gguf)")
        if paths:
            self.import_paths(paths)

    def import_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import every GGUF model in a folder", str(Path.home()))
        if folder:
            self.import_paths([folder])

    def import_paths(self, paths: list[str]) -> None:
        """What the dialogs and drag and drop call: register models in place, in the background."""
        if self.task is not None:
            self.context.errors.report("Library", "another verify or import is running",
                                       "Wait for it to finish or cancel it, then import again.")
            return

        def run(control: TaskControl) -> ImportOutcome:
            return Library().import_paths(paths, lambda done, total, path: _report(control, done, total,
                                                                                  f"Importing {path.name}"),
                                          control.cancel_event)

        self._start(run, "Looking for GGUF models…", self._imported)

    def _imported(self, outcome: ImportOutcome) -> None:
        parts = []
        if outcome.imported:
            parts.append(f"Imported {_names(outcome.imported)}.")
        if outcome.known:
            parts.append(f"Already in the library: {_names(outcome.known)}.")
        if outcome.cancelled:
            parts.append("Import cancelled.")
        self._end(" ".join(parts))
        if outcome.failed:
            n = len(outcome.failed)
            self.context.errors.report(
                "Library", f"{n} file{' was' if n == 1 else 's were'} not imported: "
                + "; ".join(f"{path.name} ({why})" for path, why in outcome.failed),
                "Only whole GGUF model files can be imported: download a damaged one again, or pick other files.")
        elif not (outcome.imported or outcome.known or outcome.cancelled):
            self.context.errors.report("Library", "no .gguf files were found there",
                                       "Pick .gguf files, or a folder that holds them (subfolders are searched).")
        if outcome.imported:
            self.context.library_changed.emit()
            self.select(outcome.imported[-1].name)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt API
        if self.task is None and dropped_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt API
        paths = dropped_paths(event.mimeData().urls())
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    # --- the one background task -------------------------------------------------------------
    def _start(self, work: Callable[[TaskControl], Any], text: str, on_done: Callable[[Any], None]) -> None:
        # a thread of its own: hashing gigabytes must not hold one of the pool's few threads
        self.task = run_task(work, on_done, self._failed, on_cancelled=self._cancelled, owner=self, where="own",
                             cancelled_by=(HashingCancelled,), progress_interval=0.1)
        self.task_strip.follow(self.task, text)
        self._update_actions()

    def _failed(self, exc: BaseException) -> None:
        self._end("")
        self.context.errors.report("Library", exc)

    def _cancelled(self) -> None:
        self._end("Cancelled; nothing was changed.")

    def _end(self, message: str) -> None:
        self.task = None
        self.table_model.set_checking(None)
        self.task_strip.finish()
        self.status.setText(message)
        self._update_actions()

    def shutdown(self) -> None:
        """The window is closing: stop hashing (nothing half-done is recorded)."""
        if self.task is not None:
            self.task.cancel()
            self.task.wait(5)


def _report(control: TaskControl, done: int, total: int, text: str) -> None:
    control.emit(TaskProgress(done, total, text), force=done >= total)
