"""Planner accuracy: predicted vs measured peak resident memory of llama.cpp on this CPU.

For generated models of several shapes x quant types x context sizes, the planner predicts the
process's peak RSS under its own ``load_args``; a fresh child process then loads the model with
exactly those arguments, fills the whole context with a prompt (so the KV cache and the compute
buffer are really used), generates a few tokens, and reports VmHWM. Prints the table and the
error of each row. Target: every row within 10%.

    python bench/plan_accuracy.py [--quick]
"""

from __future__ import annotations

import argparse
import time

from _common import quantized_model  # noqa: F401 - sets sys.path

from quantdesk.hardware.detect import detect_hardware
from quantdesk.planning.plan import plan_local
from tests.support.gguf_factory import MEDIUM, SMALL, WIDE
from tests.support.llama_probe import measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 shapes x 2 quants x 2 contexts")
    args = parser.parse_args()
    shapes = [SMALL, MEDIUM] if args.quick else [SMALL, MEDIUM, WIDE]
    quants = ["Q8_0", "Q4_K_M"] if args.quick else ["Q8_0", "Q6_K", "Q4_K_M"]
    contexts = [1024, 4096]
    hw = detect_hardware()
    print(f"# plan accuracy on {hw.cpu.name}, {hw.cpu.cores} cores, llama.cpp CPU build")
    print(f"{'model':8} {'quant':7} {'ctx':>5} {'file MiB':>9} {'pred MiB':>9} {'meas MiB':>9} {'error':>7} "
          f"{'pred tok/s':>10} {'meas tok/s':>10}")
    errors = []
    for shape in shapes:
        for quant in quants:
            path = quantized_model(shape, quant)
            for ctx in contexts:
                option = plan_local(path, hw, ctx=ctx).options[0]
                t0 = time.perf_counter()
                result = measure(path, option.load_args)
                measured = result["status"]["VmHWM"]
                err = (option.ram - measured) / measured
                errors.append(abs(err))
                print(f"{shape.name:8} {quant:7} {ctx:>5} {path.stat().st_size / 2**20:>9.1f} "
                      f"{option.ram / 2**20:>9.1f} {measured / 2**20:>9.1f} {err:>+7.1%} "
                      f"{option.tokens_per_s or 0:>10.1f} {result['gen_tps']:>10.1f}"
                      f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"# rows: {len(errors)}, max |error| {max(errors):.1%}, mean |error| {sum(errors) / len(errors):.1%}, "
          f"within 10%: {sum(e <= 0.10 for e in errors)}/{len(errors)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
