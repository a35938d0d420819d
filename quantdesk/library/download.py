"""Verified, resumable downloads of hub files into the library.

Bytes land in ``<models>/.partial/<repo>/<path>.part`` (over parallel connections for large files:
``transfer``); the SHA-256 is computed in file order as they arrive (on resume the bytes already on
disk are hashed first), and only a file whose size and hash match the hub's LFS record leaves the
partial folder. A dropped connection, 429/5xx or a stall is retried with backoff from the byte where
it stopped; a killed process resumes on the next run. Progress comes out as ``DownloadEvent``s from
a generator, so the CLI and GUI drive the same code.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.file_lock import FileLock
from quantdesk.base.settings import models_dir
from quantdesk.hub.client import RepoFilePart, RepoGGUF, check_repo_path
from quantdesk.hub.credentials import hub_token
from quantdesk.hub.endpoint import hub_endpoint
from quantdesk.hub.session import hub_session
from quantdesk.library.byte_ranges import load_ranges, remove_partial, state_path
from quantdesk.gguf.reader import GGUFError, read_header
from quantdesk.library.failure import ChecksumMismatch, NotAModel, NotEnoughDisk
from quantdesk.library.transfer import Cancelled, DownloadEvent, Transfer, disk_full, hash_existing

__all__ = ["Cancelled", "DownloadEvent", "DownloadResult", "check_disk", "download_model", "download_part",
           "final_path", "lock_path", "partial_path", "remove_partial"]

MAX_ATTEMPTS = 8  # failures in a row without a new byte before giving up (read at each download: tests lower it)
DISK_MARGIN_MIN, DISK_MARGIN_FRACTION = 256 << 20, 0.02


def max_attempts() -> int:
    """Failures in a row without a new byte before a download gives up (``QUANTDESK_DOWNLOAD_TRIES``,
    default ``MAX_ATTEMPTS``: with its backoff, about a minute of a dead network)."""
    try:
        return max(0, int(os.environ.get("QUANTDESK_DOWNLOAD_TRIES", "")))
    except ValueError:
        return MAX_ATTEMPTS


def stall_timeout() -> float:
    """Seconds without a byte before a connection counts as stalled (and is retried)."""
    return float(os.environ.get("QUANTDESK_STALL_TIMEOUT", "30"))


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int


def partial_path(repo_id: str, path: str) -> Path:
    return models_dir() / ".partial" / repo_id / (check_repo_path(path) + ".part")


def final_path(repo_id: str, path: str) -> Path:
    return models_dir() / repo_id / check_repo_path(path)


def check_disk(parts: list[RepoFilePart], repo_id: str) -> None:
    """Refuse before starting when the parts (less what is already there) do not fit, with margin."""
    missing = sum(p.size - load_ranges(partial_path(repo_id, p.path), p.size).done() for p in parts)
    root = models_dir()
    free = shutil.disk_usage(root).free
    margin = max(DISK_MARGIN_MIN, int(DISK_MARGIN_FRACTION * missing))
    if missing + margin > free:
        raise NotEnoughDisk(f"not enough disk space in {root}: the download needs {missing / 2**30:.2f} GiB "
                            f"(+{margin / 2**30:.2f} GiB margin) but only {free / 2**30:.2f} GiB is free",
                            root=str(root), need=missing, margin=margin, free=free)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


_disk_full = disk_full


def download_part(repo_id: str, part: RepoFilePart, revision: str | None = None,
                  cancel: threading.Event | None = None) -> Iterator[DownloadEvent]:
    """Download and verify one file into the partial folder; the last event is 'verifying' or raises."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    if not part.sha256:
        raise QuantDeskError(f"{part.path}: the hub publishes no SHA-256 for it, so it cannot be verified")
    session = hub_session()
    http = importlib.import_module(type(session).__module__.split(".")[0])
    url = hf_hub_url(repo_id, part.path, revision=revision, endpoint=hub_endpoint())
    part_file = partial_path(repo_id, part.path)
    part_file.parent.mkdir(parents=True, exist_ok=True)
    if _size(part_file) > part.size and not state_path(part_file).exists():
        remove_partial(part_file)  # a leftover larger than the file: start over
    ranges = load_ranges(part_file, part.size)
    sha, hashed = hashlib.sha256(), 0
    for hashed in hash_existing(part_file, sha, ranges.prefix(), lambda: cancel is not None and cancel.is_set()):
        yield DownloadEvent("verifying", part.path, hashed, part.size, message="checking the part already downloaded")
    transfer = Transfer(repo_id=repo_id, part=part, part_file=part_file, url=url,
                        headers=build_hf_headers(token=hub_token()), session=session, http=http, ranges=ranges,
                        sha=sha, hashed=hashed, cancel=cancel, max_attempts=max_attempts(),
                        stall_timeout=stall_timeout())
    try:
        yield from transfer.run()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise disk_full(exc) from None
        raise
    yield DownloadEvent("verifying", part.path, part.size, part.size)
    actual = transfer.sha.hexdigest()
    if transfer.hashed != part.size or actual != part.sha256.lower():
        remove_partial(part_file)
        raise ChecksumMismatch(f"checksum mismatch for {part.path}: expected sha256 {part.sha256}, got {actual} "
                               f"({transfer.hashed:,} of {part.size:,} bytes); the file was deleted and nothing was "
                               "added to the library — try again, or pick another file",
                               file=part.path, expected=part.sha256, actual=actual, received=transfer.hashed,
                               size=part.size)


def download_model(repo_id: str, entry: RepoGGUF, revision: str | None = None,
                   cancel: threading.Event | None = None) -> Iterator[DownloadEvent | list[DownloadResult]]:
    """Download every part, verify each, then move all into the library folder together.

    Yields events; the final item is the list of results (paths in the library folder).
    """
    for part in entry.parts:
        check_repo_path(part.path)
    check_disk(entry.parts, repo_id)
    # One writer per model, held until the files are in place (another process, or another job
    # here, would append to the same partial files).
    with FileLock(lock_path(repo_id, entry.first), f"a download of {entry.name}",
                  next_step="Wait for it to finish (the Downloads page or `quantdesk downloads`), or cancel it there.",
                  wait=1.0):  # another process may only be peeking whether it is free (download_queue)
        for part in entry.parts:
            yield from download_part(repo_id, part, revision, cancel)
        _check_readable(repo_id, entry)
        results = []
        for part in entry.parts:
            source = partial_path(repo_id, part.path)
            if _size(source) != part.size:  # verified while streaming; this guards against anything since
                source.unlink(missing_ok=True)
                raise QuantDeskError(f"{part.path} changed on disk after it was verified; it was deleted — "
                                     "download it again")
            dest = final_path(repo_id, part.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, dest)
            results.append(DownloadResult(dest, part.sha256.lower(), part.size))
    yield DownloadEvent("done", entry.name, entry.size, entry.size)
    yield results


def _check_readable(repo_id: str, entry: RepoGGUF) -> None:
    """The hash proves the bytes are the hub's, not that they are a model: an HTML page or a
    truncated upload with a matching hash must not enter the library. Every part must have a valid
    GGUF header whose tensors lie within the file (what ``import`` demands of a local file)."""
    for part in entry.parts:
        source = partial_path(repo_id, part.path)
        try:
            read_header(source)
        except GGUFError as exc:
            for other in entry.parts:
                remove_partial(partial_path(repo_id, other.path))
            reason = str(exc).removeprefix(f"{source.name}: ")
            raise NotAModel(f"{part.path} matched the hub's SHA-256 but is not a usable GGUF model ({reason}); "
                            "it was deleted and nothing was added to the library — pick another file",
                            file=part.path, reason=reason) from None


def lock_path(repo_id: str, first_part: str) -> Path:
    return models_dir() / ".partial" / repo_id / (check_repo_path(first_part) + ".lock")
