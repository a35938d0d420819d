"""The planner's GPU figures against the buffers llama.cpp really allocates on a Vulkan device.

Each of weights, KV cache and compute buffer is checked on its own against the size llama.cpp
logs for ``Vulkan0`` (the engine's load report reads the log), for every layer offloaded and for
a split; the software device makes the allocations real without a GPU.
"""

from __future__ import annotations

import pytest

from quantdesk.chat.load import start_model
from quantdesk.gguf.model_info import load_model_info
from quantdesk.hardware.detect import detect_hardware
from quantdesk.planning.fit import settings_for
from quantdesk.planning.memory_model import placement_memory
from tests.support import gguf_factory as factory

TOLERANCE = 0.05


@pytest.fixture(scope="module")
def medium_f16(tmp_path_factory):
    return factory.write_model(tmp_path_factory.mktemp("vk") / "medium.gguf", factory.MEDIUM, "F16")


def _close(predicted: int, measured: int) -> bool:
    return measured > 0 and abs(predicted - measured) / measured <= TOLERANCE


@pytest.mark.parametrize("gpu_layers", ["all", 4])
def test_gpu_buffers_match_the_plan_within_5_percent(software_gpu, medium_f16, tmp_path, gpu_layers):
    hw = detect_hardware()
    [gpu] = hw.usable_gpus
    n_layer = factory.MEDIUM.n_layer
    k = n_layer + 1 if gpu_layers == "all" else gpu_layers
    engine, planned = start_model(medium_f16, hw, ctx=1024, gpu_layers=k, log_path=tmp_path / "engine.log")
    try:
        report = engine.report
    finally:
        engine.stop()
    assert report.gpu_layers == k and report.total_layers == n_layer + 1

    info = load_model_info(medium_f16)
    predicted = placement_memory(info, settings_for(info, 1024, "f16", repack=False), k, gpu.backend)
    measured = {kind: report.buffers.get(f"Vulkan0 {kind}", 0) for kind in ("model", "KV", "compute")}
    rows = {"model": (predicted.weights_gpu, measured["model"]), "KV": (predicted.kv_gpu, measured["KV"]),
            "compute": (predicted.compute_gpu, measured["compute"])}
    assert all(_close(p, m) for p, m in rows.values()), {kind: (p, m, f"{(p - m) / max(m, 1):+.1%}")
                                                         for kind, (p, m) in rows.items()}


def test_two_devices_split_the_layers_and_together_hold_the_planned_weights(two_software_gpus, medium_f16, tmp_path):
    hw = detect_hardware()
    assert [g.backend_device for g in hw.usable_gpus] == ["Vulkan0", "Vulkan1"]
    k = factory.MEDIUM.n_layer + 1
    engine, _ = start_model(medium_f16, hw, ctx=1024, gpu_layers=k, log_path=tmp_path / "engine.log")
    try:
        report = engine.report
    finally:
        engine.stop()
    model = {d: report.buffers.get(f"{d} model", 0) for d in ("Vulkan0", "Vulkan1")}
    assert report.gpu_layers == k and all(model.values()), report.buffers
    info = load_model_info(medium_f16)
    predicted = placement_memory(info, settings_for(info, 1024, "f16", repack=False), k, "vulkan")
    assert _close(predicted.weights_gpu, sum(model.values())), (predicted.weights_gpu, model)
    kv = sum(report.buffers.get(f"{d} KV", 0) for d in ("Vulkan0", "Vulkan1"))
    assert _close(predicted.kv_gpu, kv), (predicted.kv_gpu, kv)
