"""Vulkan buffers: the planner's GPU compute, KV and weight figures against what llama.cpp logs.

Runs generated F16 models on a Vulkan device — Mesa's software device (lavapipe) unless
``--real`` keeps the machine's own — at several contexts, micro-batches, flash attention on and
off, all layers and partial offload, and prints predicted vs logged ``Vulkan0`` buffers with the
error of each row. Sizes only: the software device says nothing about speed. Results:
docs/vulkan-memory.md.

    python bench/vulkan_memory.py [--real]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

from _common import quantized_model  # noqa: F401 - sets sys.path

from tests.support import gguf_factory as factory
from tests.support.software_gpu import software_gpu_env

BIG_VOCAB = factory.scaled(factory.SMALL, n_vocab=32768, name="bigvocab")
S, M, W, B = factory.SMALL, factory.MEDIUM, factory.WIDE, BIG_VOCAB
# (shape, weights, context, flash attention, micro-batch, offloaded layers or "all")
CASES = [
    (S, "F16", 512, True, 512, "all"), (S, "F16", 4096, True, 512, "all"), (S, "F16", 1024, True, 256, "all"),
    (M, "F16", 1024, True, 512, "all"), (M, "F16", 4096, True, 512, "all"), (M, "F16", 1024, False, 512, "all"),
    (M, "F16", 2048, False, 512, "all"), (W, "F16", 1024, True, 512, "all"), (B, "F16", 1024, True, 512, "all"),
    (B, "F16", 1024, False, 512, "all"), (M, "Q4_K_M", 1024, True, 512, "all"),
    (M, "F16", 1024, True, 512, 4), (M, "F16", 2048, True, 512, 4), (M, "F16", 1024, True, 256, 4),
    (M, "F16", 1024, True, 512, 1), (S, "F16", 1024, True, 512, 3), (W, "F16", 1024, True, 512, 4),
    (B, "F16", 1024, True, 512, 3), (M, "Q4_K_M", 1024, True, 512, 4), (W, "Q8_0", 1024, True, 512, 4),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="use the machine's Vulkan devices, not lavapipe")
    args = parser.parse_args()
    if not args.real:
        os.environ.update(software_gpu_env(1))
    from quantdesk.chat.engine import Engine
    from quantdesk.chat.load import plan_load
    from quantdesk.gguf.model_info import load_model_info
    from quantdesk.hardware.detect import detect_hardware
    from quantdesk.planning.fit import settings_for
    from quantdesk.planning.memory_model import MiB, placement_memory

    hw = detect_hardware()
    gpu = hw.usable_gpus[0]
    print(f"# Vulkan buffers on {gpu.name}; predicted vs logged (MiB)")
    print(f"{'model':9} {'weights':7} {'ctx':>5} {'fa':>3} {'ub':>4} {'layers':>6} {'part':8} {'pred':>8} {'logged':>8} {'error':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape, quant, ctx, fa, ub, layers in CASES:
            path = quantized_model(shape, quant)
            info = load_model_info(path)
            k = shape.n_layer + 1 if layers == "all" else layers
            planned = plan_load(path, hw, ctx, "f16", k, None)
            engine = Engine(path, dataclasses.replace(planned.settings, flash_attn=fa, n_ubatch=ub,
                                                      n_batch=max(ub, 512)), log_path=Path(tmp) / "engine.log")
            engine.start()
            try:
                logged = engine.report.buffers
            finally:
                engine.stop()
            settings = dataclasses.replace(settings_for(info, ctx, "f16", repack=False), flash_attn=fa, n_ubatch=ub)
            predicted = placement_memory(info, settings, k, "vulkan")
            rows = (("model", predicted.weights_gpu), ("KV", predicted.kv_gpu), ("compute", predicted.compute_gpu))
            for part, value in rows:
                measured = logged.get(f"{gpu.backend_device} {part}", 0)
                error = f"{(value - measured) / measured:+.1%}" if measured else "n/a"
                print(f"{shape.name:9} {quant:7} {ctx:5} {'on' if fa else 'off':>3} {ub:4} {k:6} {part:8} "
                      f"{value / MiB:8.2f} {measured / MiB:8.2f} {error:>7}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
