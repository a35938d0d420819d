"""A task's progress under a page: what it is doing, how far it is, and its Cancel button."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from quantdesk.base.units import fmt_bytes
from quantdesk.gui.tasks import Task


@dataclass(frozen=True)
class TaskProgress:
    """A byte-counted step of a long task (hashing gigabytes), as the strip shows it."""

    done: int
    total: int
    text: str


class ProgressStrip(QWidget):
    """What the task under way is doing, how far it is, and its Cancel button; hidden when idle."""

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task: Task | None = None
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName(f"Progress of the {what}")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName(f"Cancel the {what}")
        self.cancel_button.clicked.connect(self.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.cancel_button)
        self.hide()

    def follow(self, task: Task, text: str) -> None:
        self.task = task
        task.progress.connect(self._progress)
        self.label.setText(text)
        self.bar.setValue(0)
        self.cancel_button.setEnabled(True)
        self.show()

    def _progress(self, progress: TaskProgress) -> None:
        self.label.setText(f"{progress.text}: {fmt_bytes(progress.done)} of {fmt_bytes(progress.total)}")
        self.bar.setValue(int(1000 * progress.done / progress.total) if progress.total else 0)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.cancel_button.setEnabled(False)
            self.label.setText("Cancelling…")

    def finish(self) -> None:
        self.task = None
        self.hide()
