"""Our quantize job vs a direct in-process ``llama_model_quantize`` call, same input, same run.

On a generated F16 model of 1.1 GiB (cached under bench_dir()), each preset is quantized by
 - ours: ``quantdesk.quantize.quantizer.quantize()`` — child process, per-tensor progress events
   consumed, partial file, header check and move; wall time from the call to the result;
 - direct: ``llama_cpp.llama_model_quantize`` called in a fresh Python process of its own (so the
   two peaks are separable); time of the call alone.
Runs alternate (direct, ours, ours, direct) on a warm page cache; the best of each pair is kept.
Speed ratio = direct seconds / our seconds (1.0: as fast; the target is >= 0.95). Peak memory
is each process's VmHWM. Prints a Markdown table (docs/quantize-bench.md holds one run).

    python bench/quantize.py [--types Q8_0,Q4_K_M] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_dir, f16_model, scratch_dir

from quantdesk.gguf.quant_presets import resolve_preset
from quantdesk.planning.quantize_cost import default_threads
from quantdesk.quantize.quantizer import QuantizeResult, TensorProgress, quantize
from tests.support.gguf_factory import ModelShape

MiB = 1 << 20
BENCH1G = ModelShape(n_vocab=32000, n_embd=2048, n_layer=10, n_head=16, n_head_kv=8, n_ff=5632, name="bench1g")

DIRECT = r"""
import ctypes, json, sys, time
import llama_cpp
quiet = llama_cpp.llama_log_callback(lambda *a: None)
llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
src, out, ftype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.nthread = ftype, threads
t0 = time.perf_counter()
rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(p))
seconds = time.perf_counter() - t0
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"rc": rc, "seconds": seconds, "peak_rss": hwm}))
"""


def direct(src: Path, out: Path, preset: str, threads: int) -> dict:
    done = subprocess.run([sys.executable, "-c", DIRECT, str(src), str(out), str(resolve_preset(preset).ftype),
                           str(threads)], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    out.unlink()
    return result


def ours(src: Path, out: Path, preset: str, threads: int) -> dict:
    t0 = time.perf_counter()
    n_events = 0
    for ev in quantize(src, preset, out, threads=threads, overwrite=True):
        if isinstance(ev, TensorProgress):
            n_events += 1
        elif isinstance(ev, QuantizeResult):
            result = ev
    seconds = time.perf_counter() - t0
    out.unlink()
    return {"seconds": seconds, "peak_rss": result.peak_ram, "events": n_events}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--types", default="Q8_0,Q4_K_M")
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args()
    os.environ.setdefault("QUANTDESK_HOME", str(scratch_dir("qd-bench-")))
    src = f16_model(BENCH1G)
    with src.open("rb") as fh:  # warm the page cache so neither side pays the first read
        while fh.read(64 << 20):
            pass
    size = src.stat().st_size
    print(f"input {src.name}: {size / MiB:,.0f} MiB F16 ({size / 1e9:.2f} GB), {args.threads} threads, "
          f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}")
    print()
    print("| type | direct s | ours s | speed ratio (direct/ours) | direct MB/s | ours MB/s | direct peak RSS "
          "| ours peak RSS | progress events |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        for preset in args.types.split(","):
            out = Path(tmp) / f"out-{preset}.gguf"
            d1 = direct(src, out, preset, args.threads)
            o1 = ours(src, out, preset, args.threads)
            o2 = ours(src, out, preset, args.threads)
            d2 = direct(src, out, preset, args.threads)
            d = min(d1, d2, key=lambda r: r["seconds"])
            o = min(o1, o2, key=lambda r: r["seconds"])
            print(f"| {preset} | {d['seconds']:.2f} | {o['seconds']:.2f} | {d['seconds'] / o['seconds']:.3f} "
                  f"| {size / 1e6 / d['seconds']:.0f} | {size / 1e6 / o['seconds']:.0f} "
                  f"| {d['peak_rss'] / MiB:,.0f} MiB | {o['peak_rss'] / MiB:,.0f} MiB | {o['events']} |", flush=True)
            print(f"<!-- {preset} all runs: direct {d1['seconds']:.2f}/{d2['seconds']:.2f} s, "
                  f"ours {o1['seconds']:.2f}/{o2['seconds']:.2f} s -->", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
