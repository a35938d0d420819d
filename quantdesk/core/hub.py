"""The Hugging Face Hub as QuantDesk sees it: GGUF files per repo, grouped and labelled.

All calls go through the real ``huggingface_hub`` client; the endpoint follows ``HF_ENDPOINT``
at call time (tests and mirrors point it elsewhere), the token comes from ``tokens.hub_token``.
"""

from __future__ import annotations

import os
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from quantdesk.core.errors import QuantDeskError
from quantdesk.core.model_info import SPLIT_RE
from quantdesk.core.quants import quant_from_filename
from quantdesk.core.tokens import hub_token

T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` wins (how tests and mirrors point the client elsewhere), then Settings."""
    from quantdesk.core.settings import load_settings

    return (os.environ.get("HF_ENDPOINT") or load_settings().hub_endpoint or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RepoFilePart:
    path: str
    size: int
    sha256: str | None


@dataclass
class RepoGGUF:
    """One model file as a user sees it: a single .gguf or all parts of a split one."""

    name: str
    quant: str | None
    parts: list[RepoFilePart] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def first(self) -> str:
        return self.parts[0].path

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "quant": self.quant, "size": self.size,
                "parts": [{"path": p.path, "size": p.size, "sha256": p.sha256} for p in self.parts]}


_SAFE_PART = re.compile(r"^[A-Za-z0-9._\-+=@ ()\[\],]+$")


def check_repo_path(path: str) -> str:
    """Refuse a repo file name that could escape the library folder."""
    if (not path or "\\" in path or "\x00" in path or path.startswith(("/", "~")) or ":" in path
            or posixpath.isabs(path)):
        raise QuantDeskError(f"refusing unsafe file name from the hub: {path!r}")
    for part in path.split("/"):
        if part in ("", ".", "..") or not _SAFE_PART.match(part):
            raise QuantDeskError(f"refusing unsafe file name from the hub: {path!r}")
    return path


def group_gguf_files(files: list[RepoFilePart]) -> list[RepoGGUF]:
    """Group split parts into one entry per model file; skip non-GGUF files."""
    groups: dict[str, RepoGGUF] = {}
    for f in sorted(files, key=lambda f: f.path):
        if not f.path.lower().endswith(".gguf"):
            continue
        match = SPLIT_RE.match(posixpath.basename(f.path))
        key = posixpath.join(posixpath.dirname(f.path), match["base"]) if match else f.path
        name = posixpath.basename(key if match else f.path)
        groups.setdefault(key, RepoGGUF(name=name, quant=quant_from_filename(f.path))).parts.append(f)
    return [g for g in groups.values() if not _incomplete_split(g)]


def _incomplete_split(g: RepoGGUF) -> bool:
    match = SPLIT_RE.match(posixpath.basename(g.first))
    return bool(match) and len(g.parts) != int(match["count"])


def _api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=hub_token())


class HubUnreachable(QuantDeskError):
    """The hub did not answer (no network, DNS, timeout, 5xx): callers may fall back to the offline catalog."""


def translate_hub_error(exc: Exception, what: str) -> QuantDeskError:
    """One sentence with the next step for each way the hub can say no."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return QuantDeskError(f"{what} is gated: accept its terms on the hub and set a token (HF_TOKEN or Settings)")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return QuantDeskError(f"{what} was not found on the hub (or is private and needs a token)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return QuantDeskError(f"{what}: that revision does not exist")
    if isinstance(exc, errors.EntryNotFoundError):
        return QuantDeskError(f"{what}: file not found in the repository")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, errors.HfHubHTTPError) and status is not None and status < 500:
        return QuantDeskError(f"the hub refused {what} ({status}): {exc}")
    return HubUnreachable(f"cannot reach the hub at {hub_endpoint()} for {what}: {exc}")


API_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
API_ATTEMPTS = 4


def with_retries(call: Callable[[], T], what: str) -> T:
    """``call`` (a hub API request), again after a 429 or 5xx with backoff (honouring Retry-After, up
    to 10 s): the hub answers those under load, and one of them should not fail a download. Other
    errors, and the last retryable one, become a sentence (:func:`translate_hub_error`)."""
    for attempt in range(1, API_ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if status not in API_RETRY_STATUSES or attempt == API_ATTEMPTS:
                raise translate_hub_error(exc, what) from None
            try:
                wait = float(response.headers.get("Retry-After"))
            except (TypeError, ValueError):
                wait = 0.5 * 2 ** (attempt - 1)
            time.sleep(min(10.0, max(0.0, wait)))
    raise AssertionError("unreachable")


def list_repo_ggufs(repo_id: str, revision: str | None = None) -> list[RepoGGUF]:
    """Every GGUF model file of a repo with sizes and the LFS SHA-256 the hub publishes."""
    info = with_retries(lambda: _api().model_info(repo_id, revision=revision, files_metadata=True), repo_id)
    parts = []
    for s in info.siblings or []:
        lfs = s.lfs
        sha = lfs.sha256 if lfs is not None else None
        size = s.size if s.size is not None else (lfs.size if lfs is not None else 0)
        parts.append(RepoFilePart(path=s.rfilename, size=int(size or 0), sha256=sha))
    entries = group_gguf_files(parts)
    if revision is None:
        from quantdesk.core.catalog_refresh import remember_repo

        try:
            remember_repo(repo_id, entries)  # an online listing keeps the offline catalog current for free
        except OSError:
            pass  # a read-only data folder costs only freshness
    return entries


# Organisations whose files are the model's own or come from quantizers the community relies on;
# shown as a badge so "download from verified sources" is visible rather than assumed.
KNOWN_QUANTIZERS = frozenset({"bartowski", "unsloth", "lmstudio-community", "QuantFactory", "mradermacher",
                              "TheBloke", "MaziyarPanahi", "ggml-org", "second-state", "NousResearch",
                              "hugging-quants"})  # Hugging Face staff's own quantizations
MODEL_ORGS = frozenset({"meta-llama", "Qwen", "google", "microsoft", "mistralai", "deepseek-ai", "ibm-granite",
                        "allenai", "HuggingFaceTB", "tiiuae", "openai", "nvidia", "CohereForAI", "THUDM"})
SORTS = {"downloads": "downloads", "likes": "likes", "recent": "lastModified", "trending": "trending_score"}


def publisher_kind(repo_id: str) -> str | None:
    owner = repo_id.split("/", 1)[0]
    if owner in MODEL_ORGS:
        return "model author"
    if owner in KNOWN_QUANTIZERS:
        return "known quantizer"
    return None


@dataclass
class RepoSummary:
    repo_id: str
    downloads: int
    likes: int
    last_modified: str | None
    publisher: str | None
    gated: bool
    params: int | None = None  # known for offline catalog rows; the hub's listing does not say

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo_id, "downloads": self.downloads, "likes": self.likes,
                "last_modified": self.last_modified, "publisher": self.publisher, "gated": self.gated}


def _probe_hub(timeout: float = 5.0) -> None:
    """Fail fast when the hub does not answer: the client's listing retries connection errors for ~25 s."""
    from huggingface_hub.utils import get_session

    try:
        get_session().get(f"{hub_endpoint()}/api/models", params={"limit": 1}, timeout=timeout)
    except Exception as exc:
        raise HubUnreachable(f"cannot reach the hub at {hub_endpoint()}: {exc}") from None


def search_gguf_repos(text: str, sort: str = "downloads", limit: int = 20) -> list[RepoSummary]:
    _probe_hub()
    models = with_retries(lambda: list(_api().list_models(search=text or None, filter="gguf",
                                                          sort=SORTS.get(sort, sort), limit=limit)), f"search '{text}'")
    return [RepoSummary(m.id, int(m.downloads or 0), int(m.likes or 0),
                        m.last_modified.isoformat() if getattr(m, "last_modified", None) else None,
                        publisher_kind(m.id), bool(getattr(m, "gated", False))) for m in models]
