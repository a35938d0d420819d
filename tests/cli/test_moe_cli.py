"""Mixture-of-experts placement from the command line: `plan` shows it, `chat`/`serve` take --cpu-moe."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run_cli
from tests.support import gguf_factory as factory


@pytest.fixture(scope="module")
def a3b_q4(tmp_path_factory):
    return factory.write_header_only(tmp_path_factory.mktemp("a3b") / "Qwen3-30B-A3B-Q4_K_M.gguf",
                                     factory.QWEN3_30B_A3B, "Q4_K_M")


@pytest.fixture(scope="module")
def moe_small(tmp_path_factory):
    return factory.write_model(tmp_path_factory.mktemp("moe") / "moe-small.gguf", factory.MOE_SMALL, "F16")


def test_plan_json_carries_the_expert_placement(a3b_q4):
    out = run_cli("plan", str(a3b_q4), "--hardware", "nvidia-12gb", "--json")
    assert out.returncode == 0, out.stderr
    [option] = json.loads(out.stdout)["options"]
    n = option["cpu_moe_layers"]
    assert option["verdict"] == "partial" and option["gpu_layers"] == 49 and 0 < n < 48
    assert option["load_args"]["cpu_moe_layers"] == n and option["load_args"]["n_gpu_layers"] == 49
    assert option["summary"] == f"all layers on GPU, experts of {n} of 48 layers in RAM"
    assert option["memory"]["experts_cpu"] > 0 and option["memory"]["vram"] == option["vram"]
    human = run_cli("plan", str(a3b_q4), "--hardware", "nvidia-12gb")
    assert f"experts of {n} of 48 layers in RAM" in human.stdout and "routed experts" in human.stdout
    dense = json.loads(run_cli("plan", str(a3b_q4), "--hardware", "nvidia-24gb", "--json").stdout)["options"][0]
    assert dense["verdict"] == "full_gpu" and dense["cpu_moe_layers"] == 0


def test_chat_keeps_the_asked_experts_in_ram_on_a_gpu(software_gpu, moe_small):
    out = run_cli("chat", str(moe_small), "--prompt", "Hello", "--max-tokens", "6", "--ignore-eos", "--ctx", "512",
                  "--gpu-layers", "5", "--cpu-moe", "3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["tokens"] == 6 and data["gpu_layers"] == 5
    assert data["load"]["experts_in_ram"] == 3 and "routed experts of 3 layers in RAM" in data["load"]["summary"]
    assert "stay in RAM" in out.stderr  # the note says what was done and why


def test_cpu_moe_on_a_dense_model_is_ignored_with_a_note(tiny_model):
    out = run_cli("chat", str(tiny_model), "--prompt", "Hi", "--max-tokens", "2", "--ctx", "512",
                  "--cpu-moe", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert "not a mixture-of-experts model" in out.stderr
    assert json.loads(out.stdout)["load"]["experts_in_ram"] == 0


def test_cpu_moe_takes_auto_or_a_count():
    out = run_cli("chat", "x.gguf", "--cpu-moe", "some", "--prompt", "hi")
    assert out.returncode == 2 and "--cpu-moe" in out.stderr
