"""The hardware model: what the planner plans for, live or simulated.

One JSON schema serves three uses: ``quantdesk hw --json`` prints it, ``--hardware FILE`` reads it
back (so a user can edit a copy and plan for another machine), and the bundled presets in
``resources/hardware/`` are written in it. Sizes are bytes, bandwidths bytes/s.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.paths import resources_dir

GPU_VENDORS = ("nvidia", "amd", "apple", "intel", "other")


@dataclass
class GpuInfo:
    vendor: str
    name: str
    vram_total: int
    vram_free: int
    bandwidth: int | None = None
    source: str = ""
    index: int = 0
    vram_used: int | None = None
    driver: str | None = None
    cuda_version: str | None = None
    compute_capability: str | None = None
    unified_memory: bool = False
    # The llama.cpp backend that drives it ("vulkan", "cuda", "metal") and its device name there
    # ("Vulkan0"); None when no backend of this build sees it (or the machine is simulated).
    backend: str | None = None
    backend_device: str | None = None


@dataclass
class CpuInfo:
    name: str
    cores: int
    threads: int
    features: list[str] = field(default_factory=list)


@dataclass
class Hardware:
    gpus: list[GpuInfo]
    ram_total: int
    ram_available: int
    swap_total: int
    cpu: CpuInfo
    disk_free: int
    gpu_offload_supported: bool
    # Extensions beyond the contract (readers must tolerate their absence):
    ram_bandwidth: int | None = None
    # Resident memory of a llama.cpp process on this machine before any model, as the backend
    # probe measured it (GPU drivers mapped in); None: the planner's measured CPU-build constant.
    llama_process_ram: int | None = None
    source: str = "detected"
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def usable_gpus(self) -> list[GpuInfo]:
        """GPUs llama.cpp can use: none when the build is CPU-only; where the backend was asked
        (any GPU carries a ``backend``), only the GPUs it drives."""
        if not self.gpu_offload_supported:
            return []
        if any(g.backend for g in self.gpus):
            return [g for g in self.gpus if g.backend]
        return self.gpus


def _int(data: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise QuantDeskError(f"hardware file: {where}{key} must be a non-negative number of bytes")
    return int(value)


def hardware_from_json(data: Any, source: str = "file") -> Hardware:
    """Validate and build a Hardware from the documented schema; errors name the bad field."""
    if not isinstance(data, dict):
        raise QuantDeskError("hardware file: expected a JSON object")
    gpus = []
    for i, g in enumerate(data.get("gpus") or []):
        if not isinstance(g, dict):
            raise QuantDeskError(f"hardware file: gpus[{i}] must be an object")
        vendor = str(g.get("vendor", "other")).lower()
        if vendor not in GPU_VENDORS:
            raise QuantDeskError(f"hardware file: gpus[{i}].vendor must be one of {', '.join(GPU_VENDORS)}")
        total = _int(g, "vram_total", f"gpus[{i}].")
        free = _int(g, "vram_free", f"gpus[{i}].", total)
        bandwidth = g.get("bandwidth")
        gpus.append(GpuInfo(
            vendor=vendor, name=str(g.get("name", vendor.upper() + " GPU")), vram_total=total,
            vram_free=min(free, total), bandwidth=int(bandwidth) if bandwidth else None,
            source=str(g.get("source", source)), index=int(g.get("index", i)),
            vram_used=g.get("vram_used"), driver=g.get("driver"), cuda_version=g.get("cuda_version"),
            compute_capability=g.get("compute_capability"),
            unified_memory=bool(g.get("unified_memory", vendor == "apple")),
            backend=str(g["backend"]).lower() if g.get("backend") else None,
            backend_device=str(g["backend_device"]) if g.get("backend_device") else None,
        ))
    cpu_data = data.get("cpu") or {}
    if not isinstance(cpu_data, dict):
        raise QuantDeskError("hardware file: cpu must be an object")
    cpu = CpuInfo(
        name=str(cpu_data.get("name", "CPU")),
        cores=max(1, int(cpu_data.get("cores", 4))),
        threads=max(1, int(cpu_data.get("threads", cpu_data.get("cores", 4)))),
        # upper case as detection writes them ("avx2" from a hand-written file means AVX2, which the
        # planner's CPU repack model depends on)
        features=[str(f).strip().upper() for f in cpu_data.get("features", [])],
    )
    ram_total = _int(data, "ram_total", "")
    ram_bw = data.get("ram_bandwidth")
    return Hardware(
        gpus=gpus, ram_total=ram_total,
        ram_available=min(_int(data, "ram_available", "", ram_total), ram_total),
        swap_total=_int(data, "swap_total", "", 0), cpu=cpu,
        disk_free=_int(data, "disk_free", "", 0),
        gpu_offload_supported=bool(data.get("gpu_offload_supported", bool(gpus))),
        ram_bandwidth=int(ram_bw) if ram_bw else None,
        llama_process_ram=(_int(data, "llama_process_ram", "") or None) if data.get("llama_process_ram") is not None else None,
        source=str(data.get("source", source)) if source == "file" else source,
        notes=[str(n) for n in data.get("notes", [])],
    )


def presets_dir() -> Path:
    return resources_dir() / "hardware"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.json"))


def load_hardware_spec(spec: str) -> Hardware:
    """``spec`` is a preset name or a path to a JSON file in the hw schema."""
    path = Path(spec).expanduser()
    if not path.is_file():
        preset = presets_dir() / f"{spec}.json"
        if not preset.is_file():
            raise QuantDeskError(
                f"no hardware file or preset named '{spec}'; presets: {', '.join(preset_names())}")
        path, source = preset, f"preset:{spec}"
    else:
        source = f"file:{path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QuantDeskError(f"cannot read hardware file {path}: {exc}") from None
    return hardware_from_json(data, source=source)
