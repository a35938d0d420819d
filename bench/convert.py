"""Checkpoint conversion: throughput (MB/s) and peak resident memory, next to the quantizer's.

A generated Llama-shaped checkpoint of about 1 GB (BF16, 2 shards; or F32 with ``--f32``) is
converted to GGUF in a fresh child process (its VmHWM read at the end), then the result is quantized
to Q4_K_M by QuantDesk's quantizer (its own child; peak RSS as the quantizer reports it). One run
each; the page cache is warm for both (the checkpoint was just written, the GGUF just converted).

    python bench/convert.py [--f32] [--layers 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT  # noqa: F401 - sets sys.path

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from quantdesk.convert.convert import convert_checkpoint
t0 = time.perf_counter()
result = convert_checkpoint(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - t0
status = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")}
print(json.dumps({"seconds": seconds, "size": result.size, "peak": status["VmHWM"]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--f32", action="store_true", help="an F32 checkpoint (converted to F16) instead of BF16")
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args()
    from tests.support import checkpoint_factory as cf

    from quantdesk.quantize.quantizer import QuantizeResult, quantize

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bench-llama"
        t0 = time.perf_counter()
        cfg, _ = cf.write_llama_checkpoint(folder, shards=2, bf16=not args.f32, hidden_size=2048,
                                           intermediate_size=5632, num_hidden_layers=args.layers,
                                           num_attention_heads=16, num_key_value_heads=8, vocab_size=32000)
        written = time.perf_counter() - t0
        shards = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        largest = max(32000 * 2048, 5632 * 2048)
        print(f"# checkpoint: {args.layers} layers, hidden 2048, vocab 32000, {'F32' if args.f32 else 'BF16'}, "
              f"{shards / 1e6:.0f} MB in 2 shards (written in {written:.0f} s); largest tensor "
              f"{largest * (4 if args.f32 else 2) / 1e6:.0f} MB")
        out = Path(tmp) / "bench-llama-F16.gguf"
        run = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(out), str(ROOT)],
                             capture_output=True, text=True, timeout=3600)
        if run.returncode != 0:
            print(run.stderr[-2000:], file=sys.stderr)
            return 1
        conv = json.loads(run.stdout.strip().splitlines()[-1])
        result = None
        for event in quantize(out, "Q4_K_M", Path(tmp) / "bench-llama-Q4_K_M.gguf"):
            if isinstance(event, QuantizeResult):
                result = event
        assert result is not None
        print(f"{'step':22} {'in MB':>8} {'out MB':>8} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12} {'peak/in':>8}")
        print(f"{'convert (ours)':22} {shards / 1e6:8.0f} {conv['size'] / 1e6:8.0f} {conv['seconds']:8.1f} "
              f"{shards / 1e6 / conv['seconds']:7.0f} {conv['peak'] / 1e6:12.0f} {conv['peak'] / shards:8.2f}")
        print(f"{'quantize Q4_K_M':22} {conv['size'] / 1e6:8.0f} {result.size / 1e6:8.0f} {result.seconds:8.1f} "
              f"{conv['size'] / 1e6 / result.seconds:7.0f} {result.peak_ram / 1e6:12.0f} "
              f"{result.peak_ram / conv['size']:8.2f}")
        print(f"# ratio, conversion vs quantization time: {conv['seconds'] / result.seconds:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
