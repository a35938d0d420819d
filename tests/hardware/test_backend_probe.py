"""GPUs as llama.cpp's backend sees them, joined with NVML/sysfs; a probe that fails is a sentence."""

from __future__ import annotations

from quantdesk.hardware import backend_probe
from quantdesk.hardware.backend_probe import BackendProbe, merge_backend_devices, run_probe
from quantdesk.hardware.detect import backend_notes
from quantdesk.hardware.ggml_devices import BackendDevice
from quantdesk.hardware.machine import CpuInfo, GpuInfo, Hardware

GiB = 2**30


def _dev(name: str, description: str, total: int, free: int | None = None, kind: str = "gpu") -> BackendDevice:
    return BackendDevice(name=name, description=description, backend="vulkan", type=kind,
                         memory_free=total if free is None else free, memory_total=total)


def _nvidia(total: int = 8 * GiB, free: int = 7 * GiB) -> GpuInfo:
    return GpuInfo(vendor="nvidia", name="NVIDIA GeForce RTX 4060", vram_total=total, vram_free=free,
                   bandwidth=272_000_000_000, source="nvml", driver="560.1")


def test_a_gpu_gets_its_backend_and_the_total_the_backend_reports_keeping_nvml_details():
    [gpu] = merge_backend_devices([_nvidia()], [_dev("CPU", "AMD Ryzen", 32 * GiB, kind="cpu"),
                                                _dev("Vulkan0", "NVIDIA GeForce RTX 4060", 7_900_000_000)])
    assert (gpu.backend, gpu.backend_device, gpu.vram_total) == ("vulkan", "Vulkan0", 7_900_000_000)
    assert gpu.vram_free == 7 * GiB  # NVML's live free figure, within the backend's total
    assert gpu.driver == "560.1" and gpu.bandwidth and gpu.source == "nvml + ggml:Vulkan0"


def test_devices_only_the_backend_knows_are_added_and_gpus_no_backend_drives_are_kept_unused():
    arc = _dev("Vulkan0", "Intel(R) Arc(tm) A770", 16 * GiB)
    merged = merge_backend_devices([_nvidia()], [arc])
    assert [(g.vendor, g.backend_device) for g in merged] == [("intel", "Vulkan0"), ("nvidia", None)]
    hw = Hardware(gpus=merged, ram_total=32 * GiB, ram_available=30 * GiB, swap_total=0,
                  cpu=CpuInfo("cpu", 8, 16), disk_free=100 * GiB, gpu_offload_supported=True)
    assert [g.vendor for g in hw.usable_gpus] == ["intel"]
    assert backend_notes(merged, BackendProbe(devices=[arc]), "backends: vulkan") == [
        "NVIDIA GeForce RTX 4060 found, but no backend of this llama.cpp build drives it: models do not use it"]


def test_two_gpus_of_one_vendor_pair_up_in_bus_order():
    a, b = _nvidia(), GpuInfo(vendor="nvidia", name="NVIDIA RTX 3060", vram_total=12 * GiB, vram_free=12 * GiB)
    merged = merge_backend_devices([a, b], [_dev("Vulkan0", "NVIDIA GeForce RTX 4060", 8 * GiB),
                                            _dev("Vulkan1", "NVIDIA RTX 3060", 12 * GiB)])
    assert [(g.name, g.backend_device) for g in merged] == [(a.name, "Vulkan0"), (b.name, "Vulkan1")]


def test_a_vulkan_build_that_sees_no_device_says_to_install_the_driver():
    gpus = merge_backend_devices([_nvidia()], [])
    [note] = backend_notes(gpus, BackendProbe(), "backends: vulkan")
    assert "Vulkan backend sees no GPU" in note and "mesa-vulkan-drivers" in note


def test_a_probe_that_crashes_or_hangs_is_an_error_sentence(monkeypatch):
    monkeypatch.setattr(backend_probe, "child_command", lambda _m: ["python3", "-c", "import os; os.abort()"])
    crashed = run_probe()
    assert crashed.devices == [] and "aborted inside llama.cpp" in crashed.error
    monkeypatch.setattr(backend_probe, "child_command", lambda _m: ["sleep", "30"])
    hung = run_probe(timeout=0.5)
    assert hung.devices == [] and "did not list its devices within" in hung.error
    assert backend_notes([], hung, "") == [f"{hung.error}: models run on the CPU"]


def test_the_real_probe_lists_at_least_the_cpu():
    probe = run_probe()
    assert probe.error is None and any(d.type == "cpu" and d.backend == "cpu" for d in probe.devices)
