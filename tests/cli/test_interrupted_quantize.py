"""A `quantdesk quantize` killed midway leaves no partial file; one killed after the quantizer
finished but before the library heard of it has its output adopted on the next start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import gguf_factory as factory


@pytest.fixture(scope="module")
def medium_f16(tmp_path_factory):
    return factory.write_model(tmp_path_factory.mktemp("iq") / "medium-F16.gguf", factory.MEDIUM, "F16", seed=5)


def start(source: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "quantdesk", "quantize", str(source), "--type", "Q8_0",
                             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True, timeout=120)


def wait_for(predicate, timeout: float = 60, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_a_quantize_killed_midway_leaves_no_partial_file(medium_f16, tmp_path):
    out = tmp_path / "medium-Q8_0.gguf"
    partial = out.with_name(out.name + ".partial")
    proc = start(medium_f16, out)
    assert wait_for(lambda: partial.exists() and partial.stat().st_size > 0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_for(lambda: not partial.exists(), timeout=5, step=0.05)  # its child saw it die and cleaned up
    assert not out.exists()
    listed = run_cli("list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def _library_paths() -> list[Path]:
    """Straight from the index, without a verb (``list`` itself would adopt the output)."""
    import sqlite3

    from quantdesk.base.paths import data_dir

    db = data_dir() / "library.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        return [Path(json.loads(files)[0]["path"]) for (files,) in con.execute("SELECT files FROM models")]


def test_a_quantize_killed_before_registering_has_its_output_adopted(medium_f16, tmp_path):
    out = tmp_path / "medium-Q8_0.gguf"
    for _attempt in range(5):  # the window between the file landing and the library hearing of it is short
        out.unlink(missing_ok=True)
        proc = start(medium_f16, out)
        wait_for(lambda p=proc: out.exists() or p.poll() is not None, step=0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists() and proc.returncode == -signal.SIGKILL and out not in _library_paths():
            break
    else:
        pytest.skip("never caught the quantizer between finishing and registering in 5 tries")
    listed = run_cli("list", "--json")
    assert listed.returncode == 0
    assert "interrupted after it finished left medium-Q8_0.gguf" in listed.stderr
    (model,) = json.loads(listed.stdout)
    assert Path(model["path"]) == out and model["source"] == "quantized" and model["quant"] == "Q8_0"
    assert run_cli("verify", model["name"]).returncode == 0


def test_a_model_llama_cpp_cannot_load_is_refused_before_quantizing(tmp_path):
    source = factory.write_model(tmp_path / "dup-F16.gguf", factory.TINY, "F16", duplicate_token=True)
    out = tmp_path / "dup-Q8_0.gguf"
    result = run_cli("quantize", str(source), "--type", "Q8_0", "-o", str(out))
    assert result.returncode == 1
    assert "cannot be quantized: llama.cpp cannot read it" in result.stderr and "would not load either" in result.stderr
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    assert json.loads(run_cli("list", "--json").stdout) == []


def test_the_quantizer_and_every_child_get_no_credentials(monkeypatch, tmp_path):
    """Issue 15.9: HF_TOKEN (and anything named like a secret) stays in the parent; the children get
    the rest of the environment (GPU drivers read theirs from it)."""
    from quantdesk.base.child_process import child_env, spawn_module

    monkeypatch.setenv("HF_TOKEN", "hf_parent_only")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-only")
    monkeypatch.setenv("GGML_VK_VISIBLE_DEVICES", "0")
    env = child_env()
    assert "HF_TOKEN" not in env and "OPENAI_API_KEY" not in env and env["GGML_VK_VISIBLE_DEVICES"] == "0"
    proc = spawn_module("quantdesk.quantize.quantizer_child", None)  # the quantizer as quantize() starts it
    try:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert b"hf_parent_only" not in environ and b"sk-parent-only" not in environ
    finally:
        proc.kill()
        proc.wait()
