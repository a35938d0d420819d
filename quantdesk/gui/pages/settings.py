"""Settings page: the models folder (moving it moves the library), the hub token (OS keyring), the hub
endpoint, CPU threads, concurrent downloads and the colour theme.

Every change is saved at once through ``core.settings`` and announced with
``AppContext.settings_changed``; the token never touches the settings file or the log.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import THEMES, load_settings, models_dir, normalize_endpoint, save_settings
from quantdesk.base.units import fmt_bytes
from quantdesk.gui.context import AppContext
from quantdesk.gui.errors import inline_text
from quantdesk.gui.tasks import Task, TaskControl, TaskSlot, run_task
from quantdesk.gui.theme import LABELS, apply_theme
from quantdesk.gui.widgets.status_text import colored
from quantdesk.hub.credentials import TokenStatus, check_token, clear_token, save_token, token_status
from quantdesk.hub.endpoint import DEFAULT_ENDPOINT
from quantdesk.library.move import MoveCancelled, MoveProgress, MoveResult, move_models_dir


class SettingsPage(QWidget):
    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._move: Task | None = None
        self._released_for_move: list[str] = []  # pages that unloaded a model so the folder could move
        self._token_test = TaskSlot(self)  # the newest token test; older answers are dropped
        self._token_query = TaskSlot(self)  # the keyring's answer about the token in use; the newest wins
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<h2>Settings</h2>Saved as you change them; the command line uses them too."))
        layout.addWidget(self._models_group())
        layout.addWidget(self._hub_group())
        layout.addWidget(self._general_group())
        layout.addStretch(1)
        self.reload()
        context.library_changed.connect(self._show_folder)  # a download or import elsewhere: say it here too

    # --- layout -------------------------------------------------------------------------------
    def _models_group(self) -> QGroupBox:
        box = QGroupBox("Models folder")
        form = QVBoxLayout(box)
        row = QHBoxLayout()
        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setAccessibleName("Models folder")
        self.move_button = QPushButton("Move…")
        self.move_button.setAccessibleName("Move the models folder")
        self.move_button.clicked.connect(self._choose_folder)
        self.move_cancel_button = QPushButton("Cancel")
        self.move_cancel_button.setAccessibleName("Cancel moving the models folder")
        self.move_cancel_button.clicked.connect(self.cancel_move)
        row.addWidget(self.folder_label, 1)
        row.addWidget(self.move_button)
        row.addWidget(self.move_cancel_button)
        form.addLayout(row)
        self.move_progress = QProgressBar()
        self.move_progress.setRange(0, 1000)
        self.move_progress.setAccessibleName("Move progress")
        form.addWidget(self.move_progress)
        self.folder_note = QLabel()
        self.folder_note.setWordWrap(True)
        self.folder_note.setAccessibleName("Models folder status")
        form.addWidget(self.folder_note)
        self._set_moving(False)
        return box

    def _hub_group(self) -> QGroupBox:
        box = QGroupBox("Hugging Face hub")
        form = QFormLayout(box)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_… (from huggingface.co/settings/tokens)")
        self.token_edit.setAccessibleName("Hub token")
        self.token_edit.returnPressed.connect(self.save_token)
        save = QPushButton("Save")
        save.setAccessibleName("Save the hub token")
        save.clicked.connect(self.save_token)
        self.clear_token_button = QPushButton("Clear")
        self.clear_token_button.setAccessibleName("Remove the stored hub token")
        self.clear_token_button.clicked.connect(self.clear_token)
        self.test_token_button = QPushButton("Test")
        self.test_token_button.setAccessibleName("Test the hub token")
        self.test_token_button.clicked.connect(self.test_token)
        row = QHBoxLayout()
        row.addWidget(self.token_edit, 1)
        row.addWidget(save)
        row.addWidget(self.clear_token_button)
        row.addWidget(self.test_token_button)
        self.token_status = QLabel()
        self.token_status.setWordWrap(True)
        self.token_status.setAccessibleName("Hub token status")
        form.addRow("Token:", _stacked(row, self.token_status))
        self.endpoint_edit = QLineEdit()
        self.endpoint_edit.setPlaceholderText(f"{DEFAULT_ENDPOINT} (default)")
        self.endpoint_edit.setAccessibleName("Hub endpoint")
        self.endpoint_edit.editingFinished.connect(self.save_endpoint)
        self.endpoint_note = QLabel()
        self.endpoint_note.setWordWrap(True)
        self.endpoint_note.setAccessibleName("Hub endpoint status")
        form.addRow("Endpoint or mirror:", _stacked(self.endpoint_edit, self.endpoint_note))
        return box

    def _general_group(self) -> QGroupBox:
        box = QGroupBox("Performance and appearance")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.threads_spin = QSpinBox()
        cpus = os.cpu_count() or 1
        self.threads_spin.setRange(0, max(64, 2 * cpus))
        self.threads_spin.setSpecialValueText(f"Auto ({cpus} CPUs here)")
        self.threads_spin.setAccessibleName("CPU threads")
        self.threads_spin.setToolTip("Threads for chat and quantizing; Auto lets each job pick for this CPU")
        self.threads_spin.valueChanged.connect(lambda n: self._update(threads=n or None))
        form.addRow("CPU threads:", self.threads_spin)
        self.downloads_spin = QSpinBox()
        self.downloads_spin.setRange(1, 8)
        self.downloads_spin.setAccessibleName("Concurrent downloads")
        self.downloads_spin.valueChanged.connect(lambda n: self._update(max_concurrent_downloads=n))
        form.addRow("Downloads at a time:", self.downloads_spin)
        self.theme_combo = QComboBox()
        for theme in THEMES:
            self.theme_combo.addItem(LABELS[theme], theme)
        self.theme_combo.setAccessibleName("Theme")
        self.theme_combo.currentIndexChanged.connect(lambda _: self.set_theme(self.theme_combo.currentData()))
        form.addRow("Theme:", self.theme_combo)
        self.send_combo = QComboBox()
        self.send_combo.addItem("Enter sends, Shift+Enter is a new line", True)
        self.send_combo.addItem("Ctrl+Enter sends, Enter is a new line", False)
        self.send_combo.setAccessibleName("Send key")
        self.send_combo.currentIndexChanged.connect(lambda _: self._update(enter_sends=bool(self.send_combo.currentData())))
        form.addRow("Chat messages:", self.send_combo)
        return box

    # --- state --------------------------------------------------------------------------------
    def reload(self) -> None:
        """Show the saved settings (without saving them back)."""
        s = load_settings()
        for w in (self.threads_spin, self.downloads_spin, self.theme_combo, self.endpoint_edit, self.send_combo):
            w.blockSignals(True)
        self.threads_spin.setValue(s.threads or 0)
        self.downloads_spin.setValue(s.max_concurrent_downloads)
        self.theme_combo.setCurrentIndex(max(0, self.theme_combo.findData(s.theme)))
        self.endpoint_edit.setText(s.hub_endpoint or "")
        self.send_combo.setCurrentIndex(0 if s.enter_sends else 1)
        for w in (self.threads_spin, self.downloads_spin, self.theme_combo, self.endpoint_edit, self.send_combo):
            w.blockSignals(False)
        self._show_folder()
        self._show_token()
        self._show_endpoint_note()

    def _update(self, **fields: object) -> None:
        settings = load_settings()  # read fresh: the CLI or another page may have saved meanwhile
        for name, value in fields.items():
            setattr(settings, name, value)
        save_settings(settings)
        self.context.settings_changed.emit()

    def set_theme(self, theme: str) -> None:
        self._update(theme=theme)
        apply_theme(QApplication.instance(), theme)

    # --- models folder ------------------------------------------------------------------------
    def _show_folder(self) -> None:
        self.folder_label.setText(str(models_dir()))
        models = self.context.library().models()
        root = models_dir().resolve()
        inside = [m for m in models if any(_inside(f["path"], root) for f in m.files)]
        elsewhere = len(models) - len(inside)
        if inside:
            held = (f"{len(inside)} library model{'s' if len(inside) != 1 else ''} "
                    f"({fmt_bytes(sum(m.size for m in inside))}) live here")
            if elsewhere:
                held += f"; {elsewhere} more {'are' if elsewhere != 1 else 'is'} imported from other folders and stay there"
        elif elsewhere:
            held = (f"The library's {elsewhere} model{'s' if elsewhere != 1 else ''} "
                    f"{'were' if elsewhere != 1 else 'was'} imported from other folders and stay there")
        else:
            held = "No library models live here yet"
        self.folder_note.setText(f"{held}. Moving the folder moves every file in it, partial downloads included, "
                                 "and the library follows.")

    def _set_moving(self, moving: bool) -> None:
        self.move_button.setVisible(not moving)
        self.move_cancel_button.setVisible(moving)
        self.move_cancel_button.setEnabled(moving)
        self.move_progress.setVisible(moving)

    @property
    def moving(self) -> bool:
        return self._move is not None

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Move the models folder to", str(models_dir().parent))
        if path:
            self.move_to(path)

    def move_to(self, path: str) -> None:
        """Move every model file to ``path`` off the GUI thread; the library follows."""
        if self.moving:
            return
        folder = models_dir().resolve()
        held = {owner: {p for p in paths if Path(p).resolve().is_relative_to(folder)}
                for owner, paths in self.context.model_users().items()}
        held = {owner: paths for owner, paths in held.items() if paths}
        stuck = self.context.holding_on(held)
        if stuck is not None:
            self.context.errors.report("Settings", f"{stuck[1]} is reading or writing in the models folder",
                                       f"Let it finish or cancel it on the {stuck[0]} page, then move the folder.")
            return
        self.context.release_models(held)  # Chat unloads its model
        self._released_for_move = sorted(held)
        busy = self.context.downloads_running()

        def work(control: TaskControl) -> MoveResult:
            return move_models_dir(path, progress=control.emit, cancel=control.cancel_event, downloads_running=busy)

        self.move_progress.setValue(0)
        self.folder_note.setText(f"Moving to {path}…")
        self._move = run_task(work, self._moved, self._move_failed, on_progress=self._move_progress,
                              on_cancelled=self._move_cancelled, cancelled_by=(MoveCancelled,), owner=self,
                              where="own")
        self._set_moving(True)

    def cancel_move(self) -> None:
        if self._move is not None:
            self._move.cancel()
            self.move_cancel_button.setEnabled(False)

    def _move_progress(self, p: MoveProgress) -> None:
        self.move_progress.setValue(int(1000 * p.done_bytes / p.total_bytes) if p.total_bytes else 1000)
        self.move_progress.setFormat(f"%p%  ·  {p.files_done}/{p.files_total} files  ·  {p.current}")

    def _move_finished(self) -> None:
        task, self._move = self._move, None
        if task is not None:
            task.deleteLater()
        self._set_moving(False)

    def _moved(self, result: MoveResult) -> None:
        self._move_finished()
        self.context.library_changed.emit()  # first: the note below says what the move did
        self.context.settings_changed.emit()
        how = "renamed in place" if result.renamed else "copied and checked"
        note = f"Moved {result.files} files ({fmt_bytes(result.bytes)}, {how})."
        if self._released_for_move:
            note += f" {' and '.join(self._released_for_move)} unloaded its model for the move: load it again."
        if result.leftovers:
            note += f" {len(result.leftovers)} old copies could not be deleted, e.g. {result.leftovers[0]}."
        self.folder_note.setText(colored(note, not result.leftovers))

    def _move_cancelled(self) -> None:
        self._move_finished()
        self._show_folder()
        self.folder_note.setText("Cancelled: every file is back in the old folder.")

    def _move_failed(self, error: Exception) -> None:
        self._move_finished()
        self._show_folder()
        self.folder_note.setText(colored("The models folder was not moved.", False))
        self.context.errors.report("Settings", error)

    # --- hub ----------------------------------------------------------------------------------
    def _show_token(self, extra: str = "") -> None:
        """Which token is used, asked off the GUI thread: the OS keyring may answer slowly (D-Bus, an
        unlock prompt) and the huggingface_hub login needs that package imported (0.3 s)."""
        if not self.token_status.text():
            self.token_status.setText("Checking the OS keyring…")
        self._token_query.run(lambda _: token_status(), lambda status: self._show_token_status(status, extra),
                              lambda _exc: self._show_token_status(TokenStatus(None, None, None, False), extra))

    def _show_token_status(self, status: TokenStatus, extra: str) -> None:
        if status.source and status.source != "keyring":
            where = (f"{status.source} is set in the environment" if status.source != "huggingface_hub login"
                     else "the huggingface_hub login is used")
            text = f"Using {status.masked}: {where}."
            if status.stored:
                text += f" The token in {status.keyring} applies once that is gone."
        elif status.source == "keyring":
            text = f"Stored in {status.keyring}: {status.masked}."
        elif status.keyring:
            text = f"No token. A saved token is kept in {status.keyring}, never in a file."
        else:
            text = "No OS keyring available here: set the HF_TOKEN environment variable to use a token."
        self.token_status.setText(" ".join(x for x in (text, extra) if x))
        self.clear_token_button.setEnabled(status.stored)

    def save_token(self) -> None:
        token = self.token_edit.text()
        try:
            stored = save_token(token)
        except QuantDeskError as exc:
            self.context.errors.report("Settings", exc)
            return
        if not stored:
            self.context.errors.report("Settings", "there is no OS keyring on this desktop to keep the token in",
                                       "Set the HF_TOKEN environment variable instead.")
            return
        self.token_edit.clear()
        self._show_token()
        self.context.settings_changed.emit()

    def clear_token(self) -> None:
        clear_token()
        self._show_token()
        self.context.settings_changed.emit()

    def test_token(self) -> None:
        typed = self.token_edit.text()
        self.test_token_button.setEnabled(False)
        self._show_token("Testing…")

        def done(name: str) -> None:
            self.test_token_button.setEnabled(True)
            self._show_token(colored(f"The hub knows this token: signed in as {name}.", True))

        def failed(error: Exception) -> None:
            self.test_token_button.setEnabled(True)
            self._show_token(colored(inline_text(error), False))

        self._token_test.run(lambda _: check_token(typed), done, failed)

    def save_endpoint(self) -> None:
        try:
            endpoint = normalize_endpoint(self.endpoint_edit.text())
        except QuantDeskError as exc:
            self.endpoint_note.setText(colored(f"{exc} {exc.next_step}", False))
            return
        if endpoint != load_settings().hub_endpoint:
            self._update(hub_endpoint=endpoint)
        self.endpoint_edit.setText(endpoint or "")
        self._show_endpoint_note()

    def _show_endpoint_note(self) -> None:
        env = os.environ.get("HF_ENDPOINT")
        if env:
            self.endpoint_note.setText(f"HF_ENDPOINT is set in the environment ({env}) and overrides this.")
        else:
            self.endpoint_note.setText(f"Searches and downloads go to {load_settings().hub_endpoint or DEFAULT_ENDPOINT}.")

    def shutdown(self) -> None:
        """The window closes: a move in progress is cancelled (and undone) before the app exits, and a
        token test still in flight no longer touches the page."""
        self._token_test.cancel()
        if self._move is not None:
            self.cancel_move()
            self._move.wait(60.0)


def _stacked(top: QWidget | QHBoxLayout, note: QLabel) -> QVBoxLayout:
    """A field with its status line right under it."""
    column = QVBoxLayout()
    column.setSpacing(2)
    if isinstance(top, QWidget):
        column.addWidget(top)
    else:
        column.addLayout(top)
    column.addWidget(note)
    return column


def _inside(path: str, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root)
    except OSError:
        return False
