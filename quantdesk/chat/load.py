"""Loading a model: plan it for a machine, start its process — the one way the CLI and the GUI do it.

``start_model`` plans the load (``plan_load``: context, GPU split, threads for ``hardware``) and
starts an :class:`Engine` with those settings. A set ``cancel`` event stops the load between the
steps and while the model process starts; the process it started is ended whenever the load does
not succeed, so a failed or cancelled load leaves nothing running.

Failures keep their types, so a caller decides what to tell the user from the type alone:
``FileNotFoundError`` (no file at ``path``), ``GGUFError`` (the file is not a readable model),
``EngineError`` (the process failed to load it, or the load was cancelled), ``QuantDeskError``
(the planner's own refusals, e.g. the model does not fit this machine).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantdesk.chat.engine import Engine, EngineError, EngineFailure, PlannedLoad, plan_load
from quantdesk.hardware.machine import Hardware


def start_model(path: str | Path, hardware: Hardware, ctx: int | None = None, kv_type: str = "f16",
                gpu_layers: str | int = "auto", threads: int | None = None, *, cpu_moe: str | int = "auto",
                cancel: threading.Event | None = None,
                on_planned: Callable[[PlannedLoad], None] | None = None,
                **engine_options: Any) -> tuple[Engine, PlannedLoad]:
    """Plan ``path`` for ``hardware`` and start it; returns the running engine and the plan it used.

    ``on_planned`` is called with the plan before the process starts (the CLI says what it loads).
    ``cpu_moe``: blocks whose routed experts stay in RAM ("auto": the planner's).
    ``engine_options`` go to :class:`Engine` (``host``, ``port``, ``api_key``, ``log_path``).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    planned = plan_load(path, hardware, ctx, kv_type or "f16", gpu_layers, threads, cpu_moe)
    _check(cancel)
    if on_planned is not None:
        on_planned(planned)
    engine = Engine(path, planned.settings, **engine_options)
    try:
        engine.start(cancel=cancel)
        _check(cancel)
    except BaseException:
        engine.stop()
        raise
    return engine, planned


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise EngineError("loading was cancelled", EngineFailure.CANCELLED)
