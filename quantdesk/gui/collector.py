"""Garbage is collected on the GUI thread only.

Python's cyclic collector runs in whichever thread happens to allocate when a generation fills up. A
cycle that holds a Qt object (a widget with a lambda connected to it, a task's signal object) that
is collected on a worker thread destroys the Qt object there; Qt objects must be destroyed on the
thread they live in, and the process then crashes later inside the event loop. This was seen: a
segfault while the test suite processed Qt events, with a download worker thread "Garbage-collecting".
So automatic collection is switched off, and a timer on the GUI thread collects what Python itself
would have collected (the same generation thresholds), a few times a second.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class GuiThreadCollector(QObject):
    """Create on the GUI thread; it keeps collecting there until the application ends."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 200) -> None:
        super().__init__(parent)
        gc.disable()
        self._timer = QTimer(self, interval=interval_ms, timeout=self.collect_due)
        self._timer.start()

    @staticmethod
    def collect_due() -> None:
        """Collect the oldest generation whose count passed its threshold, as Python's own trigger would."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        due = [g for g in range(3) if thresholds[g] and counts[g] > thresholds[g]]
        if due:
            gc.collect(max(due))
