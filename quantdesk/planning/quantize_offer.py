"""The planner's "quantize locally" offer: when a full-precision file is there but no quant runs well.

Each preset the quantizer offers is planned as if it existed (its tensor sizes estimated from the
full-precision header), and the best one is offered when it would run in a better way than the
current recommendation — fully on the GPU instead of split, at a usable speed instead of a slow
one, or at better quality for the same kind of fit — and the quantize job itself fits here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantdesk.base.units import fmt_bytes
from quantdesk.gguf.quant_presets import (
    FULL_PRECISION,
    offered_presets,
    quantized_model_info,
)
from quantdesk.gguf.quants import quality, quality_rank
from quantdesk.hardware.machine import Hardware
from quantdesk.planning.fit import NEAR_FASTEST, USABLE_TOKENS_PER_S, PlanOption, plan_model
from quantdesk.planning.quantize_cost import RAM_RESERVE, job_cost


@dataclass
class QuantizeOption:
    type: str
    source_file: str
    size: int  # estimated output size
    ram: int  # RAM the quantizer needs (anonymous; the mapped input is reclaimable cache)
    disk: int  # output with margin, plus the source's download when it is remote
    seconds: float
    download: int  # bytes of the source still to download (0 for a local file)
    plan: PlanOption
    command: str = ""

    def summary(self) -> str:
        fetch = f"download {Path(self.source_file).name} ({fmt_bytes(self.download)}) and " if self.download else ""
        speed = f" at ~{self.plan.tokens_per_s:.0f} tokens/s" if self.plan.tokens_per_s else ""
        return (f"a better fit is possible: {fetch}quantize locally to {self.type} (about {_duration(self.seconds)}, "
                f"{fmt_bytes(self.ram)} RAM, {fmt_bytes(self.disk)} disk); it would run {self.plan.summary()}{speed}"
                f" — `{self.command}`")

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "source_file": self.source_file, "size": self.size, "ram": self.ram,
                "disk": self.disk, "seconds": round(self.seconds, 1), "download": self.download,
                "verdict": self.plan.verdict, "gpu_layers": self.plan.gpu_layers,
                "tokens_per_s": None if self.plan.tokens_per_s is None else round(self.plan.tokens_per_s, 2),
                "quality_loss": self.plan.quality_loss, "command": self.command, "summary": self.summary()}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def fit_class(o: PlanOption | None) -> int:
    """0 fully on the GPU, 1 split or CPU at a usable speed, 2 runs but slowly, 3 does not fit."""
    if o is None or o.verdict == "no_fit":
        return 3
    if o.verdict == "full_gpu":
        return 0
    return 1 if (o.tokens_per_s or 0) >= USABLE_TOKENS_PER_S else 2


def _comparable(name: str) -> bool:
    """Presets whose quality loss is cited (quant_quality.json) and reachable without an imatrix.

    Legacy types (Q4_0, Q5_1, ...) have no cited figure and a bits-per-weight guess would rank
    them above the K-quants they lose to; IQ4_XS's figure was measured with an imatrix.
    """
    q = quality(name)
    return name not in FULL_PRECISION and q is not None and q.kld is not None and not name.startswith("IQ")


def _rank(o: PlanOption) -> float:
    return quality_rank(o.quant, o.model.bits_per_weight if o.model else 16.0)


def quantize_option(options: list[PlanOption], hw: Hardware, ctx: int | None, kv_type: str,
                    remote: bool, model_ref: str = "MODEL") -> QuantizeOption | None:
    """The best preset to quantize to here, or None when quantizing would not improve the plan."""
    sources = [o for o in options if o.quant.upper() in FULL_PRECISION and o.model is not None]
    if not sources:
        return None
    src = min(sources, key=lambda o: o.size)
    present = {o.quant.upper() for o in options}
    current = next((o for o in options if o.recommended), None)
    download = src.size if remote else 0
    # Where nothing runs at a usable speed the recommendation is the best quality near the fastest
    # option (planning.fit.recommend): an offer that is slower than that is no better fit.
    top = max((o.tokens_per_s or 0 for o in options if o.verdict != "no_fit"), default=0)
    best: tuple[tuple[int, float], QuantizeOption] | None = None
    for preset in offered_presets():
        if not _comparable(preset.name) or preset.name in present:
            continue
        cost = job_cost(src.model, preset, hw.cpu.threads, hw.cpu.cores)
        if cost.ram_needed + RAM_RESERVE > hw.ram_available or cost.disk_needed + download > hw.disk_free:
            continue
        planned = plan_model(quantized_model_info(src.model, preset), hw, ctx, kv_type, file=src.file)
        key = (fit_class(planned), -_rank(planned))
        if fit_class(planned) == 2 and (planned.tokens_per_s or 0) < NEAR_FASTEST * top:
            continue
        if fit_class(planned) < 3 and (best is None or key < best[0]):
            best = (key, QuantizeOption(preset.name, src.file, cost.output_bytes, cost.ram_needed,
                                        cost.disk_needed + download, cost.seconds, download, planned,
                                        f"quantdesk quantize {model_ref} --type {preset.name}"))
    if best is None:
        return None
    if current is not None and (fit_class(current), -_rank(current)) <= best[0]:
        return None
    return best[1]
