"""CPU generation speed per quant type: how fast llama.cpp's matrix-vector work goes on this CPU.

A few cores are often compute-bound, not memory-bound, and the compute cost per weight differs by
type (Q8_0 and Q4_0 dot products are cheap, K-quants and the 2–3-bit types cost more per weight).
For one generated model (the ``wide`` shape, 2048×5632 matrices) quantized to each type, a fresh
llama.cpp child generates 64 tokens after a short prompt on this machine's physical cores; the
table gives tokens/s and the weights each core multiplies per second. ``--write`` stores the rates
in ``resources/cpu_quant_rates.json``, which the planner's CPU speed estimate uses.

    python bench/cpu_quant_speed.py [--write] [--quants Q8_0,Q4_K_M]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import FTYPES, ROOT, quantized_model  # noqa: F401 - sets sys.path

from quantdesk.gguf.model_info import load_model_info
from quantdesk.hardware.detect import detect_hardware
from tests.support.gguf_factory import WIDE
from tests.support.llama_probe import measure

QUANTS = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
# the ggml type of each preset's bulk tensors: the rate is stored under it
BULK_TYPE = {"F16": "F16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q4_K_M": "Q4_K", "Q4_0": "Q4_0",
             "Q3_K_M": "Q3_K", "Q2_K": "Q2_K"}
FTYPES.setdefault("Q3_K_M", 12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quants", default=",".join(QUANTS))
    parser.add_argument("--gen", type=int, default=192)
    parser.add_argument("--repeat", type=int, default=2, help="runs per type; the median speed is kept")
    parser.add_argument("--write", action="store_true", help="store the rates for the planner")
    args = parser.parse_args()
    hw = detect_hardware()
    cores = hw.cpu.cores
    print(f"# CPU generation speed by quant type: {hw.cpu.name}, {cores} cores, threads = cores, "
          f"wide shape, prompt then {args.gen} tokens")
    print(f"{'quant':7} {'file MiB':>9} {'gen tok/s':>10} {'GB/s read':>10} {'Mweights/s/core':>16}")
    rates = {}
    for quant in args.quants.split(","):
        path = quantized_model(WIDE, quant)
        info = load_model_info(path)
        weights = sum(t.n_elements for t in info.tensors if t.name != "token_embd.weight")
        bytes_read = sum(t.n_bytes for t in info.tensors if t.name != "token_embd.weight")
        t0 = time.perf_counter()
        speeds = sorted(measure(path, {"n_ctx": 512, "n_threads": cores, "n_batch": 512, "flash_attn": True},
                                n_gen=args.gen)["gen_tps"] for _ in range(args.repeat))
        tok_s = speeds[len(speeds) // 2]
        rate = weights * tok_s / cores
        rates[BULK_TYPE.get(quant, quant)] = round(rate)
        print(f"{quant:7} {Path(path).stat().st_size / 2**20:>9.1f} {tok_s:>10.1f} {bytes_read * tok_s / 1e9:>10.2f} "
              f"{rate / 1e6:>16.0f}   ({time.perf_counter() - t0:.0f} s)")
    if args.write:
        out = ROOT / "resources" / "cpu_quant_rates.json"
        out.write_text(json.dumps({
            "what": "weights one CPU core multiplies per second in llama.cpp's token generation, by the type of "
                    "the model's bulk tensors (bench/cpu_quant_speed.py)",
            "measured_on": f"{hw.cpu.name}, {cores} cores, {time.strftime('%Y-%m-%d')}",
            "rates": rates}, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
