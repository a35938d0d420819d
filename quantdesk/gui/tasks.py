"""The one way the window runs work off the GUI thread.

``run_task(work, ...)`` calls ``work(control)`` on a worker thread and delivers, on the GUI thread,
its progress events in order and then exactly one of: the result, the exception object it raised
(never a pre-made sentence: the error bridge and the pages say what to do from the exception's type
and next step), or "cancelled". ``work`` may also return a generator: each ``yield`` is a
progress event and its ``return`` value the result. ``task.cancel()`` sets ``control.cancel_event``,
which the work (or the core call it hands the event to) checks; the exception types it raises when
it stops (``cancelled_by``) arrive as "cancelled", anything else as a failure.

Where it runs:
- ``"pool"`` (default): Qt's global thread pool, for short calls (a plan, a hub request);
- ``"own"``: a thread of its own, for jobs that run for minutes (quantize, verify, a folder move),
  which would otherwise hold one of the pool's few threads (two on a two-core machine);
- a :class:`SerialWorker`: one long-lived thread that runs its tasks one after another (Chat's
  replies: the chat store keeps one SQLite connection per thread, so one thread means one connection).

``TaskSlot`` adds "newest wins": starting a task in a slot drops the answer of the one before it
(a search typed after another, a re-plan after the slider moved again), which still finishes on its
worker (an HTTP call cannot be interrupted) but is never shown over a newer one.

Answers come back through signals of a ``Task`` object that lives on the GUI thread, parented to
its owner (else the application) and deleted by Qt once it has answered: an owner deleted meanwhile
drops the answer instead of calling into a dead widget, and no Qt object is left for Python's
garbage collector (which may run on any thread) to delete.
"""

from __future__ import annotations

import inspect
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThreadPool, Signal

Work = Callable[["TaskControl"], Any]
PROGRESS, DONE, FAILED, CANCELLED = "progress", "done", "failed", "cancelled"


class _Dispatcher(QObject):
    """Carries every task's answers from worker threads to the GUI thread.

    Workers hold only this long-lived object and a task number, never the ``Task`` itself: a Qt
    object released on a worker while the GUI thread deletes it (its owner closed) is a crash.
    """

    delivered = Signal(int, str, object)

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[int, Task] = {}
        self.delivered.connect(self._route)

    def _route(self, number: int, kind: str, payload: Any) -> None:
        task = self.tasks.get(number) if kind == PROGRESS else self.tasks.pop(number, None)
        if task is not None and shiboken6.isValid(task):
            task._deliver(kind, payload)


_dispatcher: _Dispatcher | None = None
_numbers = itertools.count(1)


def _the_dispatcher() -> _Dispatcher:
    global _dispatcher
    if _dispatcher is None:  # made on the GUI thread, by the first run_task
        _dispatcher = _Dispatcher()
    return _dispatcher


class TaskControl:
    """What the work sees of its task: ``emit`` progress (thread-safe) and the cancel flag."""

    def __init__(self, number: int, interval: float) -> None:
        self._number = number
        self._interval = interval
        self._last = 0.0
        self.cancel_event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def emit(self, event: Any, force: bool = False) -> None:
        """Deliver ``event`` to ``on_progress``; with an interval, at most that often unless ``force``."""
        if self._interval:
            now = time.monotonic()
            if not force and now - self._last < self._interval:
                return
            self._last = now
        _send(self._number, PROGRESS, event)


def _send(number: int, kind: str, payload: Any = None) -> None:
    try:
        _the_dispatcher().delivered.emit(number, kind, payload)
    except RuntimeError:
        pass  # the application is quitting: nobody is waiting for this answer


class Task(QObject):
    """One run of ``work``, as the GUI thread sees it: exactly one of done/failed/cancelled follows
    the progress events, then ``ended``."""

    progress = Signal(object)
    done = Signal(object)
    failed = Signal(object)
    cancelled = Signal()
    ended = Signal()

    def __init__(self, control: TaskControl, owner: QObject | None) -> None:
        super().__init__(owner)
        self.control = control
        self._running = True
        self._finished = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop: it sees ``control.cancel_event``."""
        self.control.cancel_event.set()

    @property
    def running(self) -> bool:
        return self._running

    def wait(self, timeout: float) -> bool:
        """Block until the work has returned (its answer may still be queued); False on timeout."""
        return self._finished.wait(timeout)

    def _deliver(self, kind: str, payload: Any) -> None:
        if kind == PROGRESS:
            self.progress.emit(payload)
            return
        self._running = False
        if kind == DONE:
            self.done.emit(payload)
        elif kind == FAILED:
            self.failed.emit(payload)
        else:
            self.cancelled.emit()
        self.ended.emit()


def _run(work: Work, control: TaskControl, cancelled_by: tuple[type[BaseException], ...],
         finished: threading.Event) -> None:
    """On the worker: the work, then its one answer."""
    number = control._number
    try:
        result = work(control)
        if inspect.isgenerator(result):
            result = _drain(result, control)
    except BaseException as exc:  # noqa: BLE001 - handed to the page whole, so its next step survives
        if isinstance(exc, cancelled_by):
            _send(number, CANCELLED)
        elif isinstance(exc, Exception):
            _send(number, FAILED, exc)
        else:  # SystemExit and friends from library code: still exactly one answer, and the thread lives on
            _send(number, FAILED, RuntimeError(f"the background work ended with {type(exc).__name__}: {exc}"))
    else:
        _send(number, DONE, result)
    finally:
        finished.set()


def _drain(gen: Any, control: TaskControl) -> Any:
    try:
        while True:
            control.emit(next(gen), force=True)
    except StopIteration as stop:
        return stop.value


def run_task(work: Work, on_done: Callable[[Any], None] | None = None,
             on_failed: Callable[[Exception], None] | None = None, *,
             on_progress: Callable[[Any], None] | None = None, on_cancelled: Callable[[], None] | None = None,
             on_ended: Callable[[], None] | None = None, owner: QObject | None = None,
             where: str | SerialWorker = "pool", progress_interval: float = 0.0,
             cancelled_by: tuple[type[BaseException], ...] = ()) -> Task:
    """Start ``work(control)`` off the GUI thread; the callbacks run on the GUI thread.

    ``cancelled_by``: exception types that mean the work was cancelled (the core's own Cancelled
    errors), delivered to ``on_cancelled`` rather than ``on_failed``. A failure with no ``on_failed``
    is re-raised on the GUI thread, where the window's error bridge reports it.
    """
    dispatcher = _the_dispatcher()
    control = TaskControl(next(_numbers), progress_interval)
    # parented (to the owner, else the application) so Qt, not the garbage collector, deletes it
    task = Task(control, owner or QCoreApplication.instance())
    if on_progress is not None:
        task.progress.connect(on_progress)
    if on_done is not None:
        task.done.connect(on_done)
    task.failed.connect(on_failed if on_failed is not None else _raise)
    if on_cancelled is not None:
        task.cancelled.connect(on_cancelled)
    if on_ended is not None:
        task.ended.connect(on_ended)
    task.ended.connect(task.deleteLater)
    dispatcher.tasks[control._number] = task

    def job() -> None:  # holds the work and the control, never the Task
        _run(work, control, cancelled_by, finished)

    finished = task._finished
    if isinstance(where, SerialWorker):
        where.submit(job)
    elif where == "own":
        threading.Thread(target=job, daemon=True, name="quantdesk-task").start()
    elif where == "pool":
        QThreadPool.globalInstance().start(job)
    else:
        raise ValueError(f"unknown place to run a task: {where!r}")
    return task


def _raise(exc: Exception) -> None:
    raise exc


class TaskSlot(QObject):
    """Tasks where only the newest answer counts; ``busy`` while one is awaited."""

    def __init__(self, owner: QObject) -> None:
        super().__init__(owner)
        self._task: Task | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None

    def run(self, work: Work, on_done: Callable[[Any], None], on_failed: Callable[[Exception], None],
            **options: Any) -> Task:
        self.cancel()
        holder: list[Task] = []

        def current(callback: Callable[..., None]) -> Callable[..., None]:
            def call(*value: Any) -> None:
                if holder and self._task is holder[0] and shiboken6.isValid(self):
                    self._task = None
                    callback(*value)
            return call

        task = run_task(work, current(on_done), current(on_failed), owner=self, **options)
        holder.append(task)
        self._task = task
        task.ended.connect(lambda: self._ended(task))  # a cancelled answer frees the slot too
        return task

    def _ended(self, task: Task) -> None:
        if self._task is task:
            self._task = None

    def cancel(self) -> None:
        """Stop waiting: the answer in flight is dropped when it arrives (and its work asked to stop)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None


class SerialWorker:
    """One long-lived thread that runs tasks in order; started at the first task."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name=self.name)
            self._thread.start()
        self._jobs.put(job)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()  # never raises: _run answers every outcome

    def shutdown(self, timeout: float = 15.0) -> bool:
        """Let the task in flight end, then stop the thread; False if it is still busy after ``timeout``."""
        if self._thread is None:
            return True
        self._jobs.put(None)
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if not alive:
            self._thread = None
        return not alive
