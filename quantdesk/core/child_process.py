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
from typing import Any


def spawn_module(module: str, job: dict[str, Any]) -> subprocess.Popen:
    """``python -m module JOB_JSON`` with piped text stdout/stderr, in a new process group."""
    kwargs: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return subprocess.Popen([sys.executable, "-m", module, json.dumps(job)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            errors="replace", **kwargs)


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
