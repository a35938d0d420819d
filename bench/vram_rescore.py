"""Re-score the H100 VRAM/RAM measurements against the current memory model, without a GPU.

Reads the rows ``bench/vram_accuracy.py`` recorded on the device (docs/vram-h100-rows.jsonl),
rebuilds each model's header (same shape and quant preset) and prints predicted vs measured VRAM
(the process's own NVML figure) and RAM (VmRSS while generating). Use it after changing
``quantdesk/planning/memory_model.py``.

    python bench/vram_rescore.py [rows.jsonl]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401 - sets sys.path

from quantdesk.gguf.model_info import load_model_info
from quantdesk.planning.fit import settings_for
from quantdesk.planning.memory_model import placement_memory
from tests.support.gguf_factory import MEDIUM, WIDE, ModelShape, write_header_only

BIG = ModelShape(n_vocab=32000, n_embd=2048, n_layer=16, n_head=16, n_head_kv=8, n_ff=5632, n_ctx_train=8192, name="big")
SHAPES = {"medium": MEDIUM, "wide": WIDE, "big": BIG}


def main() -> int:
    rows_file = Path(sys.argv[1]) if len(sys.argv) > 1 else _common.ROOT / "docs" / "vram-h100-rows.jsonl"
    tmp, infos, errors_vram, errors_ram = Path(tempfile.mkdtemp()), {}, [], []
    print(f"{'row':28} {'pred VRAM':>9} {'meas':>7} {'err':>7} {'pred RAM':>9} {'meas':>7} {'err':>7}  (MiB)")
    for line in rows_file.read_text().splitlines():
        r = json.loads(line)
        if "shape" not in r or r.get("proc_vram") is None:
            continue
        key = (r["shape"], r["quant"])
        if key not in infos:
            infos[key] = load_model_info(write_header_only(tmp / f"{key[0]}-{key[1]}.gguf", SHAPES[key[0]], key[1]))
        info = infos[key]
        m = placement_memory(info, settings_for(info, r["ctx"], "f16", repack=False), r["k"], "nvidia")
        vram, ram = r["proc_vram"], r["status"]["VmRSS"]
        errors_vram.append((m.vram - vram) / vram)
        errors_ram.append((m.ram - ram) / ram)
        print(f"{r['key']:28} {m.vram / 2**20:9.0f} {vram / 2**20:7.0f} {errors_vram[-1]:+7.1%} "
              f"{m.ram / 2**20:9.0f} {ram / 2**20:7.0f} {errors_ram[-1]:+7.1%}")
    n = len(errors_vram)
    print(f"# {n} rows; VRAM max |error| {max(map(abs, errors_vram)):.1%}, mean {sum(map(abs, errors_vram)) / n:.1%}; "
          f"RAM max {max(map(abs, errors_ram)):.1%}, mean {sum(map(abs, errors_ram)) / n:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
