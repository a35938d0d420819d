"""The memory a model may use on a machine: what is free, less the safety margins the planner keeps.

Light on purpose (no numpy or gguf), so the Hardware page can show the same "free for a model"
figure Discover plans with, on the GUI thread, without importing the planner.
"""

from __future__ import annotations

from quantdesk.hardware.machine import GpuInfo, Hardware

MiB = 1 << 20
# Safety margins, stated: VRAM keeps max(256 MiB, 3% of the card) free for the desktop and
# driver growth; RAM keeps max(512 MiB, 5% of total) for the OS and the app itself.
VRAM_MARGIN_MIN, VRAM_MARGIN_FRACTION = 256 * MiB, 0.03
RAM_MARGIN_MIN, RAM_MARGIN_FRACTION = 512 * MiB, 0.05


def vram_margin(gpu: GpuInfo) -> int:
    return max(VRAM_MARGIN_MIN, int(VRAM_MARGIN_FRACTION * gpu.vram_total))


def ram_margin(hw: Hardware) -> int:
    return max(RAM_MARGIN_MIN, int(RAM_MARGIN_FRACTION * hw.ram_total))


def vram_for_models(gpu: GpuInfo) -> int:
    return max(0, gpu.vram_free - vram_margin(gpu))


def ram_for_models(hw: Hardware) -> int:
    return max(0, hw.ram_available - ram_margin(hw))
