"""Verified, resumable downloads of hub files into the library.

Bytes stream to ``<models>/.partial/<repo>/<path>.part``; the SHA-256 is computed while streaming
(on resume the bytes already on disk are hashed once first), and only a file whose size and hash
match the hub's LFS record leaves the partial folder. A dropped connection, 429/5xx or a stall is
retried with backoff from the byte where it stopped; a killed process resumes on the next run.
Progress comes out as ``DownloadEvent``s from a generator, so the CLI and GUI drive the same code.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.file_lock import FileLock
from quantdesk.base.settings import models_dir
from quantdesk.hub.client import RepoFilePart, RepoGGUF, check_repo_path
from quantdesk.hub.credentials import hub_token
from quantdesk.hub.endpoint import hub_endpoint
from quantdesk.library.failure import (
    AccessDenied,
    ChecksumMismatch,
    DiskFilled,
    GaveUp,
    NotEnoughDisk,
    NotOnHub,
)

CHUNK = 1 << 20
TRICKLE_BYTES = 64 << 10  # fewer than this in a whole stall period (QUANTDESK_STALL_TIMEOUT) is a stall
MAX_ATTEMPTS = 8
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
DISK_MARGIN_MIN, DISK_MARGIN_FRACTION = 256 << 20, 0.02


def stall_timeout() -> float:
    """Seconds without a byte before a connection counts as stalled (and is retried)."""
    return float(os.environ.get("QUANTDESK_STALL_TIMEOUT", "30"))


@dataclass(frozen=True)
class DownloadEvent:
    state: str  # queued | downloading | verifying | done | failed | paused | retrying
    file: str
    done: int
    total: int
    speed: float = 0.0  # bytes/s, rolling over the last few seconds
    eta: float | None = None
    message: str = ""


class Cancelled(QuantDeskError):
    pass


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int


class _Rate:
    """Rolling transfer speed over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.samples: deque[tuple[float, int]] = deque()
        self.window = window

    def add(self, total: int) -> float:
        now = time.monotonic()
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        return (total - b0) / (now - t0) if now > t0 else 0.0


def partial_path(repo_id: str, path: str) -> Path:
    return models_dir() / ".partial" / repo_id / (check_repo_path(path) + ".part")


def final_path(repo_id: str, path: str) -> Path:
    return models_dir() / repo_id / check_repo_path(path)


def check_disk(parts: list[RepoFilePart], repo_id: str) -> None:
    """Refuse before starting when the parts (less what is already there) do not fit, with margin."""
    missing = sum(max(0, p.size - _size(partial_path(repo_id, p.path))) for p in parts)
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


class _HashingWriter:
    """Writes and hashes on a worker thread so hashing overlaps the network."""

    def __init__(self, path: Path, sha: "hashlib._Hash", append: bool) -> None:
        self.fh = path.open("ab" if append else "wb")
        self.sha = sha
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=512)  # network-sized pieces: ~32 MiB ahead at most
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.q.get()) is not None:
            if self.error is None:
                try:
                    self.fh.write(chunk)
                    self.sha.update(chunk)
                except BaseException as exc:  # noqa: BLE001 - reported on the reader's thread
                    self.error = exc

    def write(self, chunk: bytes) -> None:
        if self.error:
            raise self.error
        self.q.put(chunk)

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.error:
            raise self.error


def _hash_existing(path: Path, sha: "hashlib._Hash", cancel: threading.Event | None) -> Iterator[int]:
    """Hash the part already on disk into ``sha``, yielding the bytes hashed about 4 times a second
    (a resumed multi-GB file takes a while: the user sees it move, and may pause it)."""
    done, last = 0, time.monotonic()
    if not path.exists():
        return
    with path.open("rb") as fh:
        while chunk := fh.read(8 * CHUNK):
            sha.update(chunk)
            done += len(chunk)
            if time.monotonic() - last > 0.25:
                last = time.monotonic()
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"{path.name}: paused while checking the part already downloaded")
                yield done
    yield done


def _disk_full(exc: OSError) -> DiskFilled:
    return DiskFilled(f"the disk filled up during the download ({exc.strerror}); the partial file is kept "
                      "to resume once space is freed", filled=True)


def download_part(repo_id: str, part: RepoFilePart, revision: str | None = None,
                  cancel: threading.Event | None = None) -> Iterator[DownloadEvent]:
    """Download and verify one file into the partial folder; the last event is 'verifying' or raises."""
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    if not part.sha256:
        raise QuantDeskError(f"{part.path}: the hub publishes no SHA-256 for it, so it cannot be verified")
    session = get_session()
    http = importlib.import_module(type(session).__module__.split(".")[0])
    url = hf_hub_url(repo_id, part.path, revision=revision, endpoint=hub_endpoint())
    headers = build_hf_headers(token=hub_token())
    part_file = partial_path(repo_id, part.path)
    part_file.parent.mkdir(parents=True, exist_ok=True)
    sha, done = hashlib.sha256(), 0
    for done in _hash_existing(part_file, sha, cancel):
        yield DownloadEvent("verifying", part.path, done, part.size, message="checking the part already downloaded")
    if done > part.size:  # a leftover larger than the file: start over
        part_file.unlink()
        sha, done = hashlib.sha256(), 0
    rate, attempt = _Rate(), 0
    timeout = http.Timeout(connect=15.0, read=stall_timeout(), write=30.0, pool=15.0)
    while done < part.size:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{part.path}: paused at {done:,} of {part.size:,} bytes")
        request_headers = dict(headers, **({"Range": f"bytes={done}-"} if done else {}))
        try:
            with session.stream("GET", url, headers=request_headers, follow_redirects=True,
                                timeout=timeout) as response:
                status = response.status_code
                if status in RETRY_STATUSES:
                    raise _Retry(f"the hub answered {status}", _retry_after(response))
                if status == 416:  # asked for bytes from `done` on: the hub's file is shorter than it says
                    raise _SizeMismatch(f"it refused bytes from {done:,} on")
                if status in (401, 403):
                    raise AccessDenied(f"{repo_id}: access denied ({status}); the repo may be gated — "
                                       "accept its terms on the hub and set a token (HF_TOKEN or Settings)",
                                       status=status)
                if status == 404:
                    raise NotOnHub(f"{repo_id}/{part.path}: not found on the hub")
                if status >= 400:
                    raise QuantDeskError(f"{repo_id}/{part.path}: the hub answered {status}")
                if done and status == 200:  # the server ignored Range: start over
                    sha, done = hashlib.sha256(), 0
                writer = _HashingWriter(part_file, sha, append=done > 0)
                # Pieces as the network delivers them (a dropped connection loses nothing already
                # received); an event per MiB or 0.2 s. A connection that still delivers, but less than
                # TRICKLE_BYTES per stall period, is as stuck as a silent one: reconnect from here.
                reported, last_event = done, time.monotonic()
                window_start, window_bytes = last_event, 0
                try:
                    for chunk in response.iter_bytes():
                        if done + len(chunk) > part.size:
                            raise _SizeMismatch("it sent more")
                        writer.write(chunk)
                        done += len(chunk)
                        window_bytes += len(chunk)
                        now = time.monotonic()
                        if now - window_start >= stall_timeout():
                            if window_bytes < TRICKLE_BYTES:
                                raise _Retry(f"the connection slowed to {window_bytes / (now - window_start):,.0f} "
                                             "bytes/s", 0.0)
                            window_start, window_bytes = now, 0
                        if done - reported >= CHUNK or now - last_event >= 0.2 or done == part.size:
                            attempt = 0
                            reported, last_event = done, now
                            speed = rate.add(done)
                            yield DownloadEvent("downloading", part.path, done, part.size, speed,
                                                (part.size - done) / speed if speed > 0 else None)
                        if cancel is not None and cancel.is_set():
                            break
                finally:
                    try:
                        writer.close()
                    except OSError as exc:
                        raise _disk_full(exc) from None
        except _SizeMismatch as exc:  # raised inside, handled here: the writer has closed the file by now
            raise _size_mismatch(part, part_file, str(exc)) from None
        except _Retry as exc:
            attempt = _backoff(attempt, part, exc.wait, str(exc))
            yield DownloadEvent("retrying", part.path, done, part.size, message=str(exc))
        except OSError as exc:
            if getattr(exc, "errno", None) == 28:
                raise _disk_full(exc) from None
            raise
        except QuantDeskError:
            raise
        except Exception as exc:  # transport errors of the HTTP library: dropped, stalled, refused
            if not isinstance(exc, http.TransportError):
                raise
            attempt = _backoff(attempt, part, None, f"{type(exc).__name__}")
            yield DownloadEvent("retrying", part.path, done, part.size,
                                message=f"connection lost ({type(exc).__name__})")
    yield DownloadEvent("verifying", part.path, done, part.size)
    actual = sha.hexdigest()
    if done != part.size or actual != part.sha256.lower():
        part_file.unlink(missing_ok=True)
        raise ChecksumMismatch(f"checksum mismatch for {part.path}: expected sha256 {part.sha256}, got {actual} "
                               f"({done:,} of {part.size:,} bytes); the file was deleted and nothing was added "
                               "to the library — try again, or pick another file",
                               file=part.path, expected=part.sha256, actual=actual, received=done, size=part.size)


def _size_mismatch(part: RepoFilePart, part_file: Path, what: str) -> ChecksumMismatch:
    """The hub serves a file of another size than it lists: as final as a wrong hash (resuming cannot
    fix it), so the partial file goes and the message names the file, the size and the hash expected."""
    part_file.unlink(missing_ok=True)
    return ChecksumMismatch(f"size mismatch for {part.path}: the hub lists {part.size:,} bytes (sha256 "
                            f"{part.sha256}) but {what}; the partial file was deleted and nothing was added to the "
                            "library — the repo may have changed: list its files again, or pick another file",
                            file=part.path, expected=part.sha256, size=part.size)


class _SizeMismatch(Exception):
    pass


class _Retry(Exception):
    def __init__(self, message: str, wait: float | None) -> None:
        super().__init__(message)
        self.wait = wait


def _retry_after(response) -> float | None:
    try:
        return float(response.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _backoff(attempt: int, part: RepoFilePart, wait: float | None, why: str) -> int:
    attempt += 1
    if attempt > MAX_ATTEMPTS:
        raise GaveUp(f"{part.path}: giving up after {MAX_ATTEMPTS} tries ({why}); run the download "
                     "again to resume where it stopped", why=why)
    time.sleep(min(30.0, wait if wait is not None else 0.25 * 2 ** (attempt - 1)))
    return attempt


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


def lock_path(repo_id: str, first_part: str) -> Path:
    return models_dir() / ".partial" / repo_id / (check_repo_path(first_part) + ".lock")
