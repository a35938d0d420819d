"""Requests where only the newest answer counts: a search typed after another, a re-plan after
the slider moved again. Each runs on the thread pool; an older one still finishes on its worker
(an HTTP call cannot be interrupted) but its answer is dropped, never shown over a newer one.

Answers come back through a signal of this object, which its parent widget owns: no Qt object
is left for Python's garbage collector, which may run on any thread, to delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal


def _capture(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as exc:  # noqa: BLE001 - handed to on_failed whole, so the next step it carries survives
        return False, exc


class Latest(QObject):
    _answered = Signal(int, object)  # generation, (ok, result or exception)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._generation = 0
        self._waiting: tuple[int, Callable[[Any], None], Callable[[BaseException], None]] | None = None
        self._answered.connect(self._deliver)

    @property
    def busy(self) -> bool:
        return self._waiting is not None

    def run(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
            on_failed: Callable[[BaseException], None]) -> None:
        self._generation += 1
        generation = self._generation
        self._waiting = (generation, on_done, on_failed)
        answered = self._answered

        def work() -> None:
            outcome = _capture(fn)
            try:
                answered.emit(generation, outcome)
            except RuntimeError:  # the page closed meanwhile: nobody is waiting
                pass

        QThreadPool.globalInstance().start(work)

    def cancel(self) -> None:
        """Stop waiting: whatever is in flight is dropped when it arrives."""
        self._generation += 1
        self._waiting = None

    def _deliver(self, generation: int, outcome: tuple[bool, Any]) -> None:
        if self._waiting is None or self._waiting[0] != generation:
            return
        _, on_done, on_failed = self._waiting
        self._waiting = None
        ok, value = outcome
        (on_done if ok else on_failed)(value)
