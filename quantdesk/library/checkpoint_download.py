"""A Hugging Face checkpoint fetched from the hub, every file verified, before it is converted.

Weights are LFS files: the existing resumable downloader fetches them and checks each against the
hub's SHA-256. The small files git keeps itself (config, tokenizer) have no SHA-256 on the hub, only
a git blob id, ``sha1("blob <size>\\0" + bytes)``: they are fetched whole and checked against it.
``config.json`` comes first and its architecture is checked before any weight is fetched; the
files gather in a staging folder that becomes ``<models>/.checkpoints/<repo>`` only when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import models_dir
from quantdesk.hub.client import CheckpointFile, RepoFilePart, check_repo_path, checkpoint_listing
from quantdesk.hub.errors import with_retries
from quantdesk.library.download import Cancelled, DownloadEvent, check_disk, download_part, partial_path
from quantdesk.library.failure import ChecksumMismatch

MAX_SMALL_FILE = 64 << 20  # a file git stores itself (not LFS) larger than this is refused
PROVENANCE = "quantdesk-provenance.json"  # written beside a fetched checkpoint: repo, commit, each file's hash


def checkpoint_dir(repo_id: str) -> Path:
    return models_dir() / ".checkpoints" / repo_id


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch_small_file(repo_id: str, f: CheckpointFile, revision: str | None = None) -> bytes:
    """A small (non-LFS) file, checked against its size and git blob id before it is used."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from quantdesk.hub.credentials import hub_token
    from quantdesk.hub.endpoint import hub_endpoint
    from quantdesk.hub.session import hub_session

    if not f.blob_id or f.size > MAX_SMALL_FILE:
        raise QuantDeskError(f"{repo_id}/{f.path}: the hub publishes neither a SHA-256 nor a usable git blob id for "
                             "it, so it cannot be verified")
    url = hf_hub_url(repo_id, f.path, revision=revision, endpoint=hub_endpoint())

    def get() -> bytes:
        response = hub_session().get(url, headers=build_hf_headers(token=hub_token()), follow_redirects=True)
        response.raise_for_status()
        return response.content

    data = with_retries(get, repo_id)
    actual = git_blob_id(data)
    if len(data) != f.size or actual != f.blob_id:
        raise ChecksumMismatch(f"checksum mismatch for {f.path}: expected git blob {f.blob_id} ({f.size:,} bytes), "
                               f"got {actual} ({len(data):,} bytes); nothing was kept — try again",
                               file=f.path, expected=f.blob_id, actual=actual, received=len(data), size=f.size)
    return data


def download_checkpoint(repo_id: str, revision: str | None = None, cancel: threading.Event | None = None,
                        before_weights: Callable[[Path, int], object] | None = None) -> Iterator[object]:
    """Fetch and verify ``repo_id``'s checkpoint; yields ``DownloadEvent``s, the last item is its folder.

    ``before_weights(folder with config and tokenizer, weight bytes)`` may refuse (raise) before the
    first weight byte is fetched: the conversion's pre-flight.
    """
    from quantdesk.convert.checkpoint import CheckpointError, architecture_of, open_checkpoint, parse_json

    files, commit = checkpoint_listing(repo_id, revision)
    if not files:
        raise QuantDeskError(f"{repo_id} has neither a full-precision GGUF nor a Hugging Face checkpoint "
                             "(config.json with safetensors weights) to quantize from")
    for f in files:
        check_repo_path(f.path)
    folder = checkpoint_dir(repo_id)
    if _complete_copy(folder, files, cancel):  # fetched before (a job that failed later): re-hashed, not refetched
        yield DownloadEvent("done", repo_id, sum(f.size for f in files), sum(f.size for f in files),
                            message="already downloaded and verified")
        yield folder
        return
    if cancel is not None and cancel.is_set():
        raise Cancelled("the download was cancelled")
    staging = folder.with_name(folder.name + ".partial")  # kept after a cancel or a dropped network: resumed
    staging.mkdir(parents=True, exist_ok=True)
    try:
        small = [f for f in files if f.sha256 is None]
        weights = [f for f in files if f.sha256 is not None]
        by_name = {f.path: f for f in small}
        config = fetch_small_file(repo_id, by_name.pop("config.json"), revision)
        (staging / "config.json").write_bytes(config)
        architecture_of(parse_json(config, "config.json"), repo_id)  # before anything large: the config says it
        for f in by_name.values():
            (staging / f.path).write_bytes(fetch_small_file(repo_id, f, revision))
        from quantdesk.convert.convert import check_before_weights

        check_before_weights(staging)  # the tokenizer, RoPE scaling…: refused now, not after gigabytes
        total = sum(f.size for f in weights)
        if before_weights is not None:
            before_weights(staging, total)
        parts = [RepoFilePart(f.path, f.size, f.sha256) for f in weights]
        done_before = [p for p in parts if _verified(staging / p.path, p, cancel)]  # an earlier try's shards
        check_disk([p for p in parts if p not in done_before], repo_id)
        done = 0
        for part in parts:
            if part in done_before:
                done += part.size
                continue
            for event in download_part(repo_id, part, revision, cancel):  # progress over all the weights
                yield dataclasses.replace(event, done=done + event.done, total=total)
            os.replace(partial_path(repo_id, part.path), staging / part.path)
            done += part.size
        open_checkpoint(staging)  # every shard the index names is here
        (staging / PROVENANCE).write_text(json.dumps({  # what the library records as the origin
            "repo": repo_id, "revision": commit or revision,
            "files": {f.path: ({"sha256": f.sha256} if f.sha256 else {"git_blob": f.blob_id}) for f in files}}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except (CheckpointError, ChecksumMismatch):  # refused or not the hub's bytes: nothing is kept
        shutil.rmtree(staging, ignore_errors=True)
        raise  # (a cancel, a dropped network, a full disk keep what is verified: the next try resumes)
    yield DownloadEvent("done", repo_id, total, total)
    yield folder


def _verified(path: Path, part: RepoFilePart, cancel: threading.Event | None) -> bool:
    """A weight file an earlier try finished: right size and SHA-256 (hashed again)."""
    if not path.is_file() or path.stat().st_size != part.size or not part.sha256:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            if cancel is not None and cancel.is_set():
                raise Cancelled("the download was cancelled")
            digest.update(chunk)
    return digest.hexdigest() == part.sha256.lower()


def _complete_copy(folder: Path, files: list[CheckpointFile], cancel: threading.Event | None) -> bool:
    """Whether ``folder`` holds every file with the size and hash the hub lists (hashing them all)."""
    if not folder.is_dir():
        return False
    for f in files:
        path = folder / f.path
        if not path.is_file() or path.stat().st_size != f.size:
            return False
    for f in files:
        if cancel is not None and cancel.is_set():
            return False
        path = folder / f.path
        if f.sha256 is not None:
            if not _verified(path, RepoFilePart(f.path, f.size, f.sha256), None):
                return False
        elif git_blob_id(path.read_bytes()) != f.blob_id:
            return False
    return True
