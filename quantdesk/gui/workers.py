"""Run core work off the GUI thread and hand the result back as a signal."""

from __future__ import annotations

from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from quantdesk.core.errors import QuantDeskError


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(str)


class Job(QRunnable):
    """One call of ``fn`` on the global thread pool; exactly one of done/failed is emitted."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = _Signals()

    def run(self) -> None:
        try:
            result = self.fn()
        except QuantDeskError as exc:
            self._emit(self.signals.failed, f"{exc} — {exc.next_step}" if exc.next_step else str(exc))
        except Exception as exc:  # noqa: BLE001 - reaches the user as a sentence, not a crash
            self._emit(self.signals.failed, f"Unexpected error: {type(exc).__name__}: {exc}")
        else:
            self._emit(self.signals.done, result)

    @staticmethod
    def _emit(signal, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:
            pass  # the app is quitting and the receiver is gone: nobody is waiting for this result


_running: set[Job] = set()  # keeps each job's signal object alive until its result is delivered


def run_in_background(fn: Callable[[], Any], on_done: Callable[[Any], None],
                      on_failed: Callable[[str], None], owner: QObject | None = None) -> Job:
    """Run ``fn`` on the pool; ``on_done``/``on_failed`` run on the GUI thread.

    With an ``owner`` (the widget that asked), the result is dropped if that widget has been deleted
    meanwhile, instead of calling into a dead C++ object.
    """
    job = Job(fn)
    job.setAutoDelete(False)
    job.signals.done.connect(_while_alive(owner, on_done))
    job.signals.failed.connect(_while_alive(owner, on_failed))
    job.signals.done.connect(lambda _: _running.discard(job))
    job.signals.failed.connect(lambda _: _running.discard(job))
    _running.add(job)
    QThreadPool.globalInstance().start(job)
    return job


def _while_alive(owner: QObject | None, callback: Callable[[Any], None]) -> Callable[[Any], None]:
    if owner is None:
        return callback

    def call(value: Any) -> None:
        if shiboken6.isValid(owner):
            callback(value)
    return call
