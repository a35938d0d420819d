"""A frozen app has no ``python -m``: its llama.cpp children are the app itself with ``--child``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quantdesk.base import child_process
from quantdesk.base.child_process import CHILD_MODULES, child_command, child_env

ROOT = Path(__file__).resolve().parents[2]


def test_from_source_a_child_is_python_dash_m(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert child_command("quantdesk.chat.engine_child") == [sys.executable, "-m", "quantdesk.chat.engine_child"]
    assert child_env()["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_frozen_a_child_is_the_app_with_the_child_flag(monkeypatch, tmp_path):
    app = tmp_path / "quantdesk"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert child_command("quantdesk.quantize.quantizer_child") == [str(app), "--child", "quantdesk.quantize.quantizer_child"]
    assert "PYTHONPATH" not in child_env()  # the bundle imports from itself
    assert child_process.child_window_flags() == 0  # only a frozen Windows app hides consoles


def test_child_flag_runs_the_module_as_python_dash_m_would(tmp_path):
    job = json.dumps({"text_file": str(tmp_path / "missing.txt")})
    direct = subprocess.run([sys.executable, "-m", "quantdesk.quantize.evaluate_child", job],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    via_flag = subprocess.run([sys.executable, "-m", "quantdesk", "--child", "quantdesk.quantize.evaluate_child", job],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert direct.returncode == via_flag.returncode == 1
    assert json.loads(via_flag.stdout) == json.loads(direct.stdout)
    assert "FileNotFoundError" in json.loads(via_flag.stdout)["error"]


def test_child_flag_refuses_modules_that_are_not_children():
    out = subprocess.run([sys.executable, "-m", "quantdesk", "--child", "os", "print('x')"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and out.stdout == "" and "not a QuantDesk child process" in out.stderr
    assert set(CHILD_MODULES) == {"quantdesk.chat.engine_child", "quantdesk.quantize.quantizer_child",
                                  "quantdesk.quantize.evaluate_child", "quantdesk.hardware.backend_probe_child",
                                  "quantdesk.chat.selftest", "quantdesk.chat.template_child"}


@pytest.mark.skipif(os.name != "posix", reason="the stand-in app is a shell script")
def test_a_frozen_parent_chats_and_quantizes_through_its_own_binary(tmp_path, tiny_model):
    """A stand-in for the bundle (a script that records its argv and runs ``python -m quantdesk``)
    plays sys.executable in a parent that believes it is frozen; the engine and the quantizer must
    start it with ``--child`` and work."""
    calls = tmp_path / "calls.txt"
    app = tmp_path / "quantdesk"
    app.write_text(f'#!/bin/sh\necho "$1 $2" >> "{calls}"\n'
                   f'PYTHONPATH="{ROOT}" exec "{sys.executable}" -m quantdesk "$@"\n')
    app.chmod(0o755)
    parent = textwrap.dedent(f"""
        import sys
        sys.frozen, sys.executable = True, {str(app)!r}
        from quantdesk.chat.engine import Engine, Finished, LoadSettings
        from quantdesk.quantize.quantizer import QuantizeResult, quantize
        from quantdesk.chat.sampling import Sampling
        with Engine({str(tiny_model)!r}, LoadSettings(n_ctx=256, n_threads=1)) as eng:
            eng.start(timeout=120)
            done = [e for e in eng.complete("hi", Sampling(max_tokens=4, seed=1, ignore_eos=True))][-1]
            assert isinstance(done, Finished) and done.tokens == 4, done
            assert eng.template is not None and eng.template.source == "model", eng.template
        result = [e for e in quantize({str(tiny_model)!r}, "Q8_0", {str(tmp_path / "out.gguf")!r})][-1]
        assert isinstance(result, QuantizeResult), result
        print("ok", result.size)
    """)
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok") and (tmp_path / "out.gguf").stat().st_size > 0
    # the quantizer's pre-flight detects the machine, which asks the GPU backend in a child too
    # (and the chat template is tried in its budgeted renderer, a child of its own)
    calls_made = set(calls.read_text().splitlines())
    assert {"--child quantdesk.chat.engine_child", "--child quantdesk.chat.template_child",
            "--child quantdesk.quantize.quantizer_child"} <= calls_made  # (the backend probe, when asked)
    assert calls_made <= {f"--child {module}" for module in CHILD_MODULES}
