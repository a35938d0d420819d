"""Mixture-of-experts placement: what the planner chooses, what llama.cpp allocates, how fast the CPU side runs.

Three tables (each can be run alone):

``--presets``  Qwen3-30B-A3B's real shape (header-only files) on the 8/12/16/24 GB preset cards: the
               chosen placement (layers on the GPU, blocks whose experts stay in RAM) and its predicted
               tokens/s next to the best plain layer split's, as a ratio.
``--vulkan``   generated MoE models (llama and qwen3moe architectures) on Mesa's software Vulkan device
               at several expert counts in RAM: every buffer llama.cpp logs vs the planner's figure.
               Sizes only: the software device says nothing about speed.
``--cpu``      the CPU side on this machine: generated MoE models (Q4_K_M, 32 experts, 2, 4 or 8 used —
               the same file, a different share read per token) generating on the CPU: predicted vs
               measured tokens/s (2 and 8 set the planner's per-block CPU cost; 4 checks it).

    python bench/moe_placement.py [--presets] [--vulkan] [--cpu]     (no flag: all three)

Results: docs/moe-placement.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _common import bench_dir, quantized_model  # noqa: F401 - sets sys.path

from tests.support import gguf_factory as factory

GiB, MiB = 2**30, 2**20
# For --cpu: big enough that the weights, not the bookkeeping, set the speed (~0.5 GB at Q4_K_M).
MOE_CPU = factory.ModelShape(n_vocab=8192, n_embd=1024, n_layer=8, n_head=8, n_head_kv=4, n_ff=1024,
                             n_ctx_train=4096, name="moe-cpu-u2", n_expert=32, n_expert_used=2, key_length=128,
                             arch="qwen3moe", n_ff_exp=1024)


def presets() -> None:
    from quantdesk.gguf.model_info import load_model_info
    from quantdesk.hardware.machine import load_hardware_spec
    from quantdesk.planning.fit import Budget, best_gpu_layers, best_placement, settings_for, tokens_per_second

    print("# Qwen3-30B-A3B-shaped (48 blocks, 128 experts, 8 used), 4096 tokens, f16 KV: chosen placement vs "
          "the best plain layer split")
    print(f"{'card':12} {'quant':7} {'size':>7} {'chosen':24} {'VRAM':>6} {'RAM':>6} {'tok/s':>6} | "
          f"{'plain split':12} {'tok/s':>6} | {'ratio':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for quant in ("Q4_K_M", "Q8_0", "Q2_K"):
            info = load_model_info(factory.write_header_only(Path(tmp) / f"a3b-{quant}.gguf",
                                                             factory.QWEN3_30B_A3B, quant))
            for preset in ("nvidia-8gb", "nvidia-12gb", "nvidia-16gb", "nvidia-24gb"):
                hw = load_hardware_spec(preset)
                budget = Budget.of(hw)
                s = settings_for(info, 4096, "f16", repack=False, n_threads=hw.cpu.cores)
                chosen = best_placement(info, s, budget)
                plain = best_gpu_layers(info, s, budget)
                plain_tps = tokens_per_second(info, plain[1], budget, plain[0], 0) if plain else None
                if chosen is None:
                    print(f"{preset:12} {quant:7} {info.file_size / GiB:6.1f}G {'does not fit':24}")
                    continue
                where = (f"{chosen.gpu_layers}/49 GPU, {chosen.cpu_moe_layers} exp. RAM" if chosen.cpu_moe_layers
                         else f"{chosen.gpu_layers}/49 GPU")
                m = chosen.memory
                plain_text = f"{plain[0]}/49 GPU" if plain else "none fits"
                ratio = f"{chosen.tokens_per_s / plain_tps:5.2f}" if plain_tps else "  -"
                print(f"{preset:12} {quant:7} {info.file_size / GiB:6.1f}G {where:24} {m.vram / GiB:5.1f}G "
                      f"{m.ram / GiB:5.1f}G {chosen.tokens_per_s:6.1f} | {plain_text:12} "
                      f"{plain_tps or 0:6.1f} | {ratio}", flush=True)


def vulkan() -> None:
    from tests.support.software_gpu import software_gpu_env

    os.environ.update(software_gpu_env(1))
    from quantdesk.chat.load import start_model
    from quantdesk.gguf.model_info import load_model_info
    from quantdesk.hardware.detect import detect_hardware
    from quantdesk.planning.fit import normalized_cpu_moe, settings_for
    from quantdesk.planning.memory_model import placement_memory

    hw = detect_hardware()
    print(f"# buffers on {hw.usable_gpus[0].name}, 1024 tokens, f16 KV, flash attention: predicted vs logged (MiB)")
    print(f"{'model':15} {'GPU layers':>10} {'exp. RAM':>8} {'buffer':17} {'pred':>8} {'logged':>8} {'error':>7}")
    cases = [(factory.MOE_SMALL, "all", n) for n in (0, 1, 2, 4)]
    cases += [(factory.QWEN3MOE_SMALL, "all", n) for n in (0, 3, 6)] + [(factory.QWEN3MOE_SMALL, 5, 4)]
    with tempfile.TemporaryDirectory() as tmp:
        for shape, layers, n in cases:
            path = quantized_model(shape, "F16")
            info = load_model_info(path)
            k = info.n_layer + 1 if layers == "all" else layers
            engine, _ = start_model(path, hw, ctx=1024, gpu_layers=k, cpu_moe=n, log_path=Path(tmp) / "engine.log")
            try:
                logged = engine.report.buffers
            finally:
                engine.stop()
            p = placement_memory(info, settings_for(info, 1024, "f16", repack=False), k, "vulkan", None,
                                 normalized_cpu_moe(info, k, n))
            for key, value in (("Vulkan0 model", p.weights_gpu), ("Vulkan0 KV", p.kv_gpu),
                               ("Vulkan0 compute", p.compute_gpu), ("CPU_Mapped model", p.weights_cpu)):
                measured = logged.get(key, 0)
                error = f"{(value - measured) / measured:+.1%}" if measured else "n/a"
                print(f"{shape.name:15} {k:>10} {n:>8} {key:17} {value / MiB:8.2f} {measured / MiB:8.2f} {error:>7}",
                      flush=True)


def cpu(tokens: int) -> None:
    from quantdesk.chat.load import start_model
    from quantdesk.chat.sampling import Sampling
    from quantdesk.hardware.detect import detect_hardware
    from quantdesk.planning.plan import plan_local

    for key in ("GGML_VK_VISIBLE_DEVICES",):
        os.environ.pop(key, None)  # the CPU alone
    hw = detect_hardware()
    print(f"# CPU side on {hw.cpu.name}, {hw.cpu.cores} cores: generated MoE (8 blocks x 32 experts of 1024, "
          f"Q4_K_M), {tokens} tokens after a short prompt")
    print(f"{'model':12} {'used':>4} {'file':>7} {'read/token':>10} {'pred tok/s':>10} {'meas tok/s':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for used in (2, 4, 8):
            shape = factory.scaled(MOE_CPU, n_expert_used=used, name=f"moe-cpu-u{used}")
            path = quantized_model(shape, "Q4_K_M")
            option = plan_local(path, hw, ctx=1024).options[0]
            info = option.model
            read = sum(t.n_bytes * (info.active_expert_share if "_exps" in t.name else 1)
                       for t in info.tensors if t.name != "token_embd.weight")
            engine, _ = start_model(path, hw, ctx=1024, log_path=Path(tmp) / "engine.log")
            try:
                finished = None
                for _ in range(2):  # the first run warms the page cache and the thread pool
                    finished = list(engine.complete("once upon a time", Sampling(max_tokens=tokens, seed=1,
                                                                                 ignore_eos=True)))[-1]
            finally:
                engine.stop()
            ratio = (option.tokens_per_s or 0) / finished.tokens_per_s
            print(f"{shape.name:12} {used:>4} {path.stat().st_size / MiB:6.0f}M {read / MiB:9.1f}M "
                  f"{option.tokens_per_s or 0:10.1f} {finished.tokens_per_s:10.1f} {ratio:6.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", action="store_true")
    parser.add_argument("--vulkan", action="store_true")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--tokens", type=int, default=96, help="tokens generated per --cpu run")
    args = parser.parse_args()
    every = not (args.presets or args.vulkan or args.cpu)
    if args.presets or every:
        presets()
    if args.vulkan or every:
        vulkan()
    if args.cpu or every:
        cpu(args.tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
