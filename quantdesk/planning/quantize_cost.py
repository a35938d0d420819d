"""Before quantizing: will the job fit in RAM and on disk, and how long will it take?

The RAM model is measured, not folklore (``bench/quantize_memory.py``, table in the README).
llama.cpp's quantizer maps the input and works one tensor at a time, unmapping each when done;
its anonymous memory is the child's base, plus an f32 conversion buffer as large as the largest
non-F32 tensor, plus an output buffer as large as the largest quantized tensor — both buffers
only grow, so both peaks stay allocated. The mapped input pages count in RSS too, but they are
reclaimable file cache (about one tensor's worth at a time), so only anonymous memory has to
fit in the RAM that is available.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import configured_threads
from quantdesk.base.units import fmt_bytes
from quantdesk.gguf.model_info import ModelInfo
from quantdesk.gguf.quant_presets import (
    QuantPreset,
    estimate_output_size,
    is_full_precision,
    is_quantizable,
    target_types,
)
from quantdesk.hardware.machine import Hardware

MiB = 1 << 20
# Measured on this machine (Python 3.11, llama-cpp-python 0.3.36): the child's anonymous memory
# after importing llama_cpp is 20.8 MiB and its file-backed libraries ~26 MiB.
CHILD_BASE_ANON = 24 * MiB
CHILD_BASE_FILE = 28 * MiB
# Anonymous memory seen above base + buffers was at most 9 MiB (a 128k-row tensor); keep more.
RAM_SLACK_MIN, RAM_SLACK_FRACTION = 32 * MiB, 0.05
# What must stay free for the OS and the app while the child runs.
RAM_RESERVE = 256 * MiB
DISK_MARGIN_MIN, DISK_MARGIN_FRACTION = 256 * MiB, 0.02
# llama.cpp processes a tensor in slabs of at most this many bytes (LLAMA_QUANT_MAX_BUF_SIZE).
MAX_BUF_SIZE = 8 << 30
# Quantizer throughput per target tensor type, in weights per second on 2 threads, measured by
# bench/quantize_rates.py on this machine (2-core AVX2 VM, F16 input; F32 input is a bit faster).
# Other thread counts scale linearly — an assumption, stated in the README.
RATES_THREADS = 2
RATES = {
    "Q8_0": 144e6, "Q6_K": 41e6, "Q5_K": 25e6, "Q4_K": 20e6, "Q3_K": 88e6, "Q2_K": 25e6,
    "Q4_0": 389e6, "Q4_1": 372e6, "Q5_0": 314e6, "Q5_1": 298e6, "IQ4_XS": 6e6, "IQ4_NL": 6e6,
    "BF16": 186e6, "F16": 186e6, "F32": 186e6,
}
DEFAULT_RATE = 5e6  # an unknown type: a little slower than the slowest measured
CHILD_START_SECONDS = 0.5


@dataclass(frozen=True)
class Preflight:
    """The pre-flight verdict; ``problems`` empty means the job may start."""

    input: Path
    output: Path
    preset: str
    input_bytes: int
    output_bytes: int  # estimated, an upper bound
    ram_needed: int  # anonymous memory the child will hold at its peak
    ram_peak_rss: int  # the child's predicted peak RSS, mapped input pages included
    ram_available: int
    disk_needed: int
    disk_free: int
    seconds: float
    threads: int
    source: str  # where the RAM/disk figures come from: "this machine" or the hardware spec
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"input": str(self.input), "output": str(self.output), "type": self.preset,
                "input_bytes": self.input_bytes, "output_bytes": self.output_bytes, "ram": self.ram_needed,
                "ram_peak_rss": self.ram_peak_rss, "ram_available": self.ram_available, "disk": self.disk_needed,
                "disk_free": self.disk_free, "seconds": round(self.seconds, 1), "threads": self.threads,
                "source": self.source, "ok": self.ok, "problems": self.problems}


@dataclass(frozen=True)
class JobCost:
    ram_needed: int
    ram_peak_rss: int
    output_bytes: int
    disk_needed: int
    seconds: float


def _row_bytes(t: GGMLQuantizationType, n: int) -> int:
    block, size = GGML_QUANT_SIZES[t]
    return n // block * size


def job_cost(model: ModelInfo, preset: QuantPreset, threads: int, cores: int | None = None) -> JobCost:
    """RAM, disk and time to quantize ``model`` to ``preset``; works from the header alone.

    Time scales with the threads that get a core of their own (``cores``: physical cores).
    """
    types = target_types(model, preset)
    f32_buf = work_buf = largest_src = 0
    seconds = CHILD_START_SECONDS
    scale = RATES_THREADS / max(1, min(threads, cores or threads))
    for t in model.tensors:
        largest_src = max(largest_src, t.n_bytes)
        src, dst = GGMLQuantizationType(t.type_id), types[t.name]
        if not is_quantizable(t) or src == dst:
            continue
        n_per_row = t.shape[0]
        rows = t.n_elements // n_per_row
        convert = src != GGMLQuantizationType.F32
        per_row = _row_bytes(src, n_per_row) + _row_bytes(dst, n_per_row) + (4 * n_per_row if convert else 0)
        slab = max(1, min(rows, MAX_BUF_SIZE // max(1, per_row)))
        if convert:
            f32_buf = max(f32_buf, 4 * slab * n_per_row)
        work_buf = max(work_buf, slab * _row_bytes(dst, n_per_row))
        seconds += t.n_elements / RATES.get(dst.name, DEFAULT_RATE) * scale
    anon = CHILD_BASE_ANON + f32_buf + work_buf
    anon += max(RAM_SLACK_MIN, int(RAM_SLACK_FRACTION * anon))
    out = estimate_output_size(model, preset)
    disk = out + max(DISK_MARGIN_MIN, int(DISK_MARGIN_FRACTION * out))
    return JobCost(anon, anon + CHILD_BASE_FILE + largest_src, out, disk, seconds)


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or default_threads()


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_input(model: ModelInfo, name: str) -> None:
    """Refuse an input the quantizer should not start from (already quantized)."""
    if not is_full_precision(model):
        kinds = sorted({t.type_name for t in model.tensors if is_quantizable(t)} - {"F32", "F16", "BF16"})
        raise QuantDeskError(f"{name} is already quantized ({model.quant or ', '.join(kinds)}); quantize from an "
                             "F16, BF16 or F32 file — requantizing loses quality twice")


def preflight(model: ModelInfo, preset: QuantPreset, output: Path, *, threads: int | None = None,
              hardware: Hardware | None = None, ram_available: int | None = None,
              disk_free: int | None = None) -> Preflight:
    """Check the job against the RAM and disk there are; nothing is written.

    ``hardware`` (a ``--hardware`` spec or preset) supplies RAM, disk and cores instead of this
    machine's; ``ram_available``/``disk_free`` override both (tests, the GUI's "what if").
    ``threads`` None: the Settings page's choice, else every CPU this process may use.
    """
    check_input(model, Path(model.files[0]).name)
    threads = threads or configured_threads() or (hardware.cpu.threads if hardware else default_threads())
    cores = hardware.cpu.cores if hardware else physical_cores()
    cost = job_cost(model, preset, threads, cores)
    if hardware is not None:
        ram = hardware.ram_available if ram_available is None else ram_available
        disk = hardware.disk_free if disk_free is None else disk_free
        source = hardware.source
    else:
        import psutil

        ram = psutil.virtual_memory().available if ram_available is None else ram_available
        disk = shutil.disk_usage(_existing_ancestor(output.parent)).free if disk_free is None else disk_free
        source = "this machine"
    problems = []
    if cost.ram_needed + RAM_RESERVE > ram:
        problems.append(f"not enough memory: quantizing {Path(model.files[0]).name} to {preset.name} needs "
                        f"{fmt_bytes(cost.ram_needed)} of RAM (+{fmt_bytes(RAM_RESERVE)} kept free) but only "
                        f"{fmt_bytes(ram)} is available ({source}); close other programs or quantize on a "
                        "machine with more RAM")
    if cost.disk_needed > disk:
        problems.append(f"not enough disk space in {_existing_ancestor(output.parent)}: the {preset.name} file needs "
                        f"about {fmt_bytes(cost.disk_needed)} (margin included) but only {fmt_bytes(disk)} is "
                        "free; free some space or choose another output folder with -o")
    return Preflight(input=Path(model.files[0]), output=output, preset=preset.name,
                     input_bytes=model.file_size, output_bytes=cost.output_bytes, ram_needed=cost.ram_needed,
                     ram_peak_rss=cost.ram_peak_rss, ram_available=ram, disk_needed=cost.disk_needed,
                     disk_free=disk, seconds=cost.seconds, threads=threads, source=source, problems=problems)
