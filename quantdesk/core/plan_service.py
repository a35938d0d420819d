"""``plan MODEL``: a local GGUF, or every quant of a hub repo planned from remote headers."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.core.errors import QuantDeskError
from quantdesk.core.hardware import Hardware
from quantdesk.core.model_info import load_model_info
from quantdesk.core.planner import PlanOption, default_ctx, plan_model, recommend
from quantdesk.core.quantize_option import QuantizeOption, quantize_option

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Plan:
    model: str
    ctx: int
    kv_type: str
    hardware: Hardware
    options: list[PlanOption]
    notes: list[str] = field(default_factory=list)
    quantize_option: QuantizeOption | None = None
    source: str = "file"  # "file" (a local GGUF), "hub" (remote headers) or "catalog" (the offline snapshot)
    input_notes: list[str] = field(default_factory=list)  # notes about the inputs, which a re-plan keeps

    @property
    def recommended(self) -> PlanOption | None:
        return next((o for o in self.options if o.recommended), None)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "ctx": self.ctx, "kv_type": self.kv_type,
                "hardware": self.hardware.to_json(), "options": [o.to_json() for o in self.options],
                "notes": self.notes,
                "quantize_option": self.quantize_option.to_json() if self.quantize_option else None}


def _finish(name: str, options: list[PlanOption], hw: Hardware, ctx: int | None, kv_type: str,
            notes: list[str], source: str = "file", suggest_quantize: bool = True) -> Plan:
    input_notes = list(notes)
    options.sort(key=lambda o: -o.size)
    effective = options[0].load_args["n_ctx"] if options else (ctx or 4096)
    recommend(options, effective)
    trained = max((o.model.n_ctx_train for o in options if o.model and o.model.n_ctx_train), default=0)
    if trained and effective > trained:
        notes.append(f"{effective} tokens is more than the {trained} this model was trained for; "
                     "expect worse answers past that point")
    if hw.gpus and not hw.gpu_offload_supported:
        notes.append("GPU found but this build is CPU-only: plans are for the CPU")
    # (the offer asks the installed llama.cpp which presets it can make: skipped when only ranking)
    offer = quantize_option(options, hw, effective, kv_type, source == "hub", name) if suggest_quantize else None
    if offer is not None:
        notes.append(offer.summary())
    return Plan(name, effective, kv_type, hw, options, notes, offer, source, input_notes)


def plan_local(path: str | Path, hw: Hardware, ctx: int | None = None, kv_type: str = "f16") -> Plan:
    info = load_model_info(path)
    return _finish(str(path), [plan_model(info, hw, ctx, kv_type)], hw, ctx, kv_type, [])


def plan_repo(repo_id: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16",
              revision: str | None = None) -> Plan:
    from quantdesk.core.hub import list_repo_ggufs
    from quantdesk.core.remote_gguf import remote_model_info

    entries = list_repo_ggufs(repo_id, revision)
    if not entries:
        raise QuantDeskError(f"{repo_id} has no GGUF files")
    notes: list[str] = []

    def one(entry):
        try:
            info = remote_model_info(repo_id, entry, revision)
        except QuantDeskError as exc:
            notes.append(f"{entry.name}: skipped ({exc})")
            return None
        return plan_model(info, hw, ctx, kv_type, file=entry.first)

    with ThreadPoolExecutor(max_workers=4) as pool:
        options = [o for o in pool.map(one, entries) if o is not None]
    if not options:
        raise QuantDeskError(f"no GGUF file of {repo_id} could be read: " + "; ".join(notes))
    return _finish(repo_id, options, hw, ctx, kv_type, notes, source="hub")


def replan(previous: Plan, hw: Hardware, ctx: int | None = None, kv_type: str = "f16") -> Plan:
    """The same files at another context, KV-cache type or machine, from the headers already read.

    No file or network access: a context slider can re-plan a remote repo live.
    """
    options = [plan_model(o.model, hw, ctx, kv_type, file=o.file) for o in previous.options if o.model is not None]
    return _finish(previous.model, options, hw, ctx, kv_type, list(previous.input_notes), previous.source)


def plan(model: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16") -> Plan:
    path = Path(model).expanduser()
    if path.exists() or model.lower().endswith(".gguf"):
        return plan_local(path, hw, ctx, kv_type)
    if REPO_ID_RE.match(model):
        return plan_repo(model, hw, ctx, kv_type)
    raise QuantDeskError(f"'{model}' is neither a .gguf file nor a hub repo id (owner/name)")


__all__ = ["Plan", "plan", "plan_local", "plan_repo", "replan", "default_ctx"]
