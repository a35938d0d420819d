"""Experts in RAM on a real Vulkan device (Mesa's software GPU): what llama.cpp allocates where.

Generated mixture-of-experts models — Mixtral-style (llama architecture) and Qwen3-MoE-style — load
with the routed experts of the first N blocks kept in RAM through the engine's buffer-type override;
each buffer llama.cpp logs is checked against the planner's figure for that placement, and the
model still answers.
"""

from __future__ import annotations

import pytest

from quantdesk.chat.engine import Finished
from quantdesk.chat.load import start_model
from quantdesk.chat.sampling import Sampling
from quantdesk.gguf.model_info import load_model_info
from quantdesk.hardware.detect import detect_hardware
from quantdesk.planning.fit import normalized_cpu_moe, settings_for
from quantdesk.planning.memory_model import placement_memory
from tests.support import gguf_factory as factory

TOLERANCE = 0.05
CTX = 1024


@pytest.fixture(scope="module")
def moe_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moe-vk")
    return {shape.name: factory.write_model(folder / f"{shape.name}.gguf", shape, "F16")
            for shape in (factory.MOE_SMALL, factory.QWEN3MOE_SMALL)}


def _close(predicted: int, measured: int) -> bool:
    return measured > 0 and abs(predicted - measured) / measured <= TOLERANCE


@pytest.mark.parametrize("name,gpu_layers,cpu_moe", [
    ("moe-small", "all", 2), ("moe-small", "all", 4), ("qwen3moe-small", "all", 3),
    ("qwen3moe-small", 5, 4),  # blocks 0-1 on the CPU, experts of blocks 2-3 in RAM, 4-5 all on the GPU
])
def test_experts_stay_in_ram_as_planned_and_the_model_answers(software_gpu, moe_models, tmp_path, name,
                                                              gpu_layers, cpu_moe):
    hw = detect_hardware()
    path = moe_models[name]
    info = load_model_info(path)
    k = info.n_layer + 1 if gpu_layers == "all" else gpu_layers
    engine, planned = start_model(path, hw, ctx=CTX, gpu_layers=k, cpu_moe=cpu_moe, log_path=tmp_path / "engine.log")
    try:
        report = engine.report
        finished = list(engine.complete("once upon a time", Sampling(max_tokens=8, seed=1)))[-1]
    finally:
        engine.stop()
    assert isinstance(finished, Finished) and finished.finish_reason != "crashed" and finished.tokens > 0
    assert planned.settings.cpu_moe_layers == cpu_moe and report.gpu_layers == k
    assert report.experts_in_ram == cpu_moe  # blocks on the CPU match the override too
    assert "in RAM" in report.summary

    predicted = placement_memory(info, settings_for(info, CTX, "f16", repack=False), k, "vulkan", None,
                                 normalized_cpu_moe(info, k, cpu_moe))
    b = report.buffers
    rows = {"Vulkan0 model": (predicted.weights_gpu, b.get("Vulkan0 model", 0)),
            "Vulkan0 KV": (predicted.kv_gpu, b.get("Vulkan0 KV", 0)),
            "CPU_Mapped model": (predicted.weights_cpu, b.get("CPU_Mapped model", 0)),
            "VRAM buffers": (predicted.weights_gpu + predicted.kv_gpu + predicted.compute_gpu,
                             sum(b.get(f"Vulkan0 {kind}", 0) for kind in ("model", "KV", "compute")))}
    shown = {key: (p, m, f"{(p - m) / max(m, 1):+.1%}") for key, (p, m) in rows.items()}
    assert all(_close(p, m) for p, m in rows.values()), shown
    # the scratch buffer is fitted, not derived: within 10% (docs/moe-placement.md lists each case)
    compute = (predicted.compute_gpu, b.get("Vulkan0 compute", 0))
    assert abs(compute[0] - compute[1]) <= 0.10 * compute[1], compute


def test_without_experts_in_ram_every_expert_is_on_the_gpu(software_gpu, moe_models, tmp_path):
    hw = detect_hardware()
    path = moe_models["moe-small"]
    info = load_model_info(path)
    engine, planned = start_model(path, hw, ctx=CTX, gpu_layers=info.n_layer + 1, cpu_moe=0,
                                  log_path=tmp_path / "engine.log")
    try:
        report = engine.report
    finally:
        engine.stop()
    assert report.experts_in_ram == 0 and "in RAM" not in report.summary
    predicted = placement_memory(info, settings_for(info, CTX, "f16", repack=False), info.n_layer + 1, "vulkan")
    assert _close(predicted.weights_gpu, report.buffers["Vulkan0 model"])
    assert _close(predicted.compute_gpu, report.buffers["Vulkan0 compute"])
