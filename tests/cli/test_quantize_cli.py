"""`quantdesk quantize` end to end: JSON contract, library registration, hub inputs, interruption."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import gguf_factory as factory

RESULT_KEYS = {"output": str, "size": int, "seconds": float, "peak_ram": int}
REPORT_KEYS = {"kl_mean", "kl_p99", "kl_max", "top1_agreement", "ppl_reference", "ppl_quantized", "tokens"}


def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def library() -> list[dict]:
    out = run_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_json_contract_and_library_registration(tiny_model):
    out = run_cli("quantize", str(tiny_model), "--type", "q4_k_m", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key, kind in RESULT_KEYS.items():
        assert isinstance(data[key], kind), key
    path = Path(data["output"])
    assert path.is_file() and data["size"] == path.stat().st_size and data["seconds"] > 0
    assert path.parent == Path(os.environ["QUANTDESK_HOME"]) / "models" / "quantized"
    assert path.name == "tiny-Q4_K_M.gguf"
    assert "report" not in data
    (model,) = library()
    assert model["source"] == "quantized" and model["quant"] == "Q4_K_M" and model["path"] == str(path)
    assert model["source_sha256"] == sha256(tiny_model) and model["sha256"] == sha256(path)
    assert run_cli("verify", model["name"]).returncode == 0
    again = run_cli("quantize", model["name"], "--type", "Q2_K")  # a library name as input
    assert again.returncode == 1 and "already quantized" in again.stderr


def test_eval_report_in_json_and_table(tiny_model, tmp_path):
    out = run_cli("quantize", str(tiny_model), "--type", "Q8_0", "-o", str(tmp_path / "q8.gguf"), "--eval",
                  "--eval-tokens", "64", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["report"]
    assert REPORT_KEYS <= set(report) and report["tokens"] == 64
    assert 0 <= report["kl_mean"] <= report["kl_max"] and 0 <= report["top1_agreement"] <= 1
    assert report["ppl_reference"] > 0 and report["ppl_quantized"] > 0
    text = run_cli("quantize", str(tiny_model), "--type", "Q4_K_M", "-o", str(tmp_path / "q4.gguf"), "--eval",
                   "--eval-tokens", "32")
    assert text.returncode == 0, text.stderr
    assert "KL divergence" in text.stdout and "top-1 agreement" in text.stdout and "perplexity" in text.stdout


@pytest.mark.parametrize("kind,needle", [("Q9_Z", "valid types: Q8_0, Q6_K"), ("IQ1_S", "importance matrix")])
def test_bad_type_is_one_sentence(tiny_model, kind, needle):
    out = run_cli("quantize", str(tiny_model), "--type", kind)
    assert out.returncode == 1 and needle in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_from_a_hub_repo_downloads_verified_then_quantizes(fake_hub, small_model, tiny_model):
    repo = "org/Small-GGUF"
    fake_hub.add_repo(repo, {"Small-F16.gguf": small_model, "Small-Q8_0.gguf": tiny_model})
    out = run_cli("quantize", repo, "--type", "Q4_K_M", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    models = {m["source"]: m for m in library()}
    hub_sha = fake_hub.file(repo, "Small-F16.gguf").sha256
    assert models["downloaded"]["sha256"] == hub_sha and models["downloaded"]["repo"] == repo
    assert models["quantized"]["source_sha256"] == hub_sha and models["quantized"]["path"] == data["output"]
    assert models["quantized"]["repo"] == repo
    fake_hub.clear_requests()
    again = run_cli("quantize", repo, "--type", "Q8_0", "--json")  # the F16 is in the library already
    assert again.returncode == 0, again.stderr
    assert not [r for r in fake_hub.requests_for(repo, "Small-F16.gguf", "GET") if r.status in (200, 206)]


def test_hub_repo_without_full_precision_is_refused(fake_hub, tiny_model):
    fake_hub.add_repo("org/Only-Q8", {"Only-Q8_0.gguf": tiny_model})
    out = run_cli("quantize", "org/Only-Q8", "--type", "Q4_K_M")
    assert out.returncode == 1 and "no full-precision" in out.stderr and "Q8_0" in out.stderr


def test_preflight_refuses_before_downloading(fake_hub, tmp_path):
    repo = "org/Big-GGUF"
    factory.add_header_only_repo(fake_hub, repo, tmp_path, {"Big-F16.gguf": (factory.LLAMA3_70B, "F16")})
    out = run_cli("quantize", repo, "--type", "Q4_K_M", env={"QUANTDESK_HARDWARE": "cpu-4gb"})
    assert out.returncode == 1 and "not enough memory" in out.stderr, out.stderr
    assert fake_hub.bytes_served.get((repo, "Big-F16.gguf"), 0) < 64 << 20  # the header only
    assert library() == []
    assert not list((Path(os.environ["QUANTDESK_HOME"]) / "models").rglob("*.gguf*"))


def test_plan_json_gains_quantize_option(tmp_path, tiny_model):
    f16 = factory.write_header_only(tmp_path / "L8B-F16.gguf", factory.LLAMA3_8B, "F16")
    data = json.loads(run_cli("plan", str(f16), "--hardware", "cpu-16gb-laptop", "--json").stdout)
    offer = data["quantize_option"]
    assert offer["type"] in {"Q4_K_M", "Q4_K_S", "Q5_K_S", "Q5_K_M", "Q3_K_L"} and offer["ram"] < offer["size"]
    assert {"options", "notes", "model", "ctx"} <= set(data)  # the existing contract is intact
    text = run_cli("plan", str(f16), "--hardware", "cpu-16gb-laptop").stdout
    assert f"quantize locally to {offer['type']}" in text
    assert json.loads(run_cli("plan", str(tiny_model), "--json").stdout)["quantize_option"] is None


def test_sigterm_kills_the_quantizer_and_removes_the_partial(small_model, tmp_path):
    work = tmp_path / "out"
    work.mkdir()
    out = work / "slow.gguf"
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "quantize", str(small_model), "--type", "IQ4_XS",
                             "--threads", "1", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    partial = work / "slow.gguf.partial"
    deadline = time.time() + 60
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size > 0):
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert partial.exists() and children
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert list(work.iterdir()) == []
