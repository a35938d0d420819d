"""Child processes that run llama.cpp: started in their own process group, killed as a whole.

llama.cpp can abort the process it runs in and ignores Python's signals while inside a long C
call; running it in a child keeps the app alive and makes cancel immediate (SIGKILL to the
group). The outcome of a child that died is described in one sentence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def child_env() -> dict[str, str]:
    """The environment with this very ``quantdesk`` first on the path: the child must run the same
    code as its parent, whatever the working directory or another installed copy."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def spawn_module(module: str, job: dict[str, Any] | None) -> subprocess.Popen:
    """``python -m module JOB_JSON`` with piped text stdout/stderr, in a new process group.

    With ``job=None`` stdin is a pipe instead: the child reads its job from there, when it comes.
    """
    kwargs: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    args = [sys.executable, "-m", module] + ([json.dumps(job)] if job is not None else [])
    return subprocess.Popen(args, stdin=subprocess.DEVNULL if job is not None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            errors="replace", env=child_env(), **kwargs)


def kill_tree(proc: subprocess.Popen) -> None:
    """Stop the child and anything it started, at once (SIGKILL to its process group), and reap it."""
    if proc.poll() is None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
        pass


def signal_name(returncode: int) -> str | None:
    """``SIGKILL`` for a child killed by signal 9 (returncode -9); None for a normal exit."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def death_reason(returncode: int) -> str:
    """Why a child stopped, as the end of a sentence ("was killed by SIGKILL — probably ...")."""
    sig = signal_name(returncode)
    if sig == "SIGABRT":
        return "aborted inside llama.cpp (SIGABRT)"
    if sig == "SIGKILL":
        return "was killed by SIGKILL — probably out of memory"
    if sig:
        return f"was killed by {sig}"
    return f"exited with status {returncode}"
