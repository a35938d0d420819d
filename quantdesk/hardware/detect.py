"""Live hardware detection: NVIDIA via NVML, AMD via sysfs, Apple unified memory, RAM, CPU, disk,
joined with the devices llama.cpp's GPU backend registers (``backend_probe``).

Each missing piece (no pynvml, no driver, no sysfs) is a normal case that simply yields fewer
GPUs; every GPU figure carries the source it came from.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import psutil

from quantdesk.base.settings import models_dir
from quantdesk.hardware.backend_probe import BackendProbe, cached_probe, merge_backend_devices
from quantdesk.hardware.llama_build import llama_build
from quantdesk.hardware.machine import CpuInfo, GpuInfo, Hardware, load_hardware_spec

# Apple's GPU working-set limit (recommendedMaxWorkingSetSize) is about 3/4 of RAM by default
# (see ../shared/REFERENCE.md); `sysctl iogpu.wired_limit_mb` overrides it when set.
APPLE_WORKING_SET_FRACTION = 0.75


def detect_nvidia() -> list[GpuInfo]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device: a normal case
        return []
    gpus: list[GpuInfo] = []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except Exception:
            cuda_version = None
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability = f"{major}.{minor}"
            except Exception:
                capability = None
            gpus.append(GpuInfo(
                vendor="nvidia", name=_text(pynvml.nvmlDeviceGetName(handle)),
                vram_total=int(mem.total), vram_free=int(mem.free), vram_used=int(mem.used),
                bandwidth=_nvidia_bandwidth(pynvml, handle), source="nvml", index=i,
                driver=driver, cuda_version=cuda_version, compute_capability=capability,
            ))
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return gpus


def _nvidia_bandwidth(pynvml, handle) -> int | None:
    """Peak bandwidth = bus width (bits) / 8 x max memory clock x 2 (DDR transfers per clock)."""
    try:
        bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
        clock_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    except Exception:
        return None
    return int(bus_bits // 8 * clock_mhz * 1_000_000 * 2) if bus_bits and clock_mhz else None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def detect_amd(sysfs: Path = Path("/sys/class/drm")) -> list[GpuInfo]:
    gpus: list[GpuInfo] = []
    for card in sorted(sysfs.glob("card[0-9]*")):
        device = card / "device"
        total_file = device / "mem_info_vram_total"
        if not total_file.is_file() or _read(device / "vendor") != "0x1002":
            continue
        total = int(_read(total_file) or 0)
        used = int(_read(device / "mem_info_vram_used") or 0)
        name = _read(device / "product_name") or f"AMD GPU {_read(device / 'device') or ''}".strip()
        gpus.append(GpuInfo(
            vendor="amd", name=name, vram_total=total, vram_free=max(0, total - used),
            vram_used=used, source=f"sysfs:{total_file}", index=len(gpus),
        ))
    return gpus


def detect_intel(sysfs: Path = Path("/sys/class/drm")) -> list[GpuInfo]:
    """Intel GPUs share system RAM unless they report local memory; best effort."""
    gpus: list[GpuInfo] = []
    for card in sorted(sysfs.glob("card[0-9]")):
        device = card / "device"
        if _read(device / "vendor") != "0x8086":
            continue
        total_file = device / "mem_info_vram_total"
        if total_file.is_file():
            total = int(_read(total_file) or 0)
            used = int(_read(device / "mem_info_vram_used") or 0)
            gpus.append(GpuInfo(vendor="intel", name=f"Intel GPU {_read(device / 'device') or ''}".strip(),
                                vram_total=total, vram_free=max(0, total - used), vram_used=used,
                                source=f"sysfs:{total_file}", index=len(gpus)))
    return gpus


def detect_apple() -> list[GpuInfo]:
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return []
    ram = psutil.virtual_memory().total
    wired = _sysctl("iogpu.wired_limit_mb")
    if wired and int(wired) > 0:
        limit, source = int(wired) * 1024 * 1024, "sysctl iogpu.wired_limit_mb"
    else:
        limit, source = int(ram * APPLE_WORKING_SET_FRACTION), "unified memory: 75% working-set limit"
    name = _sysctl("machdep.cpu.brand_string") or "Apple Silicon GPU"
    used = ram - psutil.virtual_memory().available
    return [GpuInfo(vendor="apple", name=name, vram_total=limit, vram_free=max(0, limit - used),
                    source=source, unified_memory=True)]


def _sysctl(key: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=2).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def detect_cpu() -> CpuInfo:
    name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = _read(Path("/proc/cpuinfo")) or ""
    if cpuinfo:
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        name = match.group(1).strip() if match else name
        match = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.M)
        flags = set(match.group(1).split()) if match else set()
    elif platform.system() == "Darwin":
        name = _sysctl("machdep.cpu.brand_string") or name
    features = [f.upper() for f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni",
                                      "avx512_bf16", "amx_tile") if f in flags]
    if platform.machine().lower() in ("arm64", "aarch64"):
        features.append("NEON")
        if "sve" in flags:
            features.append("SVE")
    return CpuInfo(name=name, cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
                   threads=psutil.cpu_count(logical=True) or os.cpu_count() or 1, features=features)


def detect_hardware(probe: BackendProbe | None = None) -> Hardware:
    """This machine. ``probe``: the backend's devices if already asked (else asked once per process,
    and only when this llama.cpp build has a GPU backend to ask)."""
    gpus = detect_nvidia() + detect_amd() + detect_intel() + detect_apple()
    vm = psutil.virtual_memory()
    build = llama_build()
    notes: list[str] = []
    process_ram = None
    if build.installed and build.gpu_offload:
        probe = probe or cached_probe()
        gpus = merge_backend_devices(gpus, probe.devices)
        notes += backend_notes(gpus, probe, build.system_info)
        process_ram = probe.process_ram
    if not build.installed:
        notes.append("llama-cpp-python is not installed: models cannot be run or quantized")
    elif gpus and not build.gpu_offload:
        notes.append("a GPU was found but this build of llama.cpp has no GPU backend: install QuantDesk's "
                     "package, or build llama-cpp-python with Vulkan (see the README) to use it")
    if not gpus:
        notes.append("no supported GPU found: models run on the CPU")
    return Hardware(
        gpus=gpus, ram_total=int(vm.total), ram_available=int(vm.available),
        swap_total=int(psutil.swap_memory().total), cpu=detect_cpu(),
        disk_free=int(shutil.disk_usage(models_dir()).free), gpu_offload_supported=build.gpu_offload,
        llama_process_ram=process_ram, source="detected", notes=notes,
    )


def backend_notes(gpus: list[GpuInfo], probe: BackendProbe, system_info: str) -> list[str]:
    """Sentences for a GPU that is there but that llama.cpp's backend will not use, and why."""
    if probe.error:
        return [f"{probe.error}: models run on the CPU"]
    unused = [g.name for g in gpus if not g.backend]
    if not unused:
        return []
    if "vulkan" in system_info and not probe.gpus:
        return [f"{', '.join(unused)} found, but llama.cpp's Vulkan backend sees no GPU: install the GPU's "
                "Vulkan driver (Debian/Ubuntu: mesa-vulkan-drivers for AMD and Intel, the NVIDIA driver's "
                "Vulkan ICD for NVIDIA)"]
    return [f"{name} found, but no backend of this llama.cpp build drives it: models do not use it" for name in unused]


def resolve_hardware(spec: str | None = None) -> Hardware:
    """The hardware to plan for: ``spec`` or $QUANTDESK_HARDWARE if given, else this machine."""
    spec = spec or os.environ.get("QUANTDESK_HARDWARE") or None
    return load_hardware_spec(spec) if spec else detect_hardware()
