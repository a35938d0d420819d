"""Child processes that run llama.cpp: started in their own process group, killed as a whole.

llama.cpp can abort the process it runs in and ignores Python's signals while inside a long C
call; running it in a child keeps the app alive and makes cancel immediate (SIGKILL to the
group). The outcome of a child that died is described in one sentence.

From source a child is ``python -m MODULE``. In a frozen bundle (PyInstaller) ``sys.executable``
is the app itself, not a Python, so a child is the app again with a hidden first argument,
``--child MODULE``, which ``quantdesk.cli.main.main`` hands to :func:`run_child`.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

CHILD_FLAG = "--child"
# The modules a frozen app may run as a child; the bundle spec lists them as hidden imports.
CHILD_MODULES = ("quantdesk.chat.engine_child", "quantdesk.quantize.quantizer_child", "quantdesk.quantize.evaluate_child",
                 "quantdesk.hardware.backend_probe_child", "quantdesk.chat.selftest", "quantdesk.chat.template_child")
# The console twin of the windowed Windows app (installer/quantdesk.spec): a child needs real stdio.
WINDOWS_CONSOLE_EXE = "quantdesk-cli.exe"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def child_command(module: str) -> list[str]:
    """The argv that runs ``module`` as ``__main__`` in a new process, from source or frozen."""
    if not is_frozen():
        return [sys.executable, "-m", module]
    exe = Path(sys.executable)
    if os.name == "nt" and (exe.parent / WINDOWS_CONSOLE_EXE).is_file():
        exe = exe.parent / WINDOWS_CONSOLE_EXE
    return [str(exe), CHILD_FLAG, module]


def child_window_flags() -> int:
    """Windows creation flags that keep a frozen windowed app's console children from opening a
    console window; 0 elsewhere, and from source (where behaviour stays as it always was)."""
    if os.name == "nt" and is_frozen():
        return getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return 0


def run_child(module: str, args: list[str]) -> int:
    """The frozen app's ``--child MODULE ARGS...``: run the module as ``python -m`` would (its
    ``SystemExit`` passes through, so the exit status is the module's own)."""
    if module not in CHILD_MODULES:
        print(f"quantdesk: {module!r} is not a QuantDesk child process", file=sys.stderr)
        return 2
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE_KEY")


def without_secrets(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` less anything that looks like a credential (HF_TOKEN, *_API_KEY, …): llama.cpp's
    children never need one, and a process's environment is readable by tools that list it."""
    return {k: v for k, v in environ.items() if not any(word in k.upper() for word in SECRET_WORDS)}


def child_env() -> dict[str, str]:
    """The environment with this very ``quantdesk`` first on the path: the child must run the same
    code as its parent, whatever the working directory or another installed copy (a frozen child
    imports from its own bundle and ignores PYTHONPATH). Credentials are left out."""
    if is_frozen():
        return without_secrets(dict(os.environ))
    root = str(Path(__file__).resolve().parents[2])
    env = without_secrets(dict(os.environ))
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def spawn_module(module: str, job: dict[str, Any] | None) -> subprocess.Popen:
    """``python -m module JOB_JSON`` with piped text stdout/stderr, in a new process group.

    With ``job=None`` stdin is a pipe instead: the child reads its job from there, when it comes.
    """
    kwargs: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | child_window_flags()}
    args = child_command(module) + ([json.dumps(job)] if job is not None else [])
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
