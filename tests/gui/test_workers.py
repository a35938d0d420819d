"""Background jobs hand results back on the GUI thread, and never to a widget that is gone."""

from __future__ import annotations

import threading

from PySide6.QtWidgets import QWidget

from quantdesk.core.errors import QuantDeskError
from quantdesk.gui.workers import run_in_background


def test_the_result_arrives_on_the_gui_thread(qtbot):
    got: list[tuple[int, bool]] = []
    run_in_background(lambda: 42, lambda v: got.append((v, threading.current_thread() is threading.main_thread())),
                      lambda m: got.append((m, False)))
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got == [(42, True)]


def test_a_failure_arrives_as_a_sentence_with_its_next_step(qtbot):
    def fail():
        raise QuantDeskError("the disk is full", next_step="free 2 GiB")
    got: list[str] = []
    run_in_background(fail, lambda v: got.append(f"done {v}"), got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got == ["the disk is full — free 2 GiB"]


def test_a_result_for_a_deleted_owner_is_dropped(qtbot):
    owner = QWidget()
    release = threading.Event()
    got: list[object] = []
    job = run_in_background(lambda: release.wait(5) and "late", got.append, got.append, owner=owner)
    owner.deleteLater()
    qtbot.waitUntil(lambda: not __import__("shiboken6").isValid(owner), timeout=5_000)
    delivered = threading.Event()
    job.signals.done.connect(lambda _: delivered.set())
    release.set()
    qtbot.waitUntil(delivered.is_set, timeout=5_000)
    assert got == []  # the owner's callback never ran into a dead widget
