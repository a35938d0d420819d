"""Which GPUs llama.cpp will really use: its backend's devices, asked in a child process.

NVML and sysfs say what is plugged in; only the backend says what llama.cpp offloads to (a
Vulkan build without a Vulkan driver sees nothing; a software device is seen only when named in
``GGML_VK_VISIBLE_DEVICES``). :func:`merge_backend_devices` joins the two: each GPU gets the
backend that drives it and the memory that backend reports, NVML's details stay.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass, field, replace

from quantdesk.base.child_process import child_command, child_env, child_window_flags, death_reason
from quantdesk.hardware.ggml_devices import BackendDevice
from quantdesk.hardware.machine import GpuInfo

PROBE_MODULE = "quantdesk.hardware.backend_probe_child"
# A Vulkan driver compiles nothing at enumeration; a healthy probe takes well under a second.
PROBE_TIMEOUT_S = 30.0
_VENDOR_WORDS = (("nvidia", ("nvidia", "geforce", "quadro", "tesla")), ("amd", ("amd", "radeon")),
                 ("intel", ("intel",)), ("apple", ("apple",)))


@dataclass(frozen=True)
class BackendProbe:
    devices: list[BackendDevice] = field(default_factory=list)
    cpu_variant: str | None = None
    error: str | None = None  # a sentence when the probe itself failed
    process_ram: int | None = None  # resident bytes of a llama.cpp process here before any model

    @property
    def gpus(self) -> list[BackendDevice]:
        return [d for d in self.devices if d.type in ("gpu", "igpu")]


def run_probe(timeout: float = PROBE_TIMEOUT_S) -> BackendProbe:
    """Ask a child process; a crash, hang or garbage is a probe with an error, never an exception."""
    try:
        done = subprocess.run(child_command(PROBE_MODULE), capture_output=True, text=True, encoding="utf-8",
                              errors="replace", env=child_env(), timeout=timeout, stdin=subprocess.DEVNULL,
                              creationflags=child_window_flags())
    except subprocess.TimeoutExpired:
        return BackendProbe(error=f"llama.cpp's GPU backend did not list its devices within {timeout:.0f} s "
                                  "(a GPU driver that hangs at start)")
    except OSError as exc:
        return BackendProbe(error=f"the backend probe could not start: {exc}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        if done.returncode < 0:
            why = f"the backend probe {death_reason(done.returncode)}"
        else:
            why = f"the backend probe failed ({(done.stderr.strip().splitlines() or ['no output'])[-1][:200]})"
        try:
            why = json.loads(lines[-1]).get("error") or why
        except (IndexError, ValueError, AttributeError):
            pass
        return BackendProbe(error=why)
    data = json.loads(lines[-1])
    return BackendProbe(devices=[BackendDevice(**d) for d in data.get("devices", [])],
                        cpu_variant=data.get("cpu_variant"),
                        process_ram=int(data["process_ram"]) if data.get("process_ram") else None)


@functools.lru_cache(maxsize=1)
def cached_probe() -> BackendProbe:
    """The probe, once per process: devices do not come and go while the app runs. Free memory
    does change; :func:`run_probe` asks again."""
    return run_probe()


def vendor_of(description: str) -> str:
    text = description.lower()
    return next((vendor for vendor, words in _VENDOR_WORDS if any(w in text for w in words)), "other")


def merge_backend_devices(gpus: list[GpuInfo], devices: list[BackendDevice]) -> list[GpuInfo]:
    """GPUs as llama.cpp will use them: the n-th backend device of a vendor is that vendor's n-th
    GPU by NVML/sysfs (the order both take from the PCI bus); its memory is what the backend
    reports. A backend device nothing else found (a software device, an Intel iGPU) is added; a
    GPU no backend drives is kept with ``backend`` unset, and plans leave it out."""
    merged, taken = [], set()
    for n, dev in enumerate(d for d in devices if d.type in ("gpu", "igpu")):
        vendor = vendor_of(dev.description)
        match = next((i for i, g in enumerate(gpus) if i not in taken and g.vendor == vendor), None)
        memory = {"vram_total": dev.memory_total, "vram_free": min(dev.memory_free, dev.memory_total)} \
            if dev.memory_total else {}
        if match is None:
            merged.append(GpuInfo(vendor=vendor, name=dev.description or dev.name, source=f"ggml:{dev.name}",
                                  index=n, backend=dev.backend, backend_device=dev.name,
                                  unified_memory=dev.type == "igpu" and vendor == "apple",
                                  **(memory or {"vram_total": 0, "vram_free": 0})))
            continue
        taken.add(match)
        gpu = gpus[match]
        if memory:  # the backend's total; free stays the live figure NVML/sysfs gives (the probe is cached)
            memory["vram_free"] = min(gpu.vram_free, dev.memory_total)
        merged.append(replace(gpu, backend=dev.backend, backend_device=dev.name, index=n,
                              source=f"{gpu.source} + ggml:{dev.name}" if gpu.source else f"ggml:{dev.name}",
                              **memory))
    return merged + [g for i, g in enumerate(gpus) if i not in taken]
