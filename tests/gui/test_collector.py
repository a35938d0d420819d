"""The app collects garbage on the GUI thread only: a worker's cycles are collected there."""

from __future__ import annotations

import gc
import threading


def test_collections_happen_on_the_gui_thread_while_a_worker_makes_cycles(qtbot):
    from quantdesk.gui.collector import GuiThreadCollector

    seen: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(threading.get_ident())

    gc.enable()  # as at the start of the app: Python would collect wherever it allocates
    collector = GuiThreadCollector(interval_ms=20)
    gc.callbacks.append(record)
    try:
        def make_cycles() -> None:
            for _ in range(200_000):
                a: list = []
                a.append(a)

        worker = threading.Thread(target=make_cycles)
        worker.start()
        worker.join()
        assert not gc.isenabled() and not seen  # the worker allocated past every threshold: no collection there
        qtbot.waitUntil(lambda: bool(seen), timeout=5_000)
        assert set(seen) == {threading.main_thread().ident}
    finally:
        gc.callbacks.remove(record)
        collector.deleteLater()
