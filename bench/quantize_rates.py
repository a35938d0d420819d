"""Calibrate the quantize time estimate: weights per second per target tensor type, on this machine.

Quantizes a generated F16 model (MEDIUM by default) to presets that together cover every tensor
type QuantDesk offers, through the real job (child process, progress events), and times each
tensor from its "started" to its "finished" event. Prints the table and the ``RATES`` dict that
``quantdesk/planning/quantize_cost.py`` holds.

    python bench/quantize_rates.py [--shape medium|wide] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import f16_model, scratch_dir

from quantdesk.planning.quantize_cost import default_threads
from quantdesk.quantize.quantizer import TensorProgress, quantize
from tests.support.gguf_factory import MEDIUM, WIDE

PRESETS = ["Q8_0", "Q6_K", "Q5_K_S", "Q4_K_S", "Q3_K_S", "Q2_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_XS",
           "IQ4_NL", "BF16"]
MIN_ELEMENTS = 1 << 20  # smaller tensors are dominated by per-tensor overhead


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=["medium", "wide"], default="medium")
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args()
    src = f16_model({"medium": MEDIUM, "wide": WIDE}[args.shape])
    os.environ.setdefault("QUANTDESK_HOME", str(scratch_dir("qd-rates-")))
    elements: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = defaultdict(float)
    n_elems = {name: _elements(shape) for name, shape in _shapes(src).items()}
    print(f"{src.name}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            started: dict[str, float] = {}
            for ev in quantize(src, preset, Path(tmp) / f"out-{preset}.gguf", threads=args.threads, overwrite=True):
                if not isinstance(ev, TensorProgress):
                    continue
                now = time.perf_counter()
                if not ev.finished:
                    started[ev.name] = now
                elif ev.dst_type and n_elems[ev.name] >= MIN_ELEMENTS:
                    key = ev.dst_type.upper()
                    elements[key] += n_elems[ev.name]
                    seconds[key] += now - started[ev.name]
            (Path(tmp) / f"out-{preset}.gguf").unlink()
    print(f"{'type':8} {'Mweights/s':>11} {'MiB/s of F16 in':>16}")
    for key in sorted(elements, key=lambda k: -elements[k] / seconds[k]):
        rate = elements[key] / seconds[key]
        print(f"{key:8} {rate / 1e6:11.1f} {rate * 2 / 2**20:16.1f}")
    print("RATES = {" + ", ".join(f'"{k}": {elements[k] / seconds[k] / 1e6:.0f}e6' for k in sorted(elements)) + "}")
    return 0


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from quantdesk.gguf.reader import read_header

    return {t.name: t.shape for t in read_header(path).tensors}


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    raise SystemExit(main())
