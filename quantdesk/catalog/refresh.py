"""Keeping the offline catalog current: the hub's own file lists, remembered for the next offline run.

The bundled snapshot (``resources/catalog.json``) ages and lists some sizes as estimates. When the
hub answers, each catalog repo's GGUF files are read from it (exact sizes and the LFS SHA-256) and
kept in ``<data>/catalog-refresh.json``; ``catalog.load_catalog`` lays them over the snapshot and
says which one is shown. A repo that failed keeps its older data; a repo the hub no longer has is
marked, not dropped (its published shape still plans).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from quantdesk.base.errors import QuantDeskError
from quantdesk.catalog.offline import load_catalog
from quantdesk.catalog.refresh_store import now_stamp, read_refresh, write_refresh
from quantdesk.hub.client import RepoGGUF, list_repo_ggufs
from quantdesk.hub.endpoint import DEFAULT_ENDPOINT, hub_endpoint
from quantdesk.hub.errors import HubUnreachable, probe_hub

_write_lock = threading.Lock()


def _files_json(entries: Iterable[RepoGGUF]) -> list[dict[str, Any]]:
    return [{"path": e.first, "quant": e.quant, "size": e.size, "sha256": e.parts[0].sha256,
             "parts": len(e.parts)} for e in entries]


def _record(updates: dict[str, dict[str, Any]], stamp_all: bool) -> None:
    with _write_lock:
        data = read_refresh() or {"repos": {}}
        data["repos"].update(updates)
        data["endpoint"] = hub_endpoint()
        if stamp_all:
            data["refreshed_at"] = now_stamp()
        write_refresh(data)
    load_catalog.cache_clear()


def remember_repo(repo: str, entries: list[RepoGGUF]) -> bool:
    """Keep what the hub just said about a catalog repo (a free refresh while online); False if the
    repo is not in the catalog."""
    model = load_catalog().find(repo)
    if model is None or not entries:
        return False
    _record({model.repo: {"files": _files_json(entries), "at": now_stamp(), "status": "ok"}}, stamp_all=False)
    return True


def list_and_remember(repo_id: str, revision: str | None = None) -> list[RepoGGUF]:
    """The hub's GGUF listing of a repo; for a catalog repo at its main revision it is also remembered,
    so any online ``files`` or plan keeps the offline catalog current for free."""
    entries = list_repo_ggufs(repo_id, revision)
    if revision is None:
        try:
            remember_repo(repo_id, entries)
        except OSError:
            pass  # a read-only data folder costs only freshness
    return entries


@dataclass
class RefreshResult:
    refreshed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)        # no such repo (or no GGUF files) on huggingface.co, or
    #                                                      on the endpoint that listed it before
    failed: dict[str, str] = field(default_factory=dict)  # repo → why (kept its older data)
    seconds: float = 0.0
    absent: list[str] = field(default_factory=list)      # a mirror (HF_ENDPOINT, Settings) lacks them: not gone
    endpoint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"refreshed": self.refreshed, "gone": self.gone, "failed": self.failed,
                "seconds": round(self.seconds, 2), "absent": self.absent, "endpoint": self.endpoint}


Progress = Callable[[int, int, str], None]


def refresh_catalog(repos: list[str] | None = None, progress: Progress | None = None,
                    cancel: threading.Event | None = None, workers: int = 4) -> RefreshResult:
    """Read every catalog repo's GGUF files from the hub and remember them.

    Raises ``HubUnreachable`` at once when the hub does not answer (nothing is changed then).
    """
    probe_hub()
    catalog = load_catalog()
    names = repos or [m.repo for m in catalog.models]
    result, start, done = RefreshResult(endpoint=hub_endpoint()), time.monotonic(), 0
    on_the_hub = result.endpoint == DEFAULT_ENDPOINT
    previous = (read_refresh() or {}).get("repos", {})
    updates: dict[str, dict[str, Any]] = {}

    def one(repo: str) -> tuple[str, list[RepoGGUF] | None, str | None]:
        if cancel is not None and cancel.is_set():
            return repo, None, "cancelled"
        try:
            return repo, list_repo_ggufs(repo), None
        except HubUnreachable as exc:
            return repo, None, str(exc)
        except QuantDeskError as exc:
            return repo, [], str(exc)  # the hub answered: not found, gated, …

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for repo, entries, why in pool.map(one, names):
            done += 1
            if progress is not None:
                progress(done, len(names), repo)
            if entries is None:
                result.failed[repo] = why or "unknown"
            elif not entries and not (on_the_hub or previous.get(repo, {}).get("endpoint") == result.endpoint):
                # a mirror that never had it: that says nothing of the repo itself
                result.absent.append(repo)
                updates[repo] = {**previous.get(repo, {}), "absent_from": result.endpoint}
            elif not entries:
                result.gone.append(repo)
                updates[repo] = {"files": [], "at": now_stamp(), "status": "gone", "why": why or "no GGUF files",
                                 "endpoint": result.endpoint}
            else:
                result.refreshed.append(repo)
                updates[repo] = {"files": _files_json(entries), "at": now_stamp(), "status": "ok",
                                 "endpoint": result.endpoint}
    if updates:
        _record(updates, stamp_all=not result.failed or bool(result.refreshed))
    result.seconds = time.monotonic() - start
    return result
