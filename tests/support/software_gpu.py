"""A GPU in every test run: Mesa's software Vulkan device (lavapipe) as llama.cpp's Vulkan0.

ggml's Vulkan backend skips CPU-type devices unless ``GGML_VK_VISIBLE_DEVICES`` names them; the
loader is pointed at lavapipe's ICD alone (``VK_ICD_FILENAMES``), so index 0 is lavapipe whatever
else the machine has, and ``0,0`` makes two devices of it. Its memory is host memory: offload,
buffer placement and per-device sizes are real, speed is not (never time it).

Where the build or the device is missing the tests skip with the reason; ``QUANTDESK_REQUIRE_GPU_TESTS=1``
(CI) turns that skip into a failure, so a broken Vulkan build cannot pass silently.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from quantdesk.hardware.llama_build import llama_build

LAVAPIPE_ICDS = ("/usr/share/vulkan/icd.d/lvp_icd.*.json", "/etc/vulkan/icd.d/lvp_icd.*.json")
BUILD_HINT = "build it with `python installer/build_llama.py --install` (README: tests on a software GPU)"


def _unavailable(reason: str) -> None:
    if os.environ.get("QUANTDESK_REQUIRE_GPU_TESTS") == "1":
        pytest.fail(f"software-GPU tests required (QUANTDESK_REQUIRE_GPU_TESTS=1) but {reason}")
    pytest.skip(reason)


def lavapipe_icd() -> str | None:
    found = [p for pattern in LAVAPIPE_ICDS for p in sorted(glob.glob(pattern))]
    return found[0] if found else None


def software_gpu_env(devices: int = 1) -> dict[str, str]:
    """The environment that shows llama.cpp ``devices`` software Vulkan devices, or skip."""
    build = llama_build()
    if "vulkan" not in build.system_info:
        _unavailable(f"this llama.cpp build has no Vulkan backend ({build.system_info or 'not installed'}): {BUILD_HINT}")
    icd = lavapipe_icd()
    if icd is None:
        _unavailable("Mesa's software Vulkan device is not installed (Debian/Ubuntu: apt install mesa-vulkan-drivers)")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quantdesk-tests" / "mesa-shaders"
    cache.mkdir(parents=True, exist_ok=True)
    # The first inference compiles ggml's shaders (~20 s); Mesa keeps them here for later runs.
    return {"GGML_VK_VISIBLE_DEVICES": ",".join(["0"] * devices), "VK_ICD_FILENAMES": icd,
            "MESA_SHADER_CACHE_DIR": str(cache), "MESA_SHADER_CACHE_MAX_SIZE": "1G"}


@pytest.fixture
def software_gpu(monkeypatch):
    """One software device visible to every child this test starts (and to this process's probe cache)."""
    from quantdesk.hardware.backend_probe import cached_probe

    for key, value in software_gpu_env(1).items():
        monkeypatch.setenv(key, value)
    cached_probe.cache_clear()
    yield
    cached_probe.cache_clear()


@pytest.fixture
def two_software_gpus(monkeypatch):
    from quantdesk.hardware.backend_probe import cached_probe

    for key, value in software_gpu_env(2).items():
        monkeypatch.setenv(key, value)
    cached_probe.cache_clear()
    yield
    cached_probe.cache_clear()
