"""Finding a model to run: search with the offline fallback, plan whatever the user typed, and
pick the file to fetch — the logic behind the Discover page and the ``search``/``files`` verbs.

The hub is the source whenever it answers; when it does not, the bundled catalog stands in and
every result says so. Downloads always come from the hub, never from the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantdesk.core.errors import QuantDeskError
from quantdesk.core.hardware import Hardware
from quantdesk.core.hub import HubUnreachable, RepoGGUF, RepoSummary, list_repo_ggufs, publisher_kind, \
    search_gguf_repos
from quantdesk.core.library import Library, LibraryModel
from quantdesk.core.plan_service import REPO_ID_RE, Plan, plan_local, plan_repo
from quantdesk.core.planner import PlanOption
from quantdesk.core.quant_presets import FULL_PRECISION
from quantdesk.core.quantize_option import fit_class


@dataclass(frozen=True)
class SearchResults:
    text: str
    rows: list[RepoSummary]
    source: str  # "hub" or "catalog"
    label: str  # which, in words: "Hugging Face hub" or "Bundled catalog (offline, snapshot …)"
    reason: str | None = None  # why the catalog answered: "offline mode" or the hub's error


CATALOG_ALL = 10_000


def catalog_label() -> str:
    from quantdesk.core.catalog import load_catalog

    cat = load_catalog()
    refreshed = ""
    if cat.refreshed_repos:
        when = f" on {cat.refreshed_at[:10]}" if cat.refreshed_at else ""
        refreshed = f", {cat.refreshed_repos} of {len(cat.models)} repos refreshed from the hub{when}"
    return f"Bundled catalog (offline, snapshot {cat.snapshot}{refreshed})"


def catalog_rows(text: str, limit: int) -> list[RepoSummary]:
    from quantdesk.core.catalog import load_catalog

    return [RepoSummary(m.repo, 0, 0, None, publisher_kind(m.repo), False, m.params)
            for m in load_catalog().search(text)[:limit]]


def search(text: str, sort: str = "downloads", limit: int = 30, offline: bool = False) -> SearchResults:
    """GGUF repos matching ``text`` on the hub; the bundled catalog's when the hub cannot be reached."""
    reason = "offline mode"
    if not offline:
        try:
            return SearchResults(text, search_gguf_repos(text, sort=sort, limit=limit), "hub", "Hugging Face hub")
        except HubUnreachable as exc:
            reason = str(exc)
    # the whole catalog's matches (it is local and small): the smallest `limit` would hide the bigger
    # models a large machine should see; callers that want fewer slice
    return SearchResults(text, catalog_rows(text, max(limit, CATALOG_ALL)), "catalog", catalog_label(), reason)


def kind_of(text: str) -> str:
    """What the user typed: "file" (a local GGUF), "repo" (owner/name) or "search" (anything else)."""
    text = text.strip()
    if text.lower().endswith(".gguf") or (text and Path(text).expanduser().is_file()):
        return "file"
    return "repo" if REPO_ID_RE.match(text) else "search"


def plan_ref(ref: str, hw: Hardware, ctx: int | None = None, kv_type: str = "f16", offline: bool = False) -> Plan:
    """Plan a local file, or a repo from its remote headers — from the catalog's published shape
    when the hub cannot be reached (or ``offline``) and the catalog knows the repo."""
    from quantdesk.core.catalog import load_catalog, plan_catalog_repo

    ref = ref.strip()
    kind = kind_of(ref)
    if kind == "file":
        return plan_local(Path(ref).expanduser(), hw, ctx, kv_type)
    if kind != "repo":
        raise QuantDeskError(f"'{ref}' is neither a .gguf file nor a hub repo id (owner/name)",
                             next_step="Search for it by name, or paste the repo id.")
    if not offline:
        try:
            return plan_repo(ref, hw, ctx, kv_type)
        except HubUnreachable:
            if load_catalog().find(ref) is None:
                raise
    return plan_catalog_repo(ref, hw, ctx, kv_type)


def download_entry(plan: Plan, option: PlanOption | None = None) -> RepoGGUF:
    """The hub's record (parts, sizes, LFS hashes) of the file to download: ``option``, or the plan's pick."""
    option = option or plan.recommended
    if option is None:
        raise QuantDeskError(f"no file of {plan.model} runs on this machine at {plan.ctx:,} tokens of context",
                             next_step="Try a shorter context, a quantized KV cache or a smaller model.")
    if plan.source == "file":
        raise QuantDeskError(f"{plan.model} is a local file: there is nothing to download")
    entries = list_repo_ggufs(plan.model)
    match = next((e for e in entries if e.first == option.file), None)
    if match is None:
        raise QuantDeskError(f"{option.file} is no longer in {plan.model}",
                             next_step="Plan the repo again to see its current files.")
    return match


def installed(repo: str, entry: RepoGGUF) -> LibraryModel | None:
    """The library's copy of this hub file when it was already downloaded (same path, same hash)."""
    from quantdesk.core.downloader import final_path

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
