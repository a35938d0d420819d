"""llama.cpp's Vulkan backend on a software device: found as llama.cpp sees it, used for every layer."""

from __future__ import annotations

import json
import subprocess
import sys

from quantdesk.base.child_process import child_env
from quantdesk.hardware.backend_probe import run_probe
from quantdesk.hardware.detect import detect_hardware


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_the_backend_lists_the_software_device_with_the_memory_it_reports(software_gpu):
    probe = run_probe()
    assert probe.error is None
    [gpu] = probe.gpus
    assert gpu.name == "Vulkan0" and gpu.backend == "vulkan" and "llvmpipe" in gpu.description
    assert gpu.memory_total > 0 and 0 < gpu.memory_free <= gpu.memory_total
    assert probe.cpu_variant  # a portable build picked one of its CPU variants for this CPU

    hw = detect_hardware(probe)
    [found] = [g for g in hw.gpus if g.backend]
    assert (found.backend, found.backend_device, found.vram_total) == ("vulkan", "Vulkan0", gpu.memory_total)
    assert hw.usable_gpus == [found]


def test_hw_json_gives_each_gpu_its_backend(software_gpu):
    out = _cli("hw", "--json")
    assert out.returncode == 0, out.stderr
    gpus = json.loads(out.stdout)["gpus"]
    assert [(g["backend"], g["backend_device"]) for g in gpus] == [("vulkan", "Vulkan0")]
    assert gpus[0]["vram_total"] > 0 and gpus[0]["source"] == "ggml:Vulkan0"


def test_two_devices_are_two_gpus(two_software_gpus):
    probe = run_probe()
    assert [d.name for d in probe.gpus] == ["Vulkan0", "Vulkan1"]
    hw = detect_hardware(probe)
    assert [g.backend_device for g in hw.usable_gpus] == ["Vulkan0", "Vulkan1"]


def test_selftest_generates_on_the_cpu_and_with_every_layer_on_the_gpu(software_gpu):
    out = _cli("selftest", "--json", timeout=600)
    result = json.loads(out.stdout)
    assert out.returncode == 0 and result["ok"], result
    assert result["gpu_backend"] == "vulkan" and result["tokens"] == 8
    assert result["gpu_layers"] == result["total_layers"] > 0
    assert {"Vulkan0 model", "Vulkan0 KV", "Vulkan0 compute"} <= set(result["gpu_buffers"])
    assert result["cpu_backend"] not in (None, "built-in")
    assert "Vulkan on llvmpipe" in result["summary"] and result["summary"].endswith(": working")


def test_without_the_device_named_the_vulkan_build_sees_no_gpu_and_says_nothing_is_wrong(monkeypatch):
    from tests.support.software_gpu import software_gpu_env

    env = software_gpu_env(1)
    monkeypatch.setenv("VK_ICD_FILENAMES", env["VK_ICD_FILENAMES"])  # lavapipe only, not named: skipped
    monkeypatch.delenv("GGML_VK_VISIBLE_DEVICES", raising=False)
    probe = run_probe()
    assert probe.error is None and probe.gpus == []
    assert not detect_hardware(probe).usable_gpus
