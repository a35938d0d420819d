"""The Hugging Face Hub as QuantDesk sees it: GGUF files per repo, grouped and labelled.

All calls go through the real ``huggingface_hub`` client; the endpoint follows ``HF_ENDPOINT``
at call time (tests and mirrors point it elsewhere), the token from ``credentials.hub_token``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.model_info import SPLIT_RE
from quantdesk.gguf.quants import quant_from_filename
from quantdesk.hub.credentials import hub_token
from quantdesk.hub.endpoint import hub_endpoint
from quantdesk.hub.errors import probe_hub, with_retries
from quantdesk.hub.session import hub_session


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


_SAFE_PUNCTUATION = frozenset("._-+=@ ()[],'&!#%~")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)
MAX_PART_BYTES = 200  # file systems allow 255 bytes a name; ".part.ranges" and friends are appended


def _safe_part(part: str) -> bool:
    """Letters and digits of any script (a Japanese or Cyrillic model name is legitimate) and a few
    punctuation marks; never separators, control or formatting characters (no bidi overrides)."""
    return (part not in ("", ".", "..") and not part.startswith(" ") and not part.endswith((" ", "."))
            and all(c.isalnum() or c in _SAFE_PUNCTUATION for c in part)
            and not _WINDOWS_RESERVED.match(part) and len(part.encode("utf-8")) <= MAX_PART_BYTES)


def check_repo_path(path: str) -> str:
    """Refuse a repo file name that could escape the library folder, or that a file system refuses."""
    if (not path or "\\" in path or "\x00" in path or path.startswith(("/", "~")) or ":" in path
            or posixpath.isabs(path)):
        raise QuantDeskError(f"refusing unsafe file name from the hub: {path!r}")
    for part in path.split("/"):
        if not _safe_part(part):
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

    hub_session()  # its requests get timeouts
    return HfApi(endpoint=hub_endpoint(), token=hub_token())


def list_repo_ggufs(repo_id: str, revision: str | None = None) -> list[RepoGGUF]:
    """Every GGUF model file of a repo with sizes and the LFS SHA-256 the hub publishes."""
    info = with_retries(lambda: _api().model_info(repo_id, revision=revision, files_metadata=True), repo_id)
    parts = []
    for s in info.siblings or []:
        lfs = s.lfs
        sha = lfs.sha256 if lfs is not None else None
        size = s.size if s.size is not None else (lfs.size if lfs is not None else 0)
        parts.append(RepoFilePart(path=s.rfilename, size=int(size or 0), sha256=sha))
    return group_gguf_files(parts)


@dataclass(frozen=True)
class CheckpointFile:
    """A file of a Hugging Face checkpoint on the hub, with what verifies it: the LFS SHA-256 for
    weights, the git blob id (``sha1("blob <size>\\0" + bytes)``) for the small files git stores itself."""

    path: str
    size: int
    sha256: str | None
    blob_id: str | None


# What a checkpoint's conversion reads: the config, the tokenizer, the weights (safetensors only).
CHECKPOINT_FILE_RE = re.compile(
    r"^(config\.json|generation_config\.json|tokenizer\.json|tokenizer\.model|tokenizer_config\.json|"
    r"special_tokens_map\.json|added_tokens\.json|chat_template\.jinja|chat_template\.json|"
    r"model\.safetensors\.index\.json|"
    r"model(-\d{5}-of-\d{5})?\.safetensors)$")


def list_checkpoint_files(repo_id: str, revision: str | None = None) -> list[CheckpointFile]:
    """The files of ``repo_id`` that make up a Hugging Face checkpoint (top level only), each with its
    verification data; [] when the repo has no config.json."""
    return checkpoint_listing(repo_id, revision)[0]


def checkpoint_listing(repo_id: str, revision: str | None = None) -> tuple[list[CheckpointFile], str | None]:
    """``list_checkpoint_files`` and the commit it describes (what the library records as the origin)."""
    info = with_retries(lambda: _api().model_info(repo_id, revision=revision, files_metadata=True), repo_id)
    out = []
    for s in info.siblings or []:
        if not CHECKPOINT_FILE_RE.match(s.rfilename):
            continue
        lfs = s.lfs
        size = s.size if s.size is not None else (lfs.size if lfs is not None else 0)
        out.append(CheckpointFile(s.rfilename, int(size or 0), lfs.sha256 if lfs is not None else None,
                                  getattr(s, "blob_id", None)))
    return (out if any(f.path == "config.json" for f in out) else []), getattr(info, "sha", None)


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


def search_gguf_repos(text: str, sort: str = "downloads", limit: int = 20) -> list[RepoSummary]:
    probe_hub()
    models = with_retries(lambda: list(_api().list_models(search=text or None, filter="gguf",
                                                          sort=SORTS.get(sort, sort), limit=limit)), f"search '{text}'")
    return [RepoSummary(m.id, int(m.downloads or 0), int(m.likes or 0),
                        m.last_modified.isoformat() if getattr(m, "last_modified", None) else None,
                        publisher_kind(m.id), bool(getattr(m, "gated", False))) for m in models]
