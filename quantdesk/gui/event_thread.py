"""A long core job on a thread of its own, its progress events delivered as Qt signals.

Why not the global thread pool: a quantize or a folder move runs for minutes and would hold one
of its few threads (two on a two-core machine) while pre-flights and plans wait behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

Emit = Callable[[Any], None]


class EventThread(QThread):
    """Runs ``work(emit)``; each ``emit(x)`` arrives on the GUI thread as ``event(x)``, in order, and
    then exactly one of ``done(result)`` or ``failed(exception)``."""

    event = Signal(object)
    done = Signal(object)
    failed = Signal(object)

    def __init__(self, work: Callable[[Emit], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.work = work

    def run(self) -> None:
        try:
            result = self.work(self.event.emit)
        except Exception as exc:  # noqa: BLE001 - handed to the page, which reports it
            self.failed.emit(exc)
        else:
            self.done.emit(result)
