"""One file's bytes from the hub: parallel Range requests written in place, hashed in file order.

A single HTTP stream is what CDNs throttle, so a large file is cut into blocks handed out in file
order to several connections. Each connection writes its bytes at their offset; a hashing thread
follows the contiguous prefix, so the SHA-256 is ready moments after the last byte arrives. The
number of connections adapts: it doubles while the total rate keeps growing, halves after an
error or a 429, and never exceeds ``MAX_CONNECTIONS``. The ranges on disk are saved beside the
file (``byte_ranges``) after each flush, so a killed download fetches only what is missing.

Small files, and servers that ignore ``Range``, take one stream. A failure counts against the
attempt limit only when no new bytes arrived since the previous one, so a server that drops the
connection at the same place every time (and one that restarts every resume from byte 0) ends in
one clear sentence instead of looping.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from quantdesk.base.errors import QuantDeskError
from quantdesk.hub.client import RepoFilePart
from quantdesk.library.byte_ranges import ByteRanges, fdatasync, remove_partial, save_ranges, state_path
from quantdesk.library.failure import AccessDenied, ChecksumMismatch, DiskFilled, GaveUp, NotOnHub

PARALLEL_MIN = 32 << 20          # files below this take one stream (a few seconds even on a slow link)
BLOCK_MIN, BLOCK_MAX = 4 << 20, 64 << 20
START_CONNECTIONS, MAX_CONNECTIONS = 4, 16
GROWTH = 1.15                    # a doubling must raise the total rate by this factor to double again
ADAPT_EVERY = 0.5                # seconds between rate checks
SAVE_EVERY = 1.0                 # seconds between flushing the file and saving its ranges
TRICKLE_BYTES = 64 << 10         # fewer than this in a whole stall period is a stall
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
EVENT_BYTES, EVENT_SECONDS = 1 << 20, 0.2


class Cancelled(QuantDeskError):
    pass


@dataclass(frozen=True)
class DownloadEvent:
    state: str  # queued | downloading | verifying | done | failed | paused | retrying
    file: str
    done: int
    total: int
    speed: float = 0.0  # bytes/s, rolling over the last few seconds
    eta: float | None = None
    message: str = ""
    connections: int = 0  # connections fetching this file right now


class Retry(Exception):
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class SizeMismatch(Exception):
    pass


class _NoRanges(Exception):
    """The server answered a Range request with the whole file."""


class _Rate:
    """Rolling transfer speed over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.window = window

    def add(self, total: int) -> float:
        now = time.monotonic()
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        t0, b0 = self.samples[0]
        return (total - b0) / (now - t0) if now > t0 else 0.0


def disk_full(exc: OSError) -> DiskFilled:
    return DiskFilled(f"the disk filled up during the download ({exc.strerror}); the partial file is kept "
                      "to resume once space is freed", filled=True)


def size_mismatch(part: RepoFilePart, part_file: Path, what: str) -> ChecksumMismatch:
    """The hub serves a file of another size than it lists: as final as a wrong hash (resuming cannot
    fix it), so the partial file goes and the message names the file, the size and the hash expected."""
    remove_partial(part_file)
    return ChecksumMismatch(f"size mismatch for {part.path}: the hub lists {part.size:,} bytes (sha256 "
                            f"{part.sha256}) but {what}; the partial file was deleted and nothing was added to the "
                            "library — the repo may have changed: list its files again, or pick another file",
                            file=part.path, expected=part.sha256, size=part.size)


def _retry_after(response: Any) -> float | None:
    try:
        return float(response.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def block_size(size: int) -> int:
    """About 64 blocks a file, 4–64 MiB each: enough to spread over connections, few requests."""
    return max(BLOCK_MIN, min(BLOCK_MAX, size // 64))


class _Claim:
    """The bytes one connection is fetching: ``[pos, end)``, ``pos`` moving as they arrive and ``end``
    pulled in when an idle connection takes over the second half."""

    def __init__(self, start: int, end: int, open_ended: bool) -> None:
        self.pos, self.end, self.open_ended = start, end, open_ended


@dataclass
class _Worker:
    thread: threading.Thread
    write_lock: threading.Lock       # held around each write; the controller takes it to know writes stopped
    stop: threading.Event            # this generation's stop: a restart never un-stops an old connection
    generation: int
    claim: _Claim | None = None
    response: Any = None             # the response being read, so a halt can cut its connection


def _cut(response: Any) -> None:
    """Shut the response's socket down: wakes a read blocked on a silent server at once (closing the
    socket from another thread would not), so Pause and Cancel stop every connection now."""
    try:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, KeyError, OSError):
        pass


class Transfer:
    """Fetch the missing ranges of ``part`` into ``part_file``; ``sha`` already holds the first
    ``hashed`` bytes. Iterate :meth:`run` for events; afterwards ``sha`` covers the whole file."""

    def __init__(self, *, repo_id: str, part: RepoFilePart, part_file: Path, url: str, headers: dict[str, str],
                 session: Any, http: Any, ranges: ByteRanges, sha: "hashlib._Hash", hashed: int,
                 cancel: threading.Event | None, max_attempts: int, stall_timeout: float) -> None:
        self.repo_id, self.part, self.part_file = repo_id, part, part_file
        self.url, self.headers, self.session, self.http = url, headers, session, http
        self.ranges, self.sha, self.hashed = ranges, sha, hashed
        self.cancel = cancel or threading.Event()
        self.max_attempts, self.stall_timeout = max_attempts, stall_timeout
        self.size = part.size
        self.single = self.size < PARALLEL_MIN   # one stream: written in order, no ranges file
        self.no_ranges = False                   # the server ignores Range: every try starts at byte 0
        self.cdn_url: str | None = None          # where the hub redirected a block request, reused
        self.timeout = http.Timeout(connect=15.0, read=stall_timeout, write=30.0, pool=15.0)
        self.lock = threading.Lock()             # ranges, the block list, the workers, their claims
        self.todo: collections.deque[tuple[int, int]] = collections.deque()
        self.workers: dict[int, _Worker] = {}
        self.messages: queue.Queue[tuple[int, int, BaseException | None]] = queue.Queue()
        self.generation = 0
        self.stop = threading.Event()
        self.target = 1
        self.received = 0                        # bytes written by this transfer (for the rate)
        self.connections_used = 0
        self._next_id = 0
        self._hasher: tuple[threading.Thread, threading.Event] | None = None

    # ---------------------------------------------------------------- the controller (caller's thread)

    def run(self) -> Iterator[DownloadEvent]:
        part, size = self.part, self.size
        with self.part_file.open("ab"):
            pass
        self._plan_blocks()
        if not self.single:
            save_ranges(self.part_file, self.ranges)  # before any byte lands out of order
        self.target = 1 if self.single else min(START_CONNECTIONS, len(self.todo))
        self._start_hasher()
        rate, attempt, mark = _Rate(), 0, self._done()
        backoff_until, grow_after, growing = 0.0, 0.0, not self.single
        best_rate: float | None = None
        window_at, window_bytes = time.perf_counter(), 0
        saved_at = time.perf_counter()
        reported, event_at = mark, time.monotonic()
        try:
            while True:
                if self.cancel.is_set():
                    raise Cancelled(f"{part.path}: paused at {self._done():,} of {size:,} bytes")
                if time.perf_counter() >= backoff_until:
                    self._spawn()
                try:
                    wid, generation, exc = self.messages.get(timeout=0.1)
                except queue.Empty:
                    wid, generation, exc = -1, self.generation, None
                if generation != self.generation:
                    continue  # a connection stopped by a restart
                if wid >= 0:
                    self._reap(wid)
                if isinstance(exc, _NoRanges):
                    self._restart_without_ranges()
                elif exc is not None:
                    failure = self._classify(exc)  # raises what cannot be retried
                    done = self._done()
                    if time.perf_counter() >= backoff_until:  # the others failing in the same burst count once
                        attempt = 1 if done > mark else attempt + 1
                        mark = max(mark, done)
                        if attempt > self.max_attempts:
                            raise self._gave_up(failure.args[0])
                        wait = failure.wait if failure.wait is not None else 0.25 * 2 ** (attempt - 1)
                        backoff_until = time.perf_counter() + min(30.0, wait)
                        self.target = max(1, self.target // 2)
                        grow_after, best_rate, growing = time.perf_counter() + 5.0, None, not self.single
                        yield DownloadEvent("retrying", part.path, done, size, message=failure.args[0])
                    if self.no_ranges:
                        self._restart_without_ranges()
                done = self._done()
                with self.lock:
                    finished = self.ranges.complete() and not self.workers
                if finished:
                    break
                now = time.perf_counter()
                if now - window_at >= ADAPT_EVERY:
                    window_rate = (self.received - window_bytes) / (now - window_at)
                    if (growing and now >= grow_after and len(self.workers) >= self.target
                            and self.target < MAX_CONNECTIONS):
                        if best_rate is None or window_rate > best_rate * GROWTH:
                            best_rate, self.target = window_rate, min(MAX_CONNECTIONS, self.target * 2)
                        else:
                            growing = False  # the rate stopped growing with more connections
                    window_at, window_bytes = now, self.received
                if not self.single and now - saved_at >= SAVE_EVERY:
                    self._save()
                    saved_at = time.perf_counter()
                mono = time.monotonic()
                if done - reported >= EVENT_BYTES or mono - event_at >= EVENT_SECONDS:
                    reported, event_at = done, mono
                    speed = rate.add(done)
                    yield DownloadEvent("downloading", part.path, done, size, speed,
                                        (size - done) / speed if speed > 0 else None,
                                        connections=len(self.workers))
            speed = rate.add(size)
            yield DownloadEvent("downloading", part.path, size, size, speed, 0.0)
            # Every byte is in; the hash follows the prefix closely, so this wait is short.
            while self._hasher is not None and self._hasher[0].is_alive():
                self._hasher[0].join(0.2)
                if self._hasher[0].is_alive():
                    yield DownloadEvent("verifying", part.path, self.hashed, size, message="checking the checksum")
        except BaseException:
            self._halt()
            self._save()
            raise
        self._halt()
        with self.part_file.open("rb+") as fh:
            os.fsync(fh.fileno())
        state_path(self.part_file).unlink(missing_ok=True)

    def _done(self) -> int:
        with self.lock:
            return self.ranges.done()

    def _plan_blocks(self) -> None:
        """Cut what is missing into blocks, in file order (one open-ended block for a single stream)."""
        self.todo.clear()
        step = self.size if self.single else block_size(self.size)
        for start, end in self.ranges.missing():
            for pos in range(start, end, step):
                self.todo.append((pos, min(end, pos + step)))

    def _spawn(self) -> None:
        """Start connections up to the target; with no block left, an idle one takes the second half
        of the largest claim still running (so the last blocks do not wait on one slow connection)."""
        with self.lock:
            while len(self.workers) < self.target:
                if not self.todo and not self._split_largest_claim():
                    return
                wid = self._next_id
                self._next_id += 1
                worker = _Worker(threading.Thread(target=self._work, args=(wid,), daemon=True, name=f"download-{wid}"),
                                 threading.Lock(), self.stop, self.generation)
                self.workers[wid] = worker
                self.connections_used += 1
                worker.thread.start()

    def _split_largest_claim(self) -> bool:
        if self.single:
            return False
        claims = [w.claim for w in self.workers.values() if w.claim is not None]
        largest = max(claims, key=lambda c: c.end - c.pos, default=None)
        if largest is None or largest.end - largest.pos < 2 * BLOCK_MIN:
            return False
        middle = largest.pos + (largest.end - largest.pos) // 2
        self.todo.append((middle, largest.end))
        largest.end = middle
        return True

    def _reap(self, wid: int) -> None:
        with self.lock:
            worker = self.workers.pop(wid, None)
        if worker is not None:
            worker.thread.join(1.0)

    def _classify(self, exc: BaseException) -> Retry:
        """A retryable failure as a ``Retry``; anything else stops every connection and is raised."""
        if isinstance(exc, Retry):
            return exc
        if isinstance(exc, self.http.TransportError):
            return Retry(f"connection lost ({type(exc).__name__})")
        self._halt()
        if isinstance(exc, SizeMismatch):
            raise size_mismatch(self.part, self.part_file, str(exc)) from None
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise disk_full(exc) from None
        raise exc

    def _gave_up(self, why: str) -> GaveUp:
        if self.no_ranges:
            return GaveUp(f"{self.part.path}: giving up after {self.max_attempts} tries: the server ignores resume "
                          f"requests (Range), so every try starts from the first byte, and it kept dropping the "
                          f"connection ({why}); the partial file is kept — try again later or on another network",
                          why=f"the server cannot resume, and {why}")
        return GaveUp(f"{self.part.path}: giving up after {self.max_attempts} tries without progress ({why}); "
                      "run the download again to resume where it stopped", why=why)

    def _restart_without_ranges(self) -> None:
        """The server sends whole files only: one stream from byte 0, the file and its hash start over."""
        self._halt()
        self.no_ranges, self.single, self.target = True, True, 1
        with self.part_file.open("r+b") as fh:
            fh.truncate(0)
        state_path(self.part_file).unlink(missing_ok=True)
        with self.lock:
            self.ranges = ByteRanges(self.size)
            self._plan_blocks()
        self.sha, self.hashed = hashlib.sha256(), 0
        self._start_hasher()

    def _halt(self) -> None:
        """Stop every connection and the hasher; once this returns, no connection writes again, and
        whatever a stopped connection reports later is ignored (its generation is over)."""
        with self.lock:
            self.stop.set()
            workers = list(self.workers.values())
            self.workers.clear()
            self.generation += 1
            self.stop = threading.Event()
            for worker in workers:
                if worker.claim is not None and worker.claim.pos < worker.claim.end:
                    self.todo.appendleft((worker.claim.pos, worker.claim.end))
        for worker in workers:
            with worker.write_lock:  # a connection checks its stop under this lock before each write
                pass
            if worker.response is not None:
                _cut(worker.response)
        if self._hasher is not None:
            thread, hasher_stop = self._hasher
            hasher_stop.set()
            thread.join()
            self._hasher = None

    def _save(self) -> None:
        """Flush the file, then record the ranges that were on disk before the flush."""
        if self.single:
            return
        with self.lock:
            snapshot = self.ranges.copy()
        try:
            with self.part_file.open("rb+") as fh:
                fdatasync(fh.fileno())
            save_ranges(self.part_file, snapshot)
        except OSError:
            pass  # the file is gone (deleted after a mismatch) or unwritable: the next run starts from what is there

    # ---------------------------------------------------------------- the hasher

    def _start_hasher(self) -> None:
        hasher_stop = threading.Event()
        thread = threading.Thread(target=self._hash_in_order, args=(hasher_stop,), daemon=True, name="download-sha")
        self._hasher = (thread, hasher_stop)
        thread.start()

    def _hash_in_order(self, hasher_stop: threading.Event) -> None:
        """Hash the file as its contiguous prefix grows, reading back what the connections wrote
        (from the page cache: cheaper than keeping out-of-order blocks in memory)."""
        buffer = memoryview(bytearray(8 << 20))
        with self.part_file.open("rb", buffering=0) as fh:
            while self.hashed < self.size and not hasher_stop.is_set():
                with self.lock:
                    prefix = self.ranges.prefix()
                if prefix <= self.hashed:
                    hasher_stop.wait(0.005)
                    continue
                fh.seek(self.hashed)
                got = fh.readinto(buffer[: min(len(buffer), prefix - self.hashed)])
                if not got:
                    hasher_stop.wait(0.005)
                    continue
                self.sha.update(buffer[:got])
                self.hashed += got

    # ---------------------------------------------------------------- the connections (worker threads)

    def _claim(self, worker: _Worker) -> _Claim | None:
        with self.lock:
            worker.claim = None
            if worker.stop.is_set() or not self.todo or len(self.workers) > self.target:
                return None
            start, end = self.todo.popleft()
            worker.claim = _Claim(start, end, self.single)
            return worker.claim

    def _work(self, wid: int) -> None:
        with self.lock:
            worker = self.workers[wid]
        failure: BaseException | None = None
        try:
            with self.part_file.open("r+b", buffering=0) as fh:
                while (claim := self._claim(worker)) is not None:
                    while claim.pos < claim.end and not worker.stop.is_set():
                        before = claim.pos
                        try:
                            self._fetch(claim, fh, worker)
                        finally:
                            worker.response = None
                        if claim.pos == before and not worker.stop.is_set():
                            raise Retry("the connection ended early")
        except BaseException as exc:  # noqa: BLE001 - handed to the controller
            failure = exc
            with self.lock:
                claim = worker.claim
                if claim is not None and claim.pos < claim.end and not worker.stop.is_set():
                    self.todo.appendleft((claim.pos, claim.end))  # back first: the hash waits on it
                worker.claim = None
        finally:
            self.messages.put((wid, worker.generation, failure))

    def _request(self, claim: _Claim) -> tuple[str, dict[str, str], bool]:
        headers = dict(self.headers)
        if claim.open_ended:
            if claim.pos:
                headers["Range"] = f"bytes={claim.pos}-"
        else:
            headers["Range"] = f"bytes={claim.pos}-{claim.end - 1}"
        url = self.cdn_url
        if url is None:
            return self.url, headers, False
        if urlsplit(url).netloc != urlsplit(self.url).netloc:
            for key in [k for k in headers if k.lower() == "authorization"]:
                del headers[key]  # a signed CDN link carries its own credentials
        return url, headers, True

    def _fetch(self, claim: _Claim, fh: Any, worker: _Worker) -> None:
        url, headers, from_cdn = self._request(claim)
        with self.session.stream("GET", url, headers=headers, follow_redirects=True,
                                 timeout=self.timeout) as response:
            worker.response = response
            self._check_status(response, claim, from_cdn)
            if not claim.open_ended and not from_cdn and str(response.url) != self.url:
                self.cdn_url = str(response.url)
            if response.status_code == 200 and (claim.pos or not claim.open_ended):
                raise _NoRanges()
            window_start, window_bytes = time.monotonic(), 0
            for chunk in response.iter_bytes():
                pos = claim.pos
                with self.lock:
                    end = claim.end
                n = len(chunk)
                if pos + n > end:
                    if claim.open_ended:
                        raise SizeMismatch("it sent more")
                    chunk, n = chunk[: end - pos], end - pos
                with worker.write_lock:
                    if worker.stop.is_set():
                        return
                    fh.seek(pos)
                    view = memoryview(chunk)
                    while view:
                        view = view[fh.write(view):]
                with self.lock:
                    self.ranges.add(pos, pos + n)
                    self.received += n
                    claim.pos = pos + n
                    if claim.pos >= claim.end:
                        return
                window_bytes += n
                now = time.monotonic()
                if now - window_start >= self.stall_timeout:
                    if window_bytes < TRICKLE_BYTES:
                        raise Retry(f"the connection slowed to {window_bytes / (now - window_start):,.0f} bytes/s", 0.0)
                    window_start, window_bytes = now, 0

    def _check_status(self, response: Any, claim: _Claim, from_cdn: bool) -> None:
        status = response.status_code
        if status in RETRY_STATUSES:
            raise Retry(f"the hub answered {status}", _retry_after(response))
        if from_cdn and status in (401, 403, 404, 410):
            self.cdn_url = None  # a signed link expired: ask the hub for a new one
            raise Retry(f"the download link expired ({status})", 0.0)
        if status == 416:  # asked for bytes from `pos` on: the hub's file is shorter than it says
            raise SizeMismatch(f"it refused bytes from {claim.pos:,} on")
        if status in (401, 403):
            raise AccessDenied(f"{self.repo_id}: access denied ({status}); the repo may be gated — "
                               "accept its terms on the hub and set a token (HF_TOKEN or Settings)", status=status)
        if status == 404:
            raise NotOnHub(f"{self.repo_id}/{self.part.path}: not found on the hub")
        if status >= 400:
            raise QuantDeskError(f"{self.repo_id}/{self.part.path}: the hub answered {status}")
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            total = content_range.rpartition("/")[2]
            if total.isdigit() and int(total) != self.size:
                raise SizeMismatch(f"it serves {int(total):,} bytes")
            first = content_range.partition(" ")[2].partition("-")[0]
            if first.isdigit() and int(first) != claim.pos:
                raise Retry(f"the server sent bytes from {int(first):,} instead of {claim.pos:,}")


def hash_existing(path: Path, sha: "hashlib._Hash", limit: int,
                  cancelled: Callable[[], bool]) -> Iterator[int]:
    """Hash the first ``limit`` bytes already on disk into ``sha``, yielding the bytes hashed about 4
    times a second (a resumed multi-GB file takes a while: the user sees it move, and may pause it)."""
    done, last = 0, time.monotonic()
    if limit <= 0 or not path.exists():
        return
    with path.open("rb") as fh:
        while done < limit and (chunk := fh.read(min(8 << 20, limit - done))):
            sha.update(chunk)
            done += len(chunk)
            if time.monotonic() - last > 0.25:
                last = time.monotonic()
                if cancelled():
                    raise Cancelled(f"{path.name}: paused while checking the part already downloaded")
                yield done
    yield done
