"""Measure how much memory llama.cpp's quantizer really uses, on our path (the quantize child).

For generated models of different sizes and tensor shapes, quantizes through ``quantize()`` and
prints the child's peak RSS (VmHWM) and peak anonymous memory (sampled every 20 ms) against the
input size, next to the pre-flight's prediction. The README's "Quantizing: memory" table is this
script's output.

    python bench/quantize_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _common import bench_dir, f16_model, scratch_dir

from quantdesk.gguf.model_info import load_model_info
from quantdesk.gguf.quant_presets import is_quantizable
from quantdesk.quantize.quantizer import QuantizeResult, quantize
from tests.support.gguf_factory import MEDIUM, SMALL, WIDE, ModelShape, write_model

MiB = 1 << 20
# A vocabulary-heavy model (its two 134 M-weight tables dominate) and two deeper ones of 1.1 and 2.6 GiB.
BIGVOCAB = ModelShape(n_vocab=65536, n_embd=2048, n_layer=2, n_head=16, n_head_kv=8, n_ff=5632, name="bigvocab")
BENCH1G = ModelShape(n_vocab=32000, n_embd=2048, n_layer=10, n_head=16, n_head_kv=8, n_ff=5632, name="bench1g")
DEEP3G = ModelShape(n_vocab=32000, n_embd=3072, n_layer=12, n_head=24, n_head_kv=8, n_ff=8192, name="deep3g")


def f32_model(shape: ModelShape) -> Path:
    path = bench_dir() / f"{shape.name}-F32.gguf"
    if not path.exists():
        write_model(path.with_suffix(".tmp"), shape, "F32")
        path.with_suffix(".tmp").rename(path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the models under 1 GiB")
    args = ap.parse_args()
    runs = [(f16_model(SMALL), "Q8_0"), (f16_model(MEDIUM), "Q8_0"), (f16_model(MEDIUM), "Q4_K_M"),
            (f32_model(MEDIUM), "Q8_0"), (f16_model(WIDE), "Q8_0"), (f16_model(WIDE), "Q4_K_M"),
            (f16_model(BIGVOCAB), "Q8_0"), (f16_model(BIGVOCAB), "Q4_K_M")]
    if not args.quick:
        runs += [(f16_model(BENCH1G), "Q8_0"), (f16_model(DEEP3G), "Q8_0"), (f16_model(DEEP3G), "Q4_K_M")]
    os.environ.setdefault("QUANTDESK_HOME", str(scratch_dir("qd-mem-")))
    print("| input | type | input size | largest tensor | peak RSS | RSS / input | peak anon | anon / input "
          "| pre-flight anon | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(dir=bench_dir()) as tmp:
        for src, preset in runs:
            info = load_model_info(src)
            largest = max((t for t in info.tensors if is_quantizable(t)), key=lambda t: t.n_elements)
            out = Path(tmp) / f"{src.stem}-{preset}.gguf"
            *_, result = quantize(src, preset, out, overwrite=True)
            assert isinstance(result, QuantizeResult)
            out.unlink()
            size = info.file_size
            print(f"| {src.name} | {preset} | {size / MiB:,.0f} MiB | {largest.name} {largest.n_elements / 1e6:.0f} M "
                  f"| {result.peak_ram / MiB:,.0f} MiB | {result.peak_ram / size:.2f} | {result.peak_anon / MiB:,.0f} MiB "
                  f"| {result.peak_anon / size:.2f} | {result.preflight.ram_needed / MiB:,.0f} MiB "
                  f"| {result.seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
