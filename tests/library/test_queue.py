"""The download queue against the fake hub: concurrency limit, pause/resume, cancel, failure, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from quantdesk.hub.client import list_repo_ggufs
from quantdesk.library.download import partial_path
from quantdesk.library.index import Library
from quantdesk.library.queue import DownloadQueue
from tests.support import gguf_factory as factory

REPO = "someorg/Queue-Test-GGUF"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("queuefiles")
    return {f"Queue-Test-{q}.gguf": factory.write_model(d / f"{q}.gguf", factory.SMALL, "F16", seed=i)
            for i, q in enumerate(["Q8_0", "Q6_K", "Q4_K_M"])}  # ~10 MB each, real loadable files


@pytest.fixture
def hub(fake_hub, files):
    fake_hub.add_repo(REPO, files)
    return fake_hub


def entry(name: str):
    return next(e for e in list_repo_ggufs(REPO) if e.name == name)


def until(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_concurrency_limit_and_everything_verified_into_the_library(hub, files):
    for name in files:
        hub.set_fault(REPO, name, bytes_per_second=8_000_000, times=1)
    seen_running: list[int] = []
    lock = threading.Lock()

    def listen(job):
        with lock:
            seen_running.append(sum(1 for j in q.jobs() if j.state == "downloading"))

    q = DownloadQueue(max_concurrent=2, listener=listen)
    jobs = [q.add(REPO, entry(name)) for name in files]
    assert q.add(REPO, entry(next(iter(files)))).id == jobs[0].id  # one job per file
    assert q.wait(120)
    assert max(seen_running) == 2
    states = {j.entry.name: (j.state, j.done == j.total, j.model) for j in q.jobs()}
    assert all(s == "done" and full and model for s, full, model in states.values())
    assert {m.repo for m in Library().models()} == {REPO} and len(Library().models()) == 3


def test_pause_keeps_the_partial_and_resume_fetches_only_the_rest(hub, files):
    name = "Queue-Test-Q8_0.gguf"
    size = hub.file(REPO, name).size
    hub.set_fault(REPO, name, bytes_per_second=2_000_000, times=1)
    q = DownloadQueue(max_concurrent=1)
    job = q.add(REPO, entry(name))
    until(lambda: q.get(job.id).done > 1_000_000)
    q.pause(job.id)
    paused = q.get(job.id)
    have = partial_path(REPO, name).stat().st_size
    assert paused.state == "paused" and 0 < have < size
    hub.clear_requests()
    q.resume(job.id)
    assert q.wait(60) and q.get(job.id).state == "done"
    gets = [r for r in hub.requests_for(REPO, name) if r.method == "GET" and r.server == "cdn" and r.body_bytes]
    assert gets and gets[0].headers.get("Range", "").startswith(f"bytes={have}-")
    assert sum(r.body_bytes for r in gets) == size - have
    assert Library().verify(q.get(job.id).model)[1] == []


def test_pause_without_waiting_returns_while_the_worker_is_stuck_in_a_stalled_read(hub, monkeypatch):
    """What the GUI relies on: pause(wait=False) never waits for the worker; the state follows."""
    name = "Queue-Test-Q8_0.gguf"
    monkeypatch.setenv("QUANTDESK_STALL_TIMEOUT", "5")
    stall_at = 3 << 20  # whole 1 MiB chunks, so the reader has them all before the stall
    hub.set_fault(REPO, name, stall_after_bytes=stall_at, stall_seconds=60, times=1)
    q = DownloadQueue(max_concurrent=1)
    job = q.add(REPO, entry(name))
    part = partial_path(REPO, name)
    until(lambda: part.exists() and part.stat().st_size >= stall_at)  # everything before the stall is written
    time.sleep(0.5)  # and the reader is waiting in the stalled read
    q.pause(job.id, wait=False)
    assert q.get(job.id).state == "downloading"  # the worker notices only when its read times out
    until(lambda: q.get(job.id).state == "paused")
    assert part.stat().st_size == stall_at
    q.resume(job.id)
    assert q.wait(60) and q.get(job.id).state == "done"
    assert Library().verify(q.get(job.id).model)[1] == []


def test_cancel_removes_the_partial_and_nothing_reaches_the_library(hub):
    name = "Queue-Test-Q6_K.gguf"
    hub.set_fault(REPO, name, bytes_per_second=1_000_000, times=1)
    q = DownloadQueue()
    job = q.add(REPO, entry(name))
    until(lambda: q.get(job.id).done > 200_000)
    q.cancel(job.id)
    assert q.get(job.id).state == "cancelled"
    assert not partial_path(REPO, name).exists() and Library().models() == []
    q.retry(job.id)  # and a cancelled job can start over
    assert q.wait(60) and q.get(job.id).state == "done"


def test_corrupt_download_fails_with_the_reason_and_can_be_retried(hub):
    name = "Queue-Test-Q4_K_M.gguf"
    hub.set_fault(REPO, name, corrupt_byte_at=12345, times=1)
    q = DownloadQueue()
    job = q.add(REPO, entry(name))
    assert q.wait(60)
    failed = q.get(job.id)
    assert failed.state == "failed" and "sha256" in failed.error.lower() and Library().models() == []
    # the kind and the facts are stored as data, in the table too (a new process reads them back)
    assert failed.failure_kind == "checksum" and failed.to_json()["failure_kind"] == "checksum"
    again = DownloadQueue(autostart=False).get(job.id).failure()
    assert again.kind == "checksum" and again.details["expected"] == entry(name).parts[0].sha256
    q.retry(job.id)
    assert q.wait(60) and q.get(job.id).state == "done" and q.get(job.id).failure_kind is None


def test_a_killed_app_resumes_its_queue_on_the_next_start(hub, _isolated_home):
    name = "Queue-Test-Q8_0.gguf"
    size = hub.file(REPO, name).size
    hub.set_fault(REPO, name, bytes_per_second=2_000_000, times=1)
    script = (
        "import sys, time\n"
        "from quantdesk.library.queue import DownloadQueue\n"
        "from quantdesk.hub.client import list_repo_ggufs\n"
        f"e = next(x for x in list_repo_ggufs({REPO!r}) if x.name == {name!r})\n"
        "q = DownloadQueue(max_concurrent=1)\n"
        "job = q.add(" f"{REPO!r}" ", e)\n"
        "while q.get(job.id).done < 1_500_000: time.sleep(0.02)\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    have = partial_path(REPO, name).stat().st_size
    assert 0 < have < size
    hub.clear_requests()
    q = DownloadQueue()  # the next start
    assert q.wait(60)
    (job,) = q.jobs()
    assert job.state == "done" and Library().verify(job.model)[1] == []
    served = sum(r.body_bytes for r in hub.requests_for(REPO, name) if r.method == "GET" and r.server == "cdn")
    assert served == size - have


def test_cli_queue_add_run_and_list(hub):
    from tests.cli.test_cli import run_cli

    out = run_cli("downloads", "add", "--repo", REPO, "--quant", "Q6_K", "--now", "--json")
    assert out.returncode == 0, out.stderr
    (job,) = __import__("json").loads(out.stdout)
    assert job["state"] == "done" and job["model"] and job["done"] == job["total"]
    listed = run_cli("downloads")
    assert "done" in listed.stdout and "Queue-Test-Q6_K.gguf" in listed.stdout
    assert run_cli("downloads", "rm", str(job["id"])).returncode == 0
    assert "No downloads" in run_cli("downloads").stderr
    assert run_cli("downloads", "pause").returncode == 1


def test_a_resumed_part_is_rehashed_with_progress_and_only_the_rest_is_fetched(hub, files, monkeypatch):
    from quantdesk.library import transfer as downloader  # where the clock is read
    from quantdesk.library.download import download_part

    name = "Queue-Test-Q6_K.gguf"
    e = entry(name)
    data = files[name].read_bytes()
    part = partial_path(REPO, name)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[: len(data) // 2])
    ticks = iter(range(0, 10**6, 1))  # every chunk looks 1 s later: each one reports progress
    monkeypatch.setattr(downloader.time, "monotonic", lambda: float(next(ticks)))
    events = list(download_part(REPO, e.parts[0]))
    checking = [ev for ev in events if ev.state == "verifying" and ev.message]
    assert checking and checking[-1].done == len(data) // 2
    assert [ev.done for ev in checking] == sorted(ev.done for ev in checking)
    assert hub.bytes_served.get((REPO, name), 0) == len(data) - len(data) // 2
    assert part.read_bytes() == data


def test_pausing_while_the_resumed_part_is_rehashed_stops_there(hub, files, monkeypatch):
    from quantdesk.library import transfer as downloader  # where the clock is read
    from quantdesk.library.download import Cancelled, download_part

    name = "Queue-Test-Q8_0.gguf"
    data = files[name].read_bytes()
    part = partial_path(REPO, name)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[: len(data) // 2])
    ticks = iter(range(0, 10**6, 1))
    monkeypatch.setattr(downloader.time, "monotonic", lambda: float(next(ticks)))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        list(download_part(REPO, entry(name).parts[0], cancel=cancel))
    assert part.stat().st_size == len(data) // 2 and hub.bytes_served.get((REPO, name), 0) == 0


def test_a_file_another_writer_holds_fails_with_the_reason_and_retries_once_free(hub, tmp_path):
    from quantdesk.base.file_lock import FileLock
    from quantdesk.library.download import lock_path

    e = entry("Queue-Test-Q8_0.gguf")
    holder = FileLock(lock_path(REPO, e.first), "a download of it")
    holder.acquire()  # e.g. `quantdesk download` of the same file in a terminal
    q = DownloadQueue(db_path=tmp_path / "q.db")
    try:
        job = q.add(REPO, e)
        until(lambda: q.get(job.id).state == "failed", timeout=30)
        assert "already in progress" in q.get(job.id).error and q.get(job.id).failure_kind == "busy"
        holder.release()
        q.resume(job.id)
        until(lambda: q.get(job.id).state == "done", timeout=60)
    finally:
        holder.release()
        q.shutdown()


def test_a_stale_active_row_nobody_runs_can_be_paused_and_cancelled(hub, tmp_path):
    import sqlite3

    q = DownloadQueue(db_path=tmp_path / "q.db", autostart=False)
    job = q.add(REPO, entry("Queue-Test-Q6_K.gguf"))
    with sqlite3.connect(tmp_path / "q.db") as db:  # as if a writer stopped without saying so
        db.execute("UPDATE downloads SET state='downloading' WHERE id=?", (job.id,))
    q.pause(job.id)
    assert q.get(job.id).state == "paused"
    with sqlite3.connect(tmp_path / "q.db") as db:
        db.execute("UPDATE downloads SET state='downloading' WHERE id=?", (job.id,))
    q.cancel(job.id)
    assert q.get(job.id).state == "cancelled"


def test_a_queue_made_before_failure_kinds_existed_gains_the_columns_and_keeps_its_jobs(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript("""
        CREATE TABLE downloads (id INTEGER PRIMARY KEY AUTOINCREMENT, repo TEXT NOT NULL, revision TEXT,
            entry TEXT NOT NULL, state TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL,
            error TEXT, model TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
        INSERT INTO downloads (repo, entry, state, total, error, created_at, updated_at) VALUES
            ('a/b', '{"name": "m.gguf", "quant": "Q4_K_M", "parts": [{"path": "m.gguf", "size": 5, "sha256": "ab"}]}',
             'failed', 5, 'the hub answered 500', 0, 0);
    """)
    old.commit()
    old.close()
    q = DownloadQueue(db_path=tmp_path / "old.db", autostart=False)
    (job,) = q.jobs()
    assert job.state == "failed" and job.failure_kind is None
    assert job.failure().kind == "other" and job.failure().text == "the hub answered 500"  # told as it was recorded
    assert DownloadQueue(db_path=tmp_path / "old.db", autostart=False).jobs()[0].id == job.id  # a second open is fine
