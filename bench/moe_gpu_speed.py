"""MoE speed on a real GPU: layer split vs experts in RAM at several N, predicted vs measured tokens/s.

Prepared for a session lent a GPU (the ``device`` tool); here it runs at a small shape on Mesa's
software device to prove the script works (``--shape small``: the figures mean nothing there).
The model is Qwen3-30B-A3B's real shape written header-only (the data is a sparse hole: zero
weights, read and multiplied like any others, so speed is real and no 17 GB has to be generated).
Each placement runs in a fresh child: plain ``llama_cpp.Llama`` with the engine's own expert
override, a 32-token prompt, then ``--tokens`` single-token decodes timed. The planner's prediction
for the same forced placement comes from this machine's detected hardware. The per-hop cost the
planner assumes (fit.GPU_CPU_HOP_S) is then solved from the hybrid rows: what is left of the
measured time per token after the predicted reads, per GPU<->CPU hop.

    python bench/moe_gpu_speed.py [--shape a3b|small] [--quant Q4_K_M] [--tokens 64] [--jsonl rows.jsonl]

Zero weights route every token to the same experts (all router scores tie), so the CPU re-reads the
same 8 experts per block each token instead of varying ones: the bytes read per token are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT  # noqa: F401 - sets sys.path

from tests.support import gguf_factory as factory

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
from quantdesk.hardware.ggml_devices import load_backends
load_backends()
path, args, n_gen = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
moe = int(args.pop("cpu_moe_layers", 0) or 0)
if moe:
    from quantdesk.chat.expert_override import keep_experts_in_ram
    keep_experts_in_ram(moe)
import llama_cpp
t0 = time.perf_counter()
llm = llama_cpp.Llama(path, verbose=False, **args)
load_s = time.perf_counter() - t0
prompt = [llm.token_bos()] + [300 + i for i in range(31)]
llm.eval(prompt)
token = 400
llm.eval([token])  # the first decode pays one-time costs (graph, pools): not timed
t0 = time.perf_counter()
for i in range(n_gen):
    llm.eval([500 + i % 100])
gen_s = time.perf_counter() - t0
print(json.dumps({"load_s": load_s, "gen_tps": n_gen / gen_s}), flush=True)
"""

SMALL = factory.scaled(factory.QWEN3MOE_SMALL, name="qwen3moe-small-shaped")


def run_child(path: Path, args: dict, tokens: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(args), str(tokens), str(ROOT)],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["a3b", "small"], default="a3b")
    parser.add_argument("--quant", default="Q4_K_M")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--jsonl", help="also write one JSON row per placement here")
    parser.add_argument("--software-gpu", action="store_true",
                        help="use Mesa's software Vulkan device (with flash attention off: MoE graphs with it crash "
                             "inside Mesa, docs/moe-placement.md)")
    args = parser.parse_args()
    if args.software_gpu:
        from tests.support.software_gpu import software_gpu_env

        os.environ.update(software_gpu_env(1))
    from quantdesk.gguf.model_info import load_model_info
    from quantdesk.hardware.detect import detect_hardware
    from quantdesk.planning.fit import GPU_CPU_HOP_S, Budget, load_args, settings_for, tokens_per_second
    from quantdesk.planning.memory_model import placement_memory

    hw = detect_hardware()
    if not hw.usable_gpus:
        print("no usable GPU here: this benchmark needs one (see --software-gpu)", file=sys.stderr)
        return 1
    budget = Budget.of(hw)
    shape = factory.QWEN3_30B_A3B if args.shape == "a3b" else SMALL
    n = shape.n_layer
    placements = [(n + 1, 0), (n + 1, n // 6), (n + 1, n // 3), (n + 1, n // 2), (n + 1, 2 * n // 3), (n + 1, n),
                  (3 * n // 4 + 1, 0), (n // 2 + 1, 0)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = factory.write_header_only(Path(tmp) / f"{shape.name}-{args.quant}.gguf", shape, args.quant)
        info = load_model_info(path)
        s = settings_for(info, args.ctx, "f16", repack=False, n_threads=hw.cpu.cores)
        gpu = hw.usable_gpus[0]
        print(f"# {shape.name} {args.quant} ({path.stat().st_size / 2**30:.1f} GiB) on {gpu.name} "
              f"({(gpu.bandwidth or 0) / 1e9:.0f} GB/s) + {hw.cpu.name} ({hw.cpu.cores} cores, "
              f"{(hw.ram_bandwidth or 0) / 1e9:.0f} GB/s RAM), {args.ctx} tokens, {args.tokens} tokens timed")
        print(f"{'GPU layers':>10} {'exp. RAM':>8} {'hops':>5} {'pred tok/s':>10} {'meas tok/s':>10} {'ratio':>6} "
              f"{'hop µs':>7}")
        for k, moe in placements:
            m = placement_memory(info, s, k, budget.gpu_runtime, budget.process_ram, moe)
            predicted = tokens_per_second(info, m, budget, k, moe)
            first_gpu = n - (k - 1)
            hops = 2 * sum(1 for layer in info.moe_layers() if first_gpu <= layer < moe)
            la = load_args(s, k, moe)
            if args.software_gpu:
                la["flash_attn"] = False
            result = run_child(path, la, args.tokens)
            measured = result.get("gen_tps")
            hop_us = None
            if measured and hops:  # what the measured time leaves per hop once the reads are paid
                reads = 1 / predicted - hops * GPU_CPU_HOP_S
                hop_us = (1 / measured - reads) / hops * 1e6
            ratio = f"{predicted / measured:6.2f}" if measured else "     -"
            print(f"{k:>10} {moe:>8} {hops:>5} {predicted:10.1f} "
                  f"{measured if measured else float('nan'):10.1f} {ratio} "
                  f"{'' if hop_us is None else f'{hop_us:7.0f}'}  {result.get('error', '')}", flush=True)
            rows.append({"gpu_layers": k, "cpu_moe_layers": moe, "hops": hops, "predicted_tps": predicted,
                         "vram": m.vram, "ram": m.ram, **result, "hop_us": hop_us})
    if args.jsonl:
        with open(args.jsonl, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
