"""start_model: the one load path of the CLI and the GUI — plan, start, and nothing left running on failure."""

from __future__ import annotations

import threading

import pytest

from quantdesk.chat.engine import EngineError
from quantdesk.chat.load import start_model
from quantdesk.hardware.machine import load_hardware_spec


@pytest.fixture(scope="module")
def laptop():
    return load_hardware_spec("cpu-16gb-laptop")


def test_a_missing_file_is_a_file_not_found_error(laptop, tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        start_model(tmp_path / "gone.gguf", laptop, 512)
    assert caught.value.filename == str(tmp_path / "gone.gguf")


def test_a_cancelled_load_stops_after_planning_without_starting_a_process(laptop, tiny_model, monkeypatch):
    from quantdesk.chat import load

    started = []
    monkeypatch.setattr(load.Engine, "start", lambda self, **kw: started.append(self))
    cancel = threading.Event()
    cancel.set()
    planned = []
    with pytest.raises(EngineError, match="cancelled"):
        start_model(tiny_model, laptop, 512, cancel=cancel, on_planned=planned.append)
    assert started == [] and planned == []


def test_a_failed_start_stops_the_engine_and_keeps_the_error(laptop, tiny_model, monkeypatch):
    from quantdesk.chat import load

    stopped = []

    def fail(self, **kw):
        raise EngineError("the model failed to load: test")

    monkeypatch.setattr(load.Engine, "start", fail)
    monkeypatch.setattr(load.Engine, "stop", lambda self: stopped.append(self))
    with pytest.raises(EngineError, match="failed to load: test"):
        start_model(tiny_model, laptop, 512)
    assert len(stopped) == 1


def test_start_model_plans_for_the_machine_and_runs_the_model(laptop, tiny_model, tmp_path):
    planned = []
    engine, plan = start_model(tiny_model, laptop, 512, "f16", threads=2, on_planned=planned.append,
                               log_path=tmp_path / "engine.log")
    try:
        assert planned == [plan] and plan.settings.n_ctx == 512 and plan.settings.n_threads == 2
        assert engine.alive and engine.report is not None and engine.report.n_ctx == 512
    finally:
        engine.stop()
    assert not engine.alive
