"""Which *model* to pick for this machine, not only which quant: the ranking behind
``search --fits`` and the Hardware page's picks from the offline catalog.

The planner already chooses each model's best file here (``Plan.recommended``). Models are then
ordered by what a person asks first: does it run at a usable speed, is it fully on the GPU (the
fast kind of fit; for a mixture of experts, every layer on the GPU with experts in RAM counts), how
capable is it (more parameters — for a mixture of experts, the geometric mean of total and active —
unless its quant had to be crushed to Q2 or Q3_K_S to fit), and only then how little its quant loses against full precision — a 1.5B model
at Q8_0 loses less to quantization than an 8B at Q4_K_M but is still the weaker model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from quantdesk.base.errors import QuantDeskError
from quantdesk.hardware.machine import Hardware
from quantdesk.planning.fit import USABLE_TOKENS_PER_S, PlanOption

FIT_TIER = {"full_gpu": 0, "partial": 1, "cpu_only": 2}
# Mean KL divergence against full precision above which a quant is a last resort: Q3_K_M (0.10)
# still passes, Q3_K_S (0.24) and Q2_K (0.46) do not (resources/quant_quality.json). A bigger
# model squeezed that hard ranks after every smaller one that keeps its quality.
HEAVY_LOSS_KLD = 0.11


def runs_well(option: PlanOption) -> bool:
    """Fully on the GPU, or fast enough to read along with (the planner's usable speed)."""
    return option.verdict == "full_gpu" or (option.tokens_per_s or 0.0) >= USABLE_TOKENS_PER_S


def params_of(option: PlanOption, known: int | None = None) -> int:
    """The model's parameter count: the published one where known, else the header's."""
    return known or (option.model.n_params if option.model is not None else 0)


def capability_params(option: PlanOption, known: int | None = None) -> int:
    """What ranks models by capability: the parameter count, and for a mixture of experts the
    geometric mean of its total and active parameters — the common rule of thumb for the dense
    model it matches (Qwen3-30B-A3B ≈ 10B, gpt-oss-120b ≈ 25B); a heuristic, not a measurement."""
    total = params_of(option, known)
    model = option.model
    if model is None or not model.is_moe or not model.n_params:
        return total
    experts = sum(t.n_elements for t in model.tensors if "_exps" in t.name)
    active = model.n_params - experts * (1 - model.active_expert_share)
    return int((total * active * total / model.n_params) ** 0.5)


def fit_tier(option: PlanOption) -> int:
    """0: the fast kind of fit — fully on the GPU, or (a mixture of experts) every layer on the GPU
    with some routed experts in RAM; 1: a layer split; 2: the CPU alone."""
    if option.verdict == "partial" and option.cpu_moe_layers and option.all_layers_on_gpu:
        return 0
    return FIT_TIER.get(option.verdict, 9)


def pick_key(option: PlanOption | None, downloads: int = 0, params: int | None = None, trust: int = 0) -> tuple:
    """Sort key, best first (see the module docstring); models with nothing that fits go last.
    ``trust`` (0 the model's own organisation, 1 a known quantizer, 2 anyone) decides between
    copies of one model before their quants' loss does."""
    if option is None:
        return (1,)
    loss = estimated_loss(option)
    return (0, not runs_well(option), loss > HEAVY_LOSS_KLD, fit_tier(option),
            -capability_params(option, params), trust, loss, -downloads)


def estimated_loss(option: PlanOption) -> float:
    """The cited KL divergence of the file's quant; for a label without a cited figure (Q4_0, Q5_1,
    a publisher's own variant) the same scale's estimate from its bits per weight."""
    if option.quality_loss is not None:
        return option.quality_loss
    from quantdesk.gguf.quants import quality_rank

    bpw = option.model.bits_per_weight if option.model is not None else 4.5
    return -quality_rank(option.quant, bpw)


def trust_of(publisher: str | None) -> int:
    return {"model author": 0, "known quantizer": 1}.get(publisher or "", 2)


def best_json(option: PlanOption, params: int | None = None) -> dict[str, Any]:
    """The ``best`` object of ``search --fits --json`` rows."""
    return {"file": option.file, "quant": option.quant, "verdict": option.verdict,
            "tokens_per_s": option.tokens_per_s, "quality_loss": option.quality_loss, "size": option.size,
            "params": params_of(option, params) or None, "runs_well": runs_well(option),
            "gpu_layers": option.gpu_layers, "cpu_moe_layers": option.cpu_moe_layers, "summary": option.summary()}


def rank_search_rows(rows: list[dict[str, Any]], hw: Hardware, ctx: int | None = None) -> None:
    """Plan each ``search`` row (hub headers, or the catalog's shape for catalog rows), set its
    ``best`` (or ``error``) and sort the rows best pick first. In place: rows keep their other keys."""
    from quantdesk.planning.plan import plan_named

    picked: dict[int, PlanOption | None] = {}
    for row in rows:
        try:
            rec = plan_named(row["repo"], hw, ctx=ctx, offline=row.get("source") == "catalog").recommended
        except QuantDeskError as exc:
            row["error"] = str(exc)
            rec = None
        picked[id(row)] = rec
        row["best"] = best_json(rec, row.get("params")) if rec is not None else None
    rows.sort(key=lambda r: pick_key(picked[id(r)], int(r.get("downloads") or 0), r.get("params"),
                                     trust_of(r.get("publisher"))))


@dataclass(frozen=True)
class MachinePick:
    repo: str
    base_model: str
    publisher: str | None
    option: PlanOption

    def summary(self) -> str:
        speed = f"~{self.option.tokens_per_s:.0f} tokens/s" if self.option.tokens_per_s else "speed unknown"
        where = {"full_gpu": "fully on the GPU", "partial": f"{self.option.gpu_layers} of "
                 f"{self.option.n_layers + 1} layers on the GPU", "cpu_only": "on the CPU"}.get(self.option.verdict, "")
        if self.option.cpu_moe_layers:
            where = ("every layer on the GPU" if self.option.all_layers_on_gpu else where) + \
                f" with the experts of {self.option.cpu_moe_layers} of {self.option.n_layers} layers in RAM"
        return f"{self.option.quant}, {where}, {speed}"


_QUANT_TAIL = re.compile(r"[-_.](?:i?q\d\w*|f16|bf16|f32)$", re.IGNORECASE)


def model_key(repo: str, base_model: str | None) -> str:
    """One key per model, whoever quantized it: the base model when the catalog names it, else the
    repo name without its ``-GGUF`` and quant suffixes."""
    return (base_model or display_name(repo)).lower()


def display_name(repo: str) -> str:
    """``Llama-3.2-3B-Instruct`` for ``hugging-quants/Llama-3.2-3B-Instruct-Q8_0-GGUF``."""
    name = re.sub(r"-gguf$", "", repo.rsplit("/", 1)[-1], flags=re.IGNORECASE)
    return _QUANT_TAIL.sub("", name)


def machine_picks(hw: Hardware, ctx: int | None = None, limit: int = 3) -> list[MachinePick]:
    """The best models for ``hw`` from the offline catalog (no network: it answers on a first run
    with no connection), one file per model, only those that run well; best first."""
    from quantdesk.catalog.offline import load_catalog
    from quantdesk.hub.client import publisher_kind
    from quantdesk.planning.plan import plan_named

    ranked: list[tuple[tuple, MachinePick]] = []
    for model in load_catalog().models:
        if model.hub_status == "gone":
            continue
        try:
            rec = plan_named(model.repo, hw, ctx=ctx, offline=True, suggest_quantize=False).recommended
        except QuantDeskError:
            continue
        if rec is None or not runs_well(rec):
            continue
        publisher = publisher_kind(model.repo)
        key = (*pick_key(rec, params=model.params, trust=trust_of(publisher)), model.repo.lower())
        ranked.append((key, MachinePick(model.repo, model_key(model.repo, model.base_model), publisher, rec)))
    ranked.sort(key=lambda item: item[0])
    picks: list[MachinePick] = []
    seen: set[str] = set()
    for _, pick in ranked:
        if pick.base_model not in seen:
            seen.add(pick.base_model)
            picks.append(pick)
        if len(picks) == limit:
            break
    return picks
