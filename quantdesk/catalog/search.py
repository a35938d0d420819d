"""Searching for a model: the hub whenever it answers; when it does not, the bundled catalog stands
in and every result says so (downloads always come from the hub, never from the catalog)."""

from __future__ import annotations

from dataclasses import dataclass

from quantdesk.catalog.offline import load_catalog
from quantdesk.hub.client import RepoSummary, publisher_kind, search_gguf_repos
from quantdesk.hub.errors import HubUnreachable


@dataclass(frozen=True)
class SearchResults:
    text: str
    rows: list[RepoSummary]
    source: str  # "hub" or "catalog"
    label: str  # which, in words: "Hugging Face hub" or "Bundled catalog (offline, snapshot …)"
    reason: str | None = None  # why the catalog answered: "offline mode" or the hub's error


CATALOG_ALL = 10_000


def catalog_label() -> str:
    return load_catalog().label()


def catalog_rows(text: str, limit: int) -> list[RepoSummary]:
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
