"""The Qt binding itself must be sound: the app emits a signal per streamed token and per progress
step, tens of thousands of times in a session."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, QThreadPool, Signal


class _Emitter(QObject):
    text = Signal(str)
    bare = Signal()


def test_emitting_signals_keeps_reference_counts_intact():
    # PySide6 6.12.0 lost a reference to True on every emit(): the process aborted ("bool_dealloc")
    # once True's count reached zero, a few thousand tokens into a chat.
    # Other tests' background work (planning on the thread pool) also takes and drops references to
    # these singletons, so: let it finish first, and judge the drift against the number of emits.
    QThreadPool.globalInstance().waitForDone(60_000)
    emitter = _Emitter()
    received: list[str] = []
    emitter.text.connect(received.append)
    emits = 5000
    before = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    for _ in range(emits):
        emitter.text.emit("token")
        emitter.bare.emit()
    after = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    assert len(received) == emits
    drift = [abs(a - b) for a, b in zip(after, before)]
    assert max(drift) < emits // 10, drift  # the 6.12.0 bug: one per emit (-10000 here)
