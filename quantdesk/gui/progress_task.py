"""Long core work (hashing gigabytes) on its own thread, with progress and a cancel flag.

Why not ``workers.run_in_background``: that borrows the global thread pool, which has as many
threads as cores; a verify that hashes for minutes must not hold one of them, and it needs progress
and cancel, which a one-shot job does not have.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from quantdesk.core.library import HashingCancelled
from quantdesk.core.units import fmt_bytes


@dataclass(frozen=True)
class TaskProgress:
    done: int
    total: int
    text: str


Report = Callable[[int, int, str], None]


class ProgressTask(QObject):
    """Runs ``fn(report, cancel)``; exactly one of done/failed/cancelled follows the progress events,
    all delivered on the GUI thread (the receivers live there)."""

    progress = Signal(object)   # TaskProgress, at most every ``interval`` seconds
    done = Signal(object)       # fn's result
    failed = Signal(object)     # the exception, for ErrorBridge.report
    cancelled = Signal()

    def __init__(self, fn: Callable[[Report, threading.Event], Any], interval: float = 0.1,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fn = fn
        self.interval = interval
        self.cancel_event = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True, name="quantdesk-hashing")

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.cancel_event.set()

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _report(self, done: int, total: int, text: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval or done >= total:
            self._last = now
            self.progress.emit(TaskProgress(done, total, text))

    def _run(self) -> None:
        try:
            result = self.fn(self._report, self.cancel_event)
        except HashingCancelled:
            self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - reaches the user through the error bridge, not a crash
            self.failed.emit(exc)
        else:
            self.done.emit(result)


class ProgressStrip(QWidget):
    """What the task under way is doing, how far it is, and its Cancel button; hidden when idle."""

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task: ProgressTask | None = None
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

    def follow(self, task: ProgressTask, text: str) -> None:
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
