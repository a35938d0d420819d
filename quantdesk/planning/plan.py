"""Planning a model by whatever name the user gave: a local GGUF (or a library model), every quant
of a hub repo from its remote headers, or — when the hub cannot be reached — the offline catalog's
published shape. :func:`plan_named` is the one entry the CLI, Discover, the picks and Chat use."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.base.errors import QuantDeskError
from quantdesk.catalog.offline import load_catalog, model_info_for
from quantdesk.catalog.refresh import list_and_remember
from quantdesk.gguf.model_info import load_model_info
from quantdesk.hardware.machine import Hardware
from quantdesk.hub.errors import HubUnreachable
from quantdesk.hub.remote_header import remote_model_info
from quantdesk.library.index import Library
from quantdesk.planning.fit import PlanOption, default_ctx, plan_model, recommend
from quantdesk.planning.quantize_offer import QuantizeOption, quantize_option

class NoGGUFFiles(QuantDeskError):
    """The repo holds no GGUF file (it may hold a Hugging Face checkpoint to quantize instead)."""

    def __init__(self, repo_id: str) -> None:
        super().__init__(f"{repo_id} has no GGUF files")
        self.repo_id = repo_id


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


def finish_plan(name: str, options: list[PlanOption], hw: Hardware, ctx: int | None, kv_type: str,
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
    repacked = [o for o in options if o.memory and o.memory.repack_cpu > 0.1 * o.size and o.verdict != "no_fit"]
    if repacked:
        o = max(repacked, key=lambda o: o.memory.repack_cpu)
        notes.append(f"{', '.join(sorted({r.quant for r in repacked}))} need more RAM here than their size "
                     f"suggests: on this x86 CPU llama.cpp keeps a repacked copy of Q4_0/Q4_K/IQ4_NL weights beside "
                     f"the file for faster matrix work (+{o.memory.repack_cpu / 2**30:.1f} GiB for {o.quant})")
    hybrid = [o for o in options if o.cpu_moe_layers and o.verdict != "no_fit"]
    if hybrid and hybrid[0].model is not None:
        m = hybrid[0].model
        notes.append(f"mixture of experts: a token uses {m.n_expert_used} of {m.n_expert} routed experts per layer, "
                     "so the experts that do not fit the GPU stay in RAM (llama.cpp's --n-cpu-moe) while attention "
                     "and the KV cache stay on the GPU; `chat --cpu-moe N` overrides the count")
    # (the offer asks the installed llama.cpp which presets it can make: skipped when only ranking)
    offer = quantize_option(options, hw, effective, kv_type, source == "hub", name) if suggest_quantize else None
    if offer is not None:
        notes.append(offer.summary())
    return Plan(name, effective, kv_type, hw, options, notes, offer, source, input_notes)


def plan_local(path: str | Path, hw: Hardware, ctx: int | None = None, kv_type: str = "f16") -> Plan:
    info = load_model_info(path)
    return finish_plan(str(path), [plan_model(info, hw, ctx, kv_type)], hw, ctx, kv_type, [])


def plan_repo(repo_id: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16",
              revision: str | None = None, suggest_quantize: bool = True) -> Plan:
    entries = list_and_remember(repo_id, revision)
    if not entries:
        raise NoGGUFFiles(repo_id)
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
    return finish_plan(repo_id, options, hw, ctx, kv_type, notes, source="hub", suggest_quantize=suggest_quantize)


def replan(previous: Plan, hw: Hardware, ctx: int | None = None, kv_type: str = "f16") -> Plan:
    """The same files at another context, KV-cache type or machine, from the headers already read.

    No file or network access: a context slider can re-plan a remote repo live.
    """
    options = [plan_model(o.model, hw, ctx, kv_type, file=o.file) for o in previous.options if o.model is not None]
    return finish_plan(previous.model, options, hw, ctx, kv_type, list(previous.input_notes), previous.source)


def kind_of(text: str) -> str:
    """What the user typed: "file" (a local GGUF), "repo" (owner/name) or "search" (anything else)."""
    text = text.strip()
    if text.lower().endswith(".gguf") or (text and Path(text).expanduser().is_file()):
        return "file"
    return "repo" if REPO_ID_RE.match(text) else "search"


def plan_named(model: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16", offline: bool = False,
               suggest_quantize: bool = True) -> Plan:
    """Plan ``model``: a local file, a library model's name, or a hub repo from its remote headers —
    from the catalog's published shape when the hub cannot be reached (or ``offline``) and the
    catalog knows the repo. The notes say when the catalog answered."""
    ref = model.strip()
    path = Path(ref).expanduser()
    if ref and path.is_file():
        return plan_local(path, hw, ctx, kv_type)
    found = Library().find(ref) if ref and not REPO_ID_RE.match(ref) else None  # library names have no "/"
    if found is not None:
        return plan_local(found.path, hw, ctx, kv_type)
    kind = kind_of(ref)
    if kind == "file":
        return plan_local(path, hw, ctx, kv_type)  # says the file is missing, in its words
    if kind != "repo":
        raise QuantDeskError(f"'{ref}' is neither a .gguf file nor a hub repo id (owner/name), nor a model in the "
                             "library")
    if not offline:
        try:
            return plan_repo(ref, hw, ctx, kv_type, suggest_quantize=suggest_quantize)
        except HubUnreachable:
            if load_catalog().find(ref) is None:
                raise
    return plan_catalog_repo(ref, hw, ctx, kv_type, suggest_quantize=suggest_quantize)


def plan_catalog_repo(repo: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16",
                      suggest_quantize: bool = True) -> Plan:
    """The planner's options for a catalog repo's files, offline (``suggest_quantize=False``: without
    the quantize-locally offer, which loads llama.cpp to list its presets)."""
    model = load_catalog().find(repo)
    if model is None:
        raise QuantDeskError(f"{repo} is not in the offline catalog")
    options = [plan_model(model_info_for(model, f), hw, ctx, kv_type, file=f.path) for f in model.files]
    notes = [f"offline: planned from the {load_catalog().origin()} using "
             "the model's published shape; connect to the hub for exact headers"]
    if model.hub_status == "gone":
        notes.append(f"the hub no longer lists {repo} (seen at the last refresh)")
    if any(f.size is None for f in model.files):
        notes.append("sizes marked ~ are estimated from the parameter count; the catalog source did not list them")
    return finish_plan(repo, options, hw, ctx, kv_type, notes, source="catalog", suggest_quantize=suggest_quantize)


__all__ = ["NoGGUFFiles", "Plan", "plan_named", "plan_local", "plan_repo", "plan_catalog_repo", "replan", "default_ctx", "kind_of"]
