"""Local quantization as a job: pre-flight, llama.cpp's quantizer in a child, typed progress.

``quantize()`` is a generator (napari-style): it yields a ``Preflight``, a ``Started``, one
``TensorProgress`` as each tensor starts and another as it finishes, and last a
``QuantizeResult``; a ``threading.Event`` cancels it. The child writes ``OUT.partial`` next to
the output and the file is moved into place only once the child is done and its header reads
back whole. Cancel, an error, a crash of the child or the caller leaving the generator kills the
child's whole process group and removes the partial file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from quantdesk.base.child_process import (
    death_reason,
    kill_tree,
    signal_name,
    spawn_module,
)
from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import models_dir
from quantdesk.base.units import fmt_bytes
from quantdesk.gguf.model_info import ModelInfo, load_model_info
from quantdesk.gguf.quant_presets import QuantPreset, resolve_preset
from quantdesk.gguf.quants import quant_from_filename
from quantdesk.gguf.reader import read_header
from quantdesk.hardware.detect import resolve_hardware
from quantdesk.hardware.machine import Hardware
from quantdesk.planning.quantize_cost import Preflight, preflight

PARTIAL_SUFFIX = ".partial"


class QuantizeCancelled(QuantDeskError):
    """The user cancelled; the partial output is gone."""


@dataclass(frozen=True)
class Started:
    pid: int
    threads: int


@dataclass(frozen=True)
class TensorProgress:
    index: int  # 1-based, as llama.cpp counts
    total: int
    name: str
    src_type: str
    dst_type: str | None  # None: copied unchanged (norms, or already the target type)
    finished: bool
    bytes_in: int  # this tensor's size in the input
    bytes_out: int  # its size in the output (0 until finished)
    done_bytes: int  # input bytes of all finished tensors
    total_bytes: int
    elapsed: float
    eta: float | None


@dataclass(frozen=True)
class QuantizeResult:
    input: Path
    output: Path
    preset: str
    size: int
    seconds: float
    peak_ram: int  # the child's peak RSS (mapped input pages included)
    peak_anon: int  # its peak anonymous memory, sampled
    preflight: Preflight

    def to_json(self) -> dict:
        return {"output": str(self.output), "size": self.size, "seconds": round(self.seconds, 3),
                "peak_ram": self.peak_ram, "peak_anon": self.peak_anon, "type": self.preset, "input": str(self.input)}


QuantizeEvent = Preflight | Started | TensorProgress | QuantizeResult


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + PARTIAL_SUFFIX)


def default_output(model: ModelInfo, preset: QuantPreset) -> Path:
    """``<models>/quantized/<name>-<TYPE>.gguf``, the input's precision label swapped for the type."""
    stem = re.sub(r"(-\d{5}-of-\d{5})?\.gguf$", "", Path(model.files[0]).name, flags=re.IGNORECASE)
    label = quant_from_filename(model.files[0])
    i = stem.upper().rfind(label) if label else -1
    stem = stem[:i] + preset.name + stem[i + len(label):] if label and i >= 0 else f"{stem}-{preset.name}"
    return models_dir() / "quantized" / f"{stem}.gguf"


def _hardware(hardware: Hardware | None) -> Hardware | None:
    """A simulated machine: the one given, or $QUANTDESK_HARDWARE's; None means measure this one."""
    if hardware is None and os.environ.get("QUANTDESK_HARDWARE"):
        return resolve_hardware()
    return hardware


def prepare(input_path: str | Path, preset_name: str, output: str | Path | None = None, *,
            threads: int | None = None, hardware: Hardware | None = None, ram_available: int | None = None,
            disk_free: int | None = None, overwrite: bool = False) -> tuple[ModelInfo, QuantPreset, Preflight]:
    """Everything that can be checked before the child starts; raises for a bad input or type."""
    preset = resolve_preset(preset_name)
    model = load_model_info(input_path)  # a missing, truncated or non-GGUF file raises here
    out = output_path(model, preset, output)
    if any(Path(f).absolute() == out for f in model.files):
        raise QuantDeskError("the output would overwrite the input; choose another -o")
    if out.exists() and not overwrite:
        raise QuantDeskError(f"{out} already exists", "Choose another output file (-o), or replace it (--force; on "
                             "the Quantize page, “Replace the output file”).")
    check = preflight(model, preset, out, threads=threads, hardware=_hardware(hardware),
                      ram_available=ram_available, disk_free=disk_free)
    return model, preset, check


def output_path(model: ModelInfo, preset: QuantPreset, output: str | Path | None) -> Path:
    out = Path(output).expanduser().absolute() if output else default_output(model, preset)
    if out.suffix.lower() != ".gguf":
        raise QuantDeskError(f"the output must be a .gguf file, not {out.name}")
    return out


def preflight_download(model: ModelInfo, preset_name: str, output: str | Path | None, download_bytes: int, *,
                       threads: int | None = None, hardware: Hardware | None = None) -> Preflight:
    """Pre-flight from a remote header, before the full-precision file is downloaded at all; the
    download counts against the free disk too."""
    preset = resolve_preset(preset_name)
    check = preflight(model, preset, output_path(model, preset, output), threads=threads,
                      hardware=_hardware(hardware))
    if check.disk_needed <= check.disk_free < check.disk_needed + download_bytes:
        check = dataclasses.replace(check, problems=[*check.problems, (
            f"not enough disk space: downloading {Path(model.files[0]).name} ({fmt_bytes(download_bytes)}) and "
            f"quantizing it to {preset.name} needs about {fmt_bytes(check.disk_needed + download_bytes)} but only "
            f"{fmt_bytes(check.disk_free)} is free")])
    return check


def precheck_download(model: ModelInfo, preset_name: str, output: str | Path | None, download_bytes: int, *,
                      threads: int | None = None, hardware: Hardware | None = None) -> Preflight:
    """``preflight_download`` that raises when the job cannot run."""
    check = preflight_download(model, preset_name, output, download_bytes, threads=threads, hardware=hardware)
    if not check.ok:
        raise QuantDeskError(check.reason)
    return check


def quantize(input_path: str | Path, preset_name: str, output: str | Path | None = None, *,
             threads: int | None = None, cancel: threading.Event | None = None,
             hardware: Hardware | None = None, ram_available: int | None = None, disk_free: int | None = None,
             overwrite: bool = False) -> Iterator[QuantizeEvent]:
    """Quantize ``input_path`` to ``preset_name``; yields events, the last one a ``QuantizeResult``."""
    t0 = time.monotonic()
    # The child loads llama.cpp while the pre-flight runs, then waits for its job on stdin.
    proc = spawn_module("quantdesk.quantize.quantizer_child", None)
    try:
        model, preset, check = prepare(input_path, preset_name, output, threads=threads, hardware=hardware,
                                       ram_available=ram_available, disk_free=disk_free, overwrite=overwrite)
        yield check
        if not check.ok:
            raise QuantDeskError(check.reason)
        yield from _run(proc, model, preset, check, cancel, t0)
    finally:
        kill_tree(proc)


def _pump(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _drain(stream: IO[str], tail: deque) -> None:
    for line in stream:
        if line.strip():
            tail.append(line.rstrip())


def _send_job(proc: subprocess.Popen, job: dict) -> None:
    try:
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.close()
    except OSError:  # the child is already dead: its exit status and stderr will say why
        pass


def _run(proc: subprocess.Popen, model: ModelInfo, preset: QuantPreset, check: Preflight,
         cancel: threading.Event | None, t0: float) -> Iterator[QuantizeEvent]:
    out, partial = check.output, partial_path(check.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)  # a leftover of a crashed run: ours to remove
    sizes = {t.name: t.n_bytes for t in model.tensors}
    total_bytes = sum(sizes.values())
    _send_job(proc, {"input": model.files[0], "output": str(partial), "ftype": preset.ftype,
                     "threads": check.threads})
    lines: queue.Queue[str | None] = queue.Queue()
    tail: deque[str] = deque(maxlen=20)
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True).start()
    done_event: dict | None = None
    error_event: dict | None = None
    checking = False  # the child is loading the input to see that llama.cpp can use it
    last: TensorProgress | None = None
    done_bytes = 0
    success = False
    try:
        while True:
            if cancel is not None and cancel.is_set():
                kill_tree(proc)
                raise QuantizeCancelled(f"quantizing {check.input.name} was cancelled; the partial output was removed")
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                ev = json.loads(line)
            except ValueError:
                tail.append(line.rstrip())
                continue
            kind = ev.get("event")
            if kind == "checking":
                checking = True
            elif kind == "started":
                checking = False
                yield Started(int(ev["pid"]), int(ev["threads"]))
            elif kind == "tensor":
                last = _progress(ev, sizes, done_bytes, total_bytes, time.monotonic() - t0)
                done_bytes = last.done_bytes
                yield last
            elif kind == "done":  # the output is complete and closed; the child's exit is not awaited
                done_event = ev
                break
            elif kind == "error":
                error_event = ev
        if error_event is not None and error_event.get("unloadable"):
            raise QuantDeskError(f"{check.input.name} cannot be quantized: {error_event['message']}; the result "
                                 "would not load either", "Download the model again or pick another source file.")
        if error_event is not None:
            raise QuantDeskError(f"llama.cpp could not quantize {check.input.name}: {error_event['message']}")
        if done_event is None and checking:
            rc = proc.wait()
            detail = next((line for line in reversed(tail)
                           if any(w in line.lower() for w in ("error", "assert", "failed", "what()"))), "")
            raise QuantDeskError(f"{check.input.name} cannot be quantized: llama.cpp cannot read it (loading it "
                                 f"{death_reason(rc)}{f': {detail.strip()[-300:]}' if detail else ''}), so the "
                                 "result would not load either", "Download the model again or pick another source file.")
        if done_event is None:
            raise QuantDeskError(_crash_message(proc.wait(), check, last, tail))
        _check_output(partial, check)
        os.replace(partial, out)
        success = True
        yield QuantizeResult(input=check.input, output=out, preset=preset.name, size=out.stat().st_size,
                             seconds=time.monotonic() - t0, peak_ram=int(done_event["peak_rss"]),
                             peak_anon=int(done_event["peak_anon"]), preflight=check)
    finally:
        kill_tree(proc)
        if not success:
            partial.unlink(missing_ok=True)


def _progress(ev: dict, sizes: dict[str, int], done_bytes: int, total_bytes: int, elapsed: float) -> TensorProgress:
    size_in = sizes.get(ev["name"], int(ev.get("mib_in", 0) * (1 << 20)))
    finished = bool(ev.get("done"))
    if finished:
        done_bytes += size_in
    frac = done_bytes / total_bytes if total_bytes else 0.0
    eta = elapsed * (1 - frac) / frac if frac > 0.02 else None
    return TensorProgress(index=int(ev["i"]), total=int(ev["n"]), name=ev["name"], src_type=ev["src"],
                          dst_type=ev.get("dst"), finished=finished, bytes_in=size_in,
                          bytes_out=int(ev.get("mib_out", 0) * (1 << 20)) if finished else 0,
                          done_bytes=done_bytes, total_bytes=total_bytes, elapsed=elapsed, eta=eta)


def _crash_message(rc: int, check: Preflight, last: TensorProgress | None, tail: deque) -> str:
    where = f" at tensor {last.index} of {last.total} ({last.name})" if last else ""
    detail = next((line for line in reversed(tail) if line.strip()), "")
    said = f" (its last words: {detail[-300:]})" if detail and signal_name(rc) != "SIGKILL" else ""
    return (f"the quantizer process for {check.input.name} {death_reason(rc)}{where}{said}; "
            "the partial output was removed")


def _check_output(partial: Path, check: Preflight) -> None:
    """The child said done: make sure the file it left is a whole GGUF before it goes into place."""
    if not partial.is_file():
        raise QuantDeskError(f"the quantizer finished but left no output for {check.input.name}")
    header = read_header(partial)  # raises if a tensor runs past the end of the file
    if not header.tensors:
        raise QuantDeskError(f"the quantizer wrote an empty model for {check.input.name}")
