"""What Discover decides once a model is planned: which hub file to fetch, whether the library
already has it, and when quantizing locally is the better way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantdesk.base.errors import QuantDeskError
from quantdesk.catalog.refresh import list_and_remember
from quantdesk.gguf.quant_presets import FULL_PRECISION
from quantdesk.hub.client import RepoGGUF
from quantdesk.library.download import final_path
from quantdesk.library.index import Library, LibraryModel
from quantdesk.planning.fit import PlanOption
from quantdesk.planning.plan import Plan
from quantdesk.planning.quantize_offer import fit_class


def download_entry(plan: Plan, option: PlanOption | None = None) -> RepoGGUF:
    """The hub's record (parts, sizes, LFS hashes) of the file to download: ``option``, or the plan's pick."""
    option = option or plan.recommended
    if option is None:
        raise QuantDeskError(f"no file of {plan.model} runs on this machine at {plan.ctx:,} tokens of context",
                             next_step="Try a shorter context, a quantized KV cache or a smaller model.")
    if plan.source == "file":
        raise QuantDeskError(f"{plan.model} is a local file: there is nothing to download")
    entries = list_and_remember(plan.model)
    match = next((e for e in entries if e.first == option.file), None)
    if match is None:
        raise QuantDeskError(f"{option.file} is no longer in {plan.model}",
                             next_step="Plan the repo again to see its current files.")
    return match


def installed(repo: str, entry: RepoGGUF) -> LibraryModel | None:
    """The library's copy of this hub file when it was already downloaded (same path, same hash)."""
    model = Library().find(str(final_path(repo, entry.first)))
    return model if model is not None and model.sha256 == entry.parts[0].sha256 else None


@dataclass(frozen=True)
class QuantizeSuggestion:
    source: str  # what to quantize: the repo id or the local file
    type: str  # the target preset; "" lets the user choose
    why: str


def quantize_suggestion(plan: Plan) -> QuantizeSuggestion | None:
    """Quantizing locally, when the planner found a better fit that way, or when no file runs well
    here but a full-precision one exists to start from."""
    offer = plan.quantize_option
    if offer is not None:
        return QuantizeSuggestion(plan.model, offer.type, offer.summary())
    full = [o for o in plan.options if o.quant.upper() in FULL_PRECISION]
    if full and fit_class(plan.recommended) >= 2:
        return QuantizeSuggestion(plan.model, "", f"no file runs well here, but {Path(full[0].file).name} is full "
                                  "precision: a smaller quant made from it may")
    return None
