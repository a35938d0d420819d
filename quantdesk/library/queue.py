"""The download queue: a few downloads at a time, pause/resume/cancel/retry, surviving a restart.

Jobs live in SQLite next to the library. A job that was downloading when the app died is queued
again on the next start and resumes from its partial file (the downloader re-hashes it once).
Pause keeps the partial file; cancel removes it. Only verified files reach the library.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantdesk.base import sqlite_db
from quantdesk.base.errors import QuantDeskError
from quantdesk.base.file_lock import FileLock, LockBusy
from quantdesk.base.paths import data_dir
from quantdesk.hub.client import RepoFilePart, RepoGGUF
from quantdesk.library.download import Cancelled, DownloadEvent, download_model, lock_path, partial_path, remove_partial
from quantdesk.library.failure import FailureKind, RecordedFailure, record_failure

STATES = ("queued", "downloading", "verifying", "paused", "failed", "done", "cancelled")
ACTIVE = ("downloading", "verifying")
SCHEMA = """
CREATE TABLE IF NOT EXISTS downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    revision TEXT,
    entry TEXT NOT NULL,            -- JSON of the RepoGGUF: name, quant, parts with sizes and hashes
    state TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL,
    error TEXT,                     -- the message the CLI prints
    model TEXT,                     -- the library name once done
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    failure_kind TEXT,              -- a FailureKind value when failed: what the window says to do
    failure TEXT                    -- JSON of the failure's facts (file, hashes, sizes, status)
);
"""
COLUMNS_ADDED = (("failure_kind", "TEXT"), ("failure", "TEXT"))  # to tables made before they existed


@dataclass
class DownloadJob:
    id: int
    repo: str
    revision: str | None
    entry: RepoGGUF
    state: str
    done: int
    total: int
    error: str | None
    model: str | None
    speed: float = 0.0
    eta: float | None = None
    failure_kind: str | None = None
    failure_details: dict[str, Any] | None = None
    connections: int = 0  # while downloading: connections fetching it (parallel ranges)

    def failure(self) -> RecordedFailure | None:
        """Why it failed, as recorded (None unless failed)."""
        if self.state != "failed":
            return None
        kind = self.failure_kind if self.failure_kind in FailureKind._value2member_map_ else FailureKind.OTHER
        return RecordedFailure(FailureKind(kind), self.failure_details or {}, self.error or "")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "repo": self.repo, "file": self.entry.name, "quant": self.entry.quant,
                "state": self.state, "done": self.done, "total": self.total, "error": self.error,
                "model": self.model, "speed": self.speed, "eta": self.eta, "connections": self.connections,
                "failure_kind": self.failure_kind if self.state == "failed" else None}


def _entry_json(e: RepoGGUF) -> str:
    return json.dumps({"name": e.name, "quant": e.quant,
                       "parts": [{"path": p.path, "size": p.size, "sha256": p.sha256} for p in e.parts]})


def _entry_from(text: str) -> RepoGGUF:
    d = json.loads(text)
    return RepoGGUF(d["name"], d["quant"], [RepoFilePart(p["path"], p["size"], p["sha256"]) for p in d["parts"]])


Listener = Callable[[DownloadJob], None]


class DownloadQueue:
    """Thread-safe; ``listener`` is called from worker threads with the job's new state."""

    def __init__(self, max_concurrent: int = 2, db_path: Path | None = None,
                 listener: Listener | None = None, autostart: bool = True) -> None:
        self.max_concurrent = max(1, max_concurrent)
        self.db_path = db_path or data_dir() / "downloads.db"
        self.listener = listener
        self._lock = threading.RLock()
        self._cancels: dict[int, threading.Event] = {}
        self._why: dict[int, str] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._live: dict[int, tuple[float, float | None, int]] = {}  # speed, eta, connections
        self._closed = False
        self.autostart = autostart
        with self._db() as db:
            db.executescript(SCHEMA)
            have = {row["name"] for row in db.execute("PRAGMA table_info(downloads)")}
            for column, kind in COLUMNS_ADDED:
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE downloads ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as exc:  # another process added it a moment ago
                        if "duplicate column" not in str(exc):
                            raise
            rows = db.execute("SELECT id, repo, entry FROM downloads WHERE state IN ('downloading', 'verifying')")
            for row in rows.fetchall():
                # a crash or quit mid-download: queue it again, the partial file resumes — unless another
                # process (the app, a CLI) is downloading it right now: its lock says so
                if not self._running_elsewhere(row["repo"], _entry_from(row["entry"])):
                    db.execute("UPDATE downloads SET state='queued' WHERE id=?", (row["id"],))
        if autostart:
            self._pump()

    @staticmethod
    def _running_elsewhere(repo: str, entry: RepoGGUF) -> bool:
        try:
            FileLock(lock_path(repo, entry.first), "").release_if_free()
        except LockBusy:
            return True
        except (QuantDeskError, OSError):  # an unusable name or folder: nobody can be writing it
            pass
        return False

    def start(self) -> None:
        """Run queued jobs from now on (a queue made with ``autostart=False`` only lists and edits)."""
        self.autostart = True
        self._pump()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction (committed on success), closed after: see ``sqlite_db``."""
        with closing(sqlite_db.connect(self.db_path)) as db, db:
            yield db

    def set_max_concurrent(self, n: int) -> None:
        """Change the limit now: a higher one starts queued jobs, a lower one lets running jobs finish."""
        self.max_concurrent = max(1, n)
        self._pump()

    def busy(self) -> bool:
        """True while a job is writing, or queued to write, into the models folder."""
        with self._lock:
            return bool(self._threads) or any(j.state == "queued" for j in self.jobs())

    # --- reading -----------------------------------------------------------------------------
    def jobs(self) -> list[DownloadJob]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM downloads ORDER BY id").fetchall()
        return [self._job(r) for r in rows]

    def get(self, job_id: int) -> DownloadJob:
        with self._db() as db:
            row = db.execute("SELECT * FROM downloads WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise QuantDeskError(f"no download with id {job_id}")
        return self._job(row)

    def _job(self, r: sqlite3.Row) -> DownloadJob:
        speed, eta, connections = self._live.get(r["id"], (0.0, None, 0))
        details = json.loads(r["failure"]) if r["failure"] else None
        return DownloadJob(r["id"], r["repo"], r["revision"], _entry_from(r["entry"]), r["state"], r["done"],
                           r["total"], r["error"], r["model"], speed, eta, r["failure_kind"], details, connections)

    # --- commands ----------------------------------------------------------------------------
    def add(self, repo: str, entry: RepoGGUF, revision: str | None = None) -> DownloadJob:
        with self._lock:
            for job in self.jobs():
                if job.repo == repo and job.entry.name == entry.name and job.state not in ("done", "cancelled"):
                    return job  # already queued: one job per file
            now = time.time()
            with self._db() as db:
                cur = db.execute("INSERT INTO downloads (repo, revision, entry, state, total, created_at, updated_at)"
                                 " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                                 (repo, revision, _entry_json(entry), entry.size, now, now))
            job = self.get(int(cur.lastrowid))
        self._notify(job)
        if self.autostart:
            self._pump()
        return job

    def pause(self, job_id: int, wait: bool = True) -> None:
        """Stop, keeping the partial files. ``wait=False`` returns at once (a GUI must not wait for a
        worker stuck in a stalled read or a backoff); the worker records the state when it stops."""
        self._stop(job_id, "paused", wait)

    def cancel(self, job_id: int, wait: bool = True) -> None:
        """Stop and forget: the partial files are removed (by the worker, with ``wait=False``)."""
        self._stop(job_id, "cancelled", wait)

    def resume(self, job_id: int) -> None:
        job = self.get(job_id)
        if job.state not in ("paused", "failed", "cancelled"):
            return
        self._set(job_id, state="queued", error=None, failure_kind=None, failure=None)
        if self.autostart:
            self._pump()

    retry = resume

    def remove(self, job_id: int) -> None:
        """Drop a finished, failed or cancelled job from the list."""
        job = self.get(job_id)
        if job.state in ACTIVE or job.state == "queued":
            raise QuantDeskError("stop the download before removing it from the list")
        with self._db() as db:
            db.execute("DELETE FROM downloads WHERE id=?", (job_id,))

    def _stop(self, job_id: int, state: str, wait: bool = True) -> threading.Thread | None:
        with self._lock:
            job = self.get(job_id)
            event = self._cancels.get(job_id)
            if event is not None:  # running: the worker records the state when it stops
                self._why[job_id] = state
                event.set()
                thread = self._threads.get(job_id)
            else:
                thread = None
                if job.state in ACTIVE and self._running_elsewhere(job.repo, job.entry):
                    raise QuantDeskError(f"download #{job_id} is running in another QuantDesk window or command",
                                         next_step="Pause or cancel it there; this one cannot reach it.")
                # (an active row that nobody is running is left over from a writer that stopped)
                if job.state in ("queued", "paused", "failed", *ACTIVE) or state == "cancelled":
                    self._set(job_id, state=state)
                    if state == "cancelled":
                        self._remove_partials(job)
        if thread is not None and wait:
            thread.join(timeout=30)
        return thread

    def _remove_partials(self, job: DownloadJob) -> None:
        for part in job.entry.parts:
            remove_partial(partial_path(job.repo, part.path))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is running or queued (for the CLI and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not self.busy():
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def shutdown(self) -> None:
        """Stop what runs (partials kept) and leave it queued, so the next start resumes it."""
        self._closed = True
        threads = [t for job_id in list(self._threads) if (t := self._stop(job_id, "queued", wait=False))]
        deadline = time.monotonic() + 30  # all stop together: one stalled read does not delay the others
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- workers -----------------------------------------------------------------------------
    def _pump(self) -> None:
        if self._closed or not self.autostart:
            return
        with self._lock:
            queued = [j for j in self.jobs() if j.state == "queued"]
            for job in queued:
                if len(self._threads) >= self.max_concurrent:
                    break
                event = threading.Event()
                self._cancels[job.id] = event
                self._set(job.id, state="downloading", error=None, failure_kind=None, failure=None)
                thread = threading.Thread(target=self._run, args=(job.id, event), daemon=True,
                                          name=f"download-{job.id}")
                self._threads[job.id] = thread
                thread.start()

    def _run(self, job_id: int, cancel: threading.Event) -> None:
        try:
            job = self.get(job_id)
        except QuantDeskError:  # removed between being started and running: nothing to do
            with self._lock:
                self._threads.pop(job_id, None)
                self._cancels.pop(job_id, None)
            return
        last_write = 0.0
        try:
            results = None
            done_before = 0
            for item in download_model(job.repo, job.entry, job.revision, cancel):
                if not isinstance(item, DownloadEvent):
                    results = item
                    continue
                if item.state == "done":
                    continue
                # per-part events: convert to whole-job progress
                part_index = next((i for i, p in enumerate(job.entry.parts) if p.path == item.file), 0)
                done_before = sum(p.size for p in job.entry.parts[:part_index])
                self._live[job_id] = (item.speed, item.eta, item.connections)
                state = "verifying" if item.state == "verifying" else "downloading"
                now = time.monotonic()
                if now - last_write > 0.25 or state == "verifying":
                    last_write = now
                    self._set(job_id, state=state, done=done_before + item.done,
                              error=item.message if item.state == "retrying" else None)
            assert results is not None
            self._set(job_id, state="verifying", done=job.total)
            from quantdesk.library.index import Library

            files = [{"path": str(r.path), "size": r.size, "sha256": r.sha256} for r in results]
            model = Library().add(files=files, source="downloaded", repo=job.repo, quant=job.entry.quant)
            self._set(job_id, state="done", done=job.total, model=model.name)
        except LockBusy as exc:
            # another writer has this file: a `quantdesk download`, a quantize job fetching its source, or
            # another process's queue (which overwrites this with its own progress on its next write)
            self._failed(job_id, exc)
        except Cancelled:
            why = self._why.pop(job_id, "paused")
            self._set(job_id, state=why)
            if why == "cancelled":
                self._remove_partials(job)
        except Exception as exc:  # noqa: BLE001 - a worker never dies silently
            self._failed(job_id, exc)
        finally:
            with self._lock:
                self._threads.pop(job_id, None)
                self._cancels.pop(job_id, None)
                self._live.pop(job_id, None)
            self._pump()

    def _failed(self, job_id: int, exc: Exception) -> None:
        failure = record_failure(exc)
        self._set(job_id, state="failed", error=failure.text, failure_kind=failure.kind.value,
                  failure=json.dumps(failure.details, default=str))

    def _set(self, job_id: int, **fields: Any) -> None:
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(fields["state"])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._db() as db:
            db.execute(f"UPDATE downloads SET {sets}, updated_at=? WHERE id=?", (*fields.values(), time.time(), job_id))
        self._notify(self.get(job_id))

    def _notify(self, job: DownloadJob) -> None:
        if self.listener is not None:
            try:
                self.listener(job)
            except Exception:  # noqa: BLE001, S110 - a listener's bug must not stop a download
                pass
