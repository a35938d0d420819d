"""The CLI as other tools see it: verbs, JSON contracts, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import gguf_factory as factory

HW_KEYS = {"gpus", "ram_total", "ram_available", "swap_total", "cpu", "disk_free", "gpu_offload_supported"}
GPU_KEYS = {"vendor", "name", "vram_total", "vram_free", "bandwidth", "source"}
OPTION_KEYS = {"file", "quant", "size", "verdict", "n_layers", "gpu_layers", "vram", "ram", "kv_cache",
               "max_ctx_full_gpu", "tokens_per_s", "quality_loss", "recommended", "reason", "load_args"}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_hw_json_schema_and_round_trip(tmp_path):
    out = run_cli("hw", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert HW_KEYS <= set(data)
    assert {"name", "cores", "threads", "features"} <= set(data["cpu"])
    assert all(isinstance(data[k], int) for k in ("ram_total", "ram_available", "swap_total", "disk_free"))
    edited = dict(data, gpus=[{"vendor": "nvidia", "name": "Edited GPU", "vram_total": 8 * 2**30,
                               "vram_free": 7 * 2**30, "bandwidth": 272 * 10**9, "source": "edited"}],
                  gpu_offload_supported=True)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(edited))
    again = json.loads(run_cli("hw", "--json", "--hardware", str(path)).stdout)
    assert again["gpus"][0]["name"] == "Edited GPU" and GPU_KEYS <= set(again["gpus"][0])
    assert again["ram_total"] == data["ram_total"]


def test_hw_human_output_names_the_gpu_situation():
    out = run_cli("hw", "--hardware", "nvidia-12gb")
    assert out.returncode == 0
    assert "RTX 3060" in out.stdout and "12.0 GiB" in out.stdout


def test_plan_json_contract(llama8b_q4):
    out = run_cli("plan", str(llama8b_q4), "--ctx", "8192", "--hardware", "nvidia-12gb", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ctx"] == 8192 and data["kv_type"] == "f16" and HW_KEYS <= set(data["hardware"])
    (option,) = data["options"]
    assert OPTION_KEYS <= set(option)
    assert option["verdict"] == "full_gpu" and option["recommended"] is True
    assert option["load_args"]["n_gpu_layers"] == option["gpu_layers"] == 33
    assert option["load_args"]["n_ctx"] == 8192
    assert option["kv_cache"] == 2**30


def test_plan_default_context_is_the_models_own_when_smaller(tiny_model):
    data = json.loads(run_cli("plan", str(tiny_model), "--json", "--hardware", "cpu-8gb-laptop").stdout)
    assert data["ctx"] == factory.TINY.n_ctx_train == 2048


def test_env_var_hardware(llama8b_q4):
    out = run_cli("plan", str(llama8b_q4), "--json", env={"QUANTDESK_HARDWARE": "cpu-4gb"})
    assert json.loads(out.stdout)["options"][0]["verdict"] == "no_fit"


@pytest.mark.parametrize("args,needle", [
    (("plan", "/nonexistent/model.gguf"), "no such file"),
    (("plan", "not a model"), "neither a .gguf file nor a hub repo"),
    (("hw", "--hardware", "warp-drive"), "no hardware file or preset"),
])
def test_errors_are_one_sentence_without_traceback(args, needle):
    out = run_cli(*args)
    assert out.returncode != 0
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_malformed_gguf_is_an_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 200)
    out = run_cli("plan", str(bad))
    assert out.returncode == 1 and "bad.gguf" in out.stderr and "Traceback" not in out.stderr


def test_plan_hub_repo_reads_only_the_headers(fake_hub, tmp_path):
    """Every quant of a hub repo is planned from range requests on its first megabytes."""
    files = {f"Llama-3-8B-Instruct-{q}.gguf": (factory.LLAMA3_8B, q) for q in ("Q8_0", "Q4_K_M", "Q2_K")}
    factory.add_header_only_repo(fake_hub, "someorg/Llama-3-8B-Instruct-GGUF", tmp_path, files)
    out = run_cli("plan", "someorg/Llama-3-8B-Instruct-GGUF", "--hardware", "nvidia-8gb", "--json",
                  env={"HF_ENDPOINT": fake_hub.endpoint})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    quants = [o["quant"] for o in data["options"]]
    assert sorted(quants) == ["Q2_K", "Q4_K_M", "Q8_0"]
    assert sum(o["recommended"] for o in data["options"]) == 1
    by_quant = {o["quant"]: o for o in data["options"]}
    assert by_quant["Q8_0"]["verdict"] != "full_gpu" and by_quant["Q4_K_M"]["verdict"] == "full_gpu"
    total_file_bytes = sum(o["size"] for o in data["options"])
    served = sum(fake_hub.bytes_served.values())
    assert total_file_bytes > 15 * 2**30 and served < 64 * 2**20  # headers only, not gigabytes
    assert any(r.range for r in fake_hub.requests)


def test_plan_missing_hub_repo(fake_hub):
    out = run_cli("plan", "nobody/nothing-GGUF", env={"HF_ENDPOINT": fake_hub.endpoint})
    assert out.returncode == 1 and "not found" in out.stderr


def test_a_data_file_that_cannot_be_opened_is_one_sentence_with_a_next_step(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "library.db").mkdir(parents=True)  # not a database file: SQLite cannot open it
    monkeypatch.setenv("QUANTDESK_HOME", str(home))
    out = subprocess.run([sys.executable, "-m", "quantdesk", "list"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "QuantDesk's data could not be read or written" in out.stderr and "Traceback" not in out.stderr
    assert "Free some space" in out.stderr and "unexpected error" not in out.stderr


def test_options_given_before_the_verb_are_taken():
    out = subprocess.run([sys.executable, "-m", "quantdesk", "--hardware", "nvidia-8gb", "hw", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    assert json.loads(out.stdout)["gpus"][0]["vram_total"] == 8 * 2**30
    out = subprocess.run([sys.executable, "-m", "quantdesk", "--json", "--hardware=cpu-4gb", "hw"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["gpus"] == []
