"""The window's one task runner: results, failures (as the exception object), progress, cancel,
newest-wins and the serial worker, all delivered on the GUI thread and never to a widget that is gone."""

from __future__ import annotations

import threading
import time

import shiboken6
from PySide6.QtWidgets import QWidget

from quantdesk.base.errors import QuantDeskError
from quantdesk.gui.tasks import SerialWorker, TaskSlot, run_task


def on_gui_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def test_the_result_arrives_on_the_gui_thread(qtbot):
    got: list[tuple[int, bool]] = []
    run_task(lambda _: 42, lambda v: got.append((v, on_gui_thread())), lambda e: got.append((e, False)))
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got == [(42, True)]


def test_a_failure_arrives_as_the_exception_with_its_next_step(qtbot):
    def fail(_):
        raise QuantDeskError("the disk is full", next_step="free 2 GiB")
    got: list[BaseException] = []
    run_task(fail, lambda v: got.append(AssertionError(f"done {v}")), got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    (error,) = got
    assert type(error) is QuantDeskError and error.next_step == "free 2 GiB" and str(error) == "the disk is full"


def test_progress_arrives_in_order_then_the_result_on_a_thread_of_its_own(qtbot):
    events: list[object] = []
    threads: list[str] = []

    def work(control):
        threads.append(threading.current_thread().name)
        for i in range(5):
            control.emit(i)
        return "done"

    task = run_task(work, events.append, events.append, on_progress=events.append, where="own")
    with qtbot.waitSignal(task.ended, timeout=5_000):
        pass
    assert events == [0, 1, 2, 3, 4, "done"]
    assert threads == ["quantdesk-task"]


def test_a_generator_yields_progress_and_returns_the_result(qtbot):
    events: list[object] = []

    def work(_):
        yield "a"
        yield "b"
        return 3

    run_task(work, lambda v: events.append(("result", v)), events.append, on_progress=events.append)
    qtbot.waitUntil(lambda: len(events) == 3, timeout=5_000)
    assert events == ["a", "b", ("result", 3)]


class Stopped(Exception):
    pass


def test_cancel_reaches_the_work_and_its_cancelled_error_arrives_as_cancelled(qtbot):
    started = threading.Event()
    got: list[str] = []

    def work(control):
        started.set()
        while not control.cancel_event.wait(0.01):
            pass
        raise Stopped()

    task = run_task(work, lambda _: got.append("done"), lambda e: got.append(f"failed {e!r}"),
                    on_cancelled=lambda: got.append("cancelled"), cancelled_by=(Stopped,), where="own")
    assert started.wait(5)
    task.cancel()
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    assert got == ["cancelled"]


def test_progress_interval_throttles_but_forced_events_pass(qtbot):
    events: list[object] = []

    def work(control):
        for i in range(1000):
            control.emit(i)
        control.emit("last", force=True)

    task = run_task(work, on_progress=events.append, progress_interval=10.0)
    with qtbot.waitSignal(task.ended, timeout=5_000):
        pass
    assert events == [0, "last"]


def test_a_result_for_a_deleted_owner_is_dropped(qtbot):
    owner = QWidget()
    release, returned = threading.Event(), threading.Event()
    got: list[object] = []

    def work(_):
        release.wait(5)
        returned.set()
        return "late"

    run_task(work, got.append, got.append, owner=owner)
    owner.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(owner), timeout=5_000)
    release.set()
    assert returned.wait(5)
    qtbot.wait(100)  # any answer would have been delivered by now
    assert got == []  # the owner's callback never ran into a dead widget


def test_only_the_newest_answer_of_a_slot_is_delivered(qtbot):
    owner = QWidget()
    slot = TaskSlot(owner)
    got: list[object] = []
    first_release = threading.Event()

    def slow(_):
        first_release.wait(5)
        return "old"

    slot.run(slow, got.append, got.append)
    assert slot.busy
    slot.run(lambda _: "new", got.append, got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=5_000)
    first_release.set()
    qtbot.wait(200)
    assert got == ["new"] and not slot.busy
    slot.run(slow, got.append, got.append)
    slot.cancel()
    assert not slot.busy
    qtbot.wait(100)
    assert got == ["new"]  # a cancelled slot shows nothing


def test_a_serial_worker_runs_tasks_in_order_on_one_thread(qtbot):
    worker = SerialWorker("quantdesk-test-serial")
    seen: list[tuple[int, str]] = []
    done: list[int] = []

    def job(i):
        def work(_):
            time.sleep(0.01 * (3 - i))  # later tasks are quicker: order proves they queue
            seen.append((i, threading.current_thread().name))
            return i
        return work

    for i in range(3):
        run_task(job(i), done.append, where=worker)
    qtbot.waitUntil(lambda: len(done) == 3, timeout=5_000)
    assert done == [0, 1, 2]
    assert {name for _, name in seen} == {"quantdesk-test-serial"}
    assert worker.shutdown(5)


def test_a_systemexit_in_the_work_is_still_one_answer_and_the_serial_thread_lives_on(qtbot):
    worker = SerialWorker("quantdesk-test-exit")
    got: list[object] = []

    def leave(_):
        raise SystemExit(3)

    run_task(leave, got.append, got.append, where=worker)
    run_task(lambda _: "next", got.append, got.append, where=worker)
    qtbot.waitUntil(lambda: len(got) == 2, timeout=5_000)
    assert isinstance(got[0], RuntimeError) and "SystemExit" in str(got[0]) and got[1] == "next"
    assert worker.shutdown(5)


def test_a_cancelled_answer_frees_its_slot(qtbot):
    owner = QWidget()
    slot = TaskSlot(owner)

    def stopped(_):
        raise Stopped()

    task = slot.run(stopped, print, print, cancelled_by=(Stopped,))
    with qtbot.waitSignal(task.ended, timeout=5_000):
        pass
    assert not slot.busy
