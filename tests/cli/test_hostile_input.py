"""Hostile and unlucky input at the CLI, as an attacker or a broken server would send it: one
sentence naming what is wrong, quickly, with memory capped so a blow-up cannot hide as a result."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

MEMORY_CAP = 3 << 30  # address space: far above what a refusal needs, far below what 2^31 layers take


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_cli(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_capped, env={**os.environ, **(env or {})})


def hostile_header(path: Path, **fields) -> Path:
    """A GGUF whose header claims ``fields`` (llama arch), with one small real tensor."""
    w = GGUFWriter(str(path), "llama")
    block_count = fields.pop("block_count", 2)
    if isinstance(block_count, float):
        w.add_float32("llama.block_count", block_count)
    else:
        w.add_block_count(block_count)
    w.add_embedding_length(256)
    w.add_context_length(4096)
    w.add_feed_forward_length(512)
    head_count = fields.pop("head_count", 4)
    if isinstance(head_count, list):
        w.add_array("llama.attention.head_count", head_count)
    else:
        w.add_head_count(head_count)
    for key, value in fields.items():
        if isinstance(value, float):
            w.add_float32(f"llama.{key}", value)
        else:
            w.add_uint32(f"llama.{key}", value)
    w.add_tensor("token_embd.weight", np.zeros((16, 256), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("fields, named", [
    ({"block_count": 2**31}, "llama.block_count is 2,147,483,648"),
    ({"head_count": [4] * 5000}, "llama.attention.head_count lists 5,000 values"),
    ({"expert_count": 1 << 30}, "llama.expert_count"),
    ({"vocab_size": 1 << 31}, "llama.vocab_size"),
    ({"context_length": 1 << 31}, "llama.context_length"),
    ({"block_count": float("nan")}, "llama.block_count is nan"),
])
def test_a_header_claiming_absurd_counts_is_refused_naming_the_field(tmp_path, fields, named):
    path = hostile_header(tmp_path / "evil-Q8_0.gguf", **fields)
    out = run_cli("plan", str(path), "--json")
    assert out.returncode == 1 and named in out.stderr and "header is corrupt" in out.stderr
    assert "out of memory" not in out.stderr
    imported = run_cli("import", str(path))
    assert imported.returncode == 1 and named in imported.stderr


def test_a_remote_header_claiming_2_31_layers_is_refused_before_any_download(fake_hub, tmp_path):
    path = hostile_header(tmp_path / "evil-Q8_0.gguf", block_count=2**31)
    fake_hub.add_repo("evil/Layers-GGUF", {path.name: path})
    for verb in (("files", "evil/Layers-GGUF"), ("plan", "evil/Layers-GGUF")):
        out = run_cli(*verb)
        assert "llama.block_count is 2,147,483,648" in out.stdout + out.stderr, verb
        assert "out of memory" not in out.stderr
    assert not fake_hub.requests_for("evil/Layers-GGUF", path.name, "GET") or all(
        r.range for r in fake_hub.requests_for("evil/Layers-GGUF", path.name, "GET"))  # headers only


@pytest.fixture
def silent_hub():
    """A server that accepts connections and never answers a byte."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("verb", [("files", "someorg/Silent-GGUF"), ("download", "someorg/Silent-GGUF", "--best"),
                                  ("plan", "someorg/Silent-GGUF")])
def test_a_hub_that_never_answers_ends_in_one_sentence_naming_it(silent_hub, verb):
    import time

    t0 = time.monotonic()
    out = run_cli(*verb, env={"HF_ENDPOINT": silent_hub, "QUANTDESK_HUB_TIMEOUT": "1"}, timeout=60)
    took = time.monotonic() - t0
    assert out.returncode == 1, out.stderr
    assert silent_hub in out.stderr and "did not answer" in out.stderr
    assert "Check the network connection" in out.stderr
    assert took < 30  # bounded by the timeouts and the retry deadline, not by the server


def test_a_pipe_named_like_a_model_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "x.gguf"
    os.mkfifo(fifo)
    for verb in (("plan", str(fifo)), ("import", str(fifo))):
        out = run_cli(*verb, timeout=20)  # it used to wait forever for a writer
        assert out.returncode == 1 and "not a regular file" in out.stderr


@pytest.mark.parametrize("args, said", [
    (("plan", "m.gguf", "--ctx", "64"), "llama.cpp's smallest context is 256"),
    (("plan", "m.gguf", "--ctx", "-5"), "llama.cpp's smallest context is 256"),
    (("chat", "m.gguf", "--max-tokens", "-1"), "not a positive number"),
    (("serve", "m.gguf", "--port", "70000"), "not a TCP port"),
    (("quantize", "m.gguf", "--type", "Q8_0", "--threads", "0"), "not a positive number"),
])
def test_numbers_that_cannot_work_are_refused_with_the_reason(args, said):
    out = run_cli(*args)
    assert out.returncode == 2 and said in out.stderr


def test_a_file_name_too_long_for_the_file_system_is_one_sentence(tmp_path):
    out = run_cli("import", str(tmp_path / ("a" * 300 + ".gguf")))
    assert out.returncode == 1 and "too long for this file system" in out.stderr
    assert "unexpected" not in out.stderr.lower() and "log" not in out.stderr


def test_hub_file_names_cannot_drive_the_terminal(fake_hub, tiny_model):
    evil = "x\x1b]0;pwned\x07\x1b[2J-Q8_0.gguf"
    fake_hub.add_repo("evil/Escape-GGUF", {evil: tiny_model, "fine-Q8_0.gguf": tiny_model})
    out = run_cli("files", "evil/Escape-GGUF")
    assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout
    assert "\\x1b]0;pwned" in out.stdout and "fine-Q8_0.gguf" in out.stdout


def test_a_model_named_in_another_script_downloads(fake_hub, tiny_model):
    name = "Модель-日本語-Q8_0.gguf"
    fake_hub.add_repo("someorg/Unicode-GGUF", {name: tiny_model})
    out = run_cli("download", "someorg/Unicode-GGUF", "--quant", "Q8_0", "--json")
    assert out.returncode == 0, out.stderr
    import json

    (entry,) = json.loads(out.stdout)["files"]
    assert Path(entry["path"]).name == name and entry["verified"] is True


def test_cpu_features_in_a_hardware_file_are_read_whatever_their_case(tmp_path, llama8b_q4):
    import json

    base = json.loads(run_cli("hw", "--json", "--hardware", "cpu-16gb-laptop").stdout)
    rams = []
    for case in (str.upper, str.lower):
        spec = dict(base, cpu=dict(base["cpu"], features=[case(f) for f in base["cpu"]["features"]]))
        path = tmp_path / f"hw-{case.__name__}.json"
        path.write_text(json.dumps(spec))
        plan = json.loads(run_cli("plan", str(llama8b_q4), "--json", "--hardware", str(path)).stdout)
        rams.append(plan["options"][0]["ram"])
    assert rams[0] == rams[1]  # "avx2" is AVX2: the CPU repack copy is counted either way


def test_with_the_default_timeouts_a_silent_hub_is_told_within_seconds(silent_hub):
    import time

    env = {k: v for k, v in os.environ.items() if k != "QUANTDESK_HUB_TIMEOUT"}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "quantdesk", "files", "someorg/Silent-GGUF"], capture_output=True,
                         text=True, timeout=120, env={**env, "HF_ENDPOINT": silent_hub})
    took = time.monotonic() - t0
    assert out.returncode == 1 and "did not answer" in out.stderr and silent_hub in out.stderr
    assert took < 20, took  # the defaults (8 s read timeout, 12 s for the call with its retry), not minutes
