"""The verbs of the CLI: argument definitions and human-readable output over the core."""

from __future__ import annotations

import argparse
from typing import Callable

from quantdesk.base.units import fmt_bytes, fmt_rate
from quantdesk.cli.output import context_length, emit_json
from quantdesk.hardware.detect import resolve_hardware
from quantdesk.hardware.machine import Hardware


def cmd_hw(args: argparse.Namespace) -> int:
    hw = resolve_hardware(args.hardware)
    if args.json:
        emit_json(hw.to_json())
        return 0
    print(f"Hardware ({hw.source})")
    for g in hw.gpus:
        extra = ", ".join(x for x in (
            f"driver {g.driver}" if g.driver else "", f"CUDA {g.cuda_version}" if g.cuda_version else "",
            f"compute {g.compute_capability}" if g.compute_capability else "") if x)
        used_by = f", llama.cpp: {g.backend_device} ({g.backend})" if g.backend else ""
        print(f"  GPU {g.index}: {g.name} [{g.vendor}] {fmt_bytes(g.vram_free)} free of {fmt_bytes(g.vram_total)}"
              f", {fmt_rate(g.bandwidth)}{' (' + extra + ')' if extra else ''}{used_by}  source: {g.source}")
    if not hw.gpus:
        print("  GPU: none found")
    print(f"  RAM: {fmt_bytes(hw.ram_available)} available of {fmt_bytes(hw.ram_total)}, swap {fmt_bytes(hw.swap_total)}"
          + (f", ~{fmt_rate(hw.ram_bandwidth)}" if hw.ram_bandwidth else ""))
    print(f"  CPU: {hw.cpu.name}, {hw.cpu.cores} cores / {hw.cpu.threads} threads, {' '.join(hw.cpu.features) or 'no SIMD extensions found'}")
    print(f"  Disk free for models: {fmt_bytes(hw.disk_free)}")
    print(f"  llama.cpp GPU offload: {'yes' if hw.gpu_offload_supported else 'no (CPU-only build)'}")
    for note in hw.notes:
        print(f"  note: {note}")
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    """Exit 0 when llama.cpp generated (and, where a GPU was found, on it), 1 otherwise."""
    from quantdesk.chat.selftest import run_selftest
    from quantdesk.hardware.detect import detect_amd, detect_apple, detect_intel, detect_nvidia

    seen = [g.name for g in detect_nvidia() + detect_amd() + detect_intel() + detect_apple()]
    result = run_selftest(gpus_seen=seen, echo_log=args.debug)
    if args.json:
        emit_json(result.to_json())
        return 0 if result.ok else 1
    print(result.summary)
    print(f"  CPU backend: {result.cpu_backend}; generated {result.tokens} tokens"
          + (f" at {result.cpu_tokens_per_s:.1f} tok/s" if result.cpu_tokens_per_s else ""))
    for dev in result.devices:
        print(f"  device {dev['name']}: {dev['description']} ({dev['backend']}, {dev['type']}), "
              f"{fmt_bytes(dev['memory_free'])} free of {fmt_bytes(dev['memory_total'])}")
    if result.gpu_backend:
        print(f"  GPU: {result.gpu_layers} of {result.total_layers} layers offloaded"
              + (f", {result.gpu_tokens_per_s:.1f} tok/s" if result.gpu_tokens_per_s else ""))
        for name, size in result.gpu_buffers.items():
            print(f"    {name} buffer: {fmt_bytes(size)}")
    if result.problem:
        print(f"  problem: {result.problem}")
    return 0 if result.ok else 1


def cmd_plan(args: argparse.Namespace) -> int:
    from quantdesk.planning.plan import plan_named

    hw = resolve_hardware(args.hardware)
    result = plan_named(args.model, hw, ctx=args.ctx, kv_type=args.kv_type)
    if args.json:
        emit_json(result.to_json())
        return 0
    print_plan(result, hw)
    return 0


def print_plan(result, hw: Hardware) -> None:
    print(f"Plan for {result.model} at {result.ctx} tokens of context, KV cache {result.kv_type} ({hw.source})")
    w = max([30] + [len(o.summary()) for o in result.options])
    header = f"  {'':1} {'quant':8} {'size':>9} {'verdict':{w}} {'VRAM':>9} {'RAM':>9} {'KV':>9} {'tok/s':>6} {'KLD':>7}"
    print(header)
    for o in result.options:
        tps = f"{o.tokens_per_s:.1f}" if o.tokens_per_s is not None else "-"
        kld = f"{o.quality_loss:.4f}" if o.quality_loss is not None else "-"
        print(f"  {'*' if o.recommended else ' '} {o.quant:8} {fmt_bytes(o.size):>9} {o.summary():{w}} "
              f"{fmt_bytes(o.vram):>9} {fmt_bytes(o.ram):>9} {fmt_bytes(o.memory.kv_cache):>9} {tps:>6} {kld:>7}")
    rec = result.recommended
    print(f"  {rec.reason}" if rec else "  Nothing here runs on this machine.")
    if rec and rec.max_ctx_full_gpu:
        print(f"  Largest context fully on the GPU for {rec.quant}: {rec.max_ctx_full_gpu} tokens.")
    for note in result.notes:
        print(f"  note: {note}")


def register_all(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("hw", help="show this machine's GPUs, RAM, CPU and disk")
    add_common(p)
    p.set_defaults(func=cmd_hw)

    p = sub.add_parser("selftest", help="generate with a tiny built-in model on the CPU and the GPU: is llama.cpp working here?")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", help="show tracebacks and llama.cpp's log")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("plan", help="which quant fits, with how many GPU layers, how fast")
    p.add_argument("model", help="a local .gguf file or a hub repo id (owner/name)")
    p.add_argument("--ctx", type=context_length, default=None, help="context length (default 4096, or the model's own if smaller)")
    p.add_argument("--kv-type", default="f16", choices=["f16", "q8_0", "q4_0"], help="KV cache type")
    add_common(p)
    p.set_defaults(func=cmd_plan)

    from quantdesk.cli.catalog import register as register_catalog
    from quantdesk.cli.chat import register as register_chat
    from quantdesk.cli.library import register as register_library
    from quantdesk.cli.quantize import register as register_quantize

    register_catalog(sub, add_common)
    register_library(sub, add_common)
    register_chat(sub, add_common)
    register_quantize(sub, add_common)

    # `quantdesk gui ...` is handed to the app's own parser (see cli.main); listed here for --help
    sub.add_parser("gui", help="start the desktop app; --screenshot PATH [--page NAME] renders a page offscreen")
