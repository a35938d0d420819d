"""The Qt binding itself must be sound: the app emits a signal per streamed token and per progress
step, tens of thousands of times in a session."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    text = Signal(str)
    bare = Signal()


def test_emitting_signals_keeps_reference_counts_intact():
    # PySide6 6.12.0 lost a reference to True on every emit(): the process aborted ("bool_dealloc")
    # once True's count reached zero, a few thousand tokens into a chat.
    emitter = _Emitter()
    received: list[str] = []
    emitter.text.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    for _ in range(200):
        emitter.text.emit("token")
        emitter.bare.emit()
    after = sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None)
    assert len(received) == 200
    assert [a - b for a, b in zip(after, before)] == [0, 0, 0]
