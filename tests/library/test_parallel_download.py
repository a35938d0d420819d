"""Large files over parallel Range requests against the fake hub: every fault the one-stream path
survives, plus a drop in one of N connections, a kill with several ranges in flight, a server that
ignores Range, and connections that grow while a throttled server allows more."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantdesk.hub.client import list_repo_ggufs
from quantdesk.library.byte_ranges import ByteRanges, state_path
from quantdesk.library.download import download_model, partial_path
from quantdesk.library.transfer import PARALLEL_MIN, START_CONNECTIONS, DownloadEvent
from tests.support import gguf_factory as factory

REPO = "someorg/Big-Chat-GGUF"
NAME = "Big-Chat-F32.gguf"


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = factory.write_model(tmp_path_factory.mktemp("bigfiles") / NAME, factory.SMALL, "F32", seed=11)
    assert path.stat().st_size > 1.5 * PARALLEL_MIN  # the parallel path, several blocks
    return path


@pytest.fixture
def hub(fake_hub, big_file):
    fake_hub.add_repo(REPO, {NAME: big_file})
    return fake_hub


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "QUANTDESK_STALL_TIMEOUT": "2"})


def download(hub) -> tuple[list[DownloadEvent], list]:
    (entry,) = list_repo_ggufs(REPO)
    events, results = [], []
    for item in download_model(REPO, entry):
        if isinstance(item, DownloadEvent):
            events.append(item)
        else:
            results = item
    return events, results


def content_gets(hub):
    return [r for r in hub.requests_for(REPO, NAME, "GET") if r.status in (200, 206)]


def covered(ranges: list[str], size: int) -> ByteRanges:
    spans = ByteRanges(size)
    for header in ranges:
        first, _, last = header.removeprefix("bytes=").partition("-")
        spans.add(int(first), int(last) + 1 if last else size)
    return spans


def test_a_large_file_comes_over_several_ranges_written_in_place_and_verified(hub, big_file):
    events, (result,) = download(hub)
    size = big_file.stat().st_size
    gets = content_gets(hub)
    assert len({r.range for r in gets}) >= 4 and all(r.status == 206 for r in gets)
    assert covered([r.range for r in gets], size).complete()
    assert hub.bytes_served[(REPO, NAME)] < size * 1.05  # split blocks overlap by a chunk at most
    assert max(e.connections for e in events) >= 2
    assert result.path.read_bytes() == big_file.read_bytes()
    assert not list(partial_path(REPO, NAME).parent.glob("*.part*"))
    # The first connections follow the hub's redirect; later blocks go straight to the CDN link it gave.
    hub_gets = [r for r in hub.requests_for(REPO, NAME, "GET") if r.server == "hub"]
    assert len(hub_gets) <= START_CONNECTIONS < len(gets)


def test_connections_grow_while_a_throttled_server_allows_more(hub, big_file):
    hub.set_fault(REPO, NAME, bytes_per_second=4_000_000)  # per connection, as CDNs throttle
    events, (result,) = download(hub)
    assert max(e.connections for e in events) >= 8
    assert result.sha256 == hub.file(REPO, NAME).sha256


def test_a_drop_in_one_of_several_connections_is_refetched_from_where_it_stopped(hub, big_file):
    hub.set_fault(REPO, NAME, drop_after_bytes=1_000_000, times=1)
    events, (result,) = download(hub)
    assert any(e.state == "retrying" for e in events)
    size = big_file.stat().st_size
    assert hub.bytes_served[(REPO, NAME)] < size + 2_000_000
    assert result.path.read_bytes() == big_file.read_bytes()


def test_429_and_5xx_on_some_connections_are_retried(hub, big_file):
    hub.set_fault(REPO, NAME, statuses=[429, 503, 500, 429], retry_after=0)
    _events, (result,) = download(hub)
    assert result.path.read_bytes() == big_file.read_bytes()


def test_a_stalled_connection_is_dropped_and_its_block_fetched_again(hub, big_file, monkeypatch):
    monkeypatch.setenv("QUANTDESK_STALL_TIMEOUT", "2")
    hub.set_fault(REPO, NAME, stall_after_bytes=1_000_000, stall_seconds=60, times=1)
    events, (result,) = download(hub)
    assert any(e.state == "retrying" and "ReadTimeout" in e.message for e in events)
    assert result.path.read_bytes() == big_file.read_bytes()


def test_a_corrupt_byte_fails_the_checksum_and_leaves_nothing(hub, big_file):
    hub.set_fault(REPO, NAME, corrupt_byte_at=big_file.stat().st_size - 5_000_000)
    out = run_cli("download", REPO, "--quant", "F32")
    assert out.returncode == 1 and "checksum mismatch" in out.stderr and hub.file(REPO, NAME).sha256 in out.stderr
    models = Path(os.environ["QUANTDESK_HOME"]) / "models"
    assert not list(models.rglob("*.gguf")) and not list(models.rglob("*.gguf.part*"))


def test_a_lying_size_is_a_mismatch(hub, big_file):
    hub.set_fault(REPO, NAME, wrong_size=big_file.stat().st_size + 4096)
    out = run_cli("download", REPO, "--quant", "F32")
    assert out.returncode == 1 and "size mismatch" in out.stderr
    models = Path(os.environ["QUANTDESK_HOME"]) / "models"
    assert not list(models.rglob("*.gguf.part*"))


def test_a_server_that_ignores_range_gets_one_stream_from_the_start(hub, big_file):
    hub.set_fault(REPO, NAME, ignore_range=True)
    _events, (result,) = download(hub)
    assert result.path.read_bytes() == big_file.read_bytes()
    size = big_file.stat().st_size
    whole = [r for r in content_gets(hub) if r.status == 200]
    assert len(whole) >= 1 and hub.bytes_served[(REPO, NAME)] <= size * (1 + len(whole))


def test_a_server_that_ignores_range_and_keeps_dropping_gives_up_with_the_reason(hub, big_file, monkeypatch):
    from quantdesk.library import download as downloader
    from quantdesk.library.failure import GaveUp

    monkeypatch.setattr(downloader, "MAX_ATTEMPTS", 3)  # the real 8 back off for about a minute
    hub.set_fault(REPO, NAME, ignore_range=True, drop_after_bytes=3_000_000)
    with pytest.raises(GaveUp) as info:
        download(hub)
    assert "ignores resume requests (Range)" in str(info.value) and "partial file is kept" in str(info.value)
    assert len(content_gets(hub)) <= 3 + 1 + START_CONNECTIONS  # it stopped: no loop of hundreds of requests
    assert partial_path(REPO, NAME).exists()


def test_a_kill_with_several_ranges_in_flight_resumes_with_only_the_missing_ranges(hub, big_file):
    size = big_file.stat().st_size
    hub.set_fault(REPO, NAME, bytes_per_second=3_000_000)
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "download", REPO, "--quant", "F32"],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = state_path(partial_path(REPO, NAME))
    deadline = time.time() + 60

    def saved() -> ByteRanges:
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            return ByteRanges(size)
        return ByteRanges(size, [tuple(s) for s in data["spans"]])

    while time.time() < deadline and not (len(saved().spans()) >= 2 and saved().done() >= 8_000_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded = saved()
    assert len(recorded.spans()) >= 2 and 0 < recorded.done() < size  # several ranges were in flight
    hub.clear_faults()
    time.sleep(0.5)
    hub.clear_requests()
    out = run_cli("download", REPO, "--quant", "F32", "--json")
    assert out.returncode == 0, out.stderr
    fetched = covered([r.range for r in content_gets(hub)], size)
    for start, end in recorded.spans():  # nothing recorded as on disk was asked for again
        assert all(e <= start or s >= end for s, e in fetched.spans())
    assert sum(e - s for s, e in fetched.spans()) == size - recorded.done()
    assert json.loads(out.stdout)["files"][0]["sha256"] == hub.file(REPO, NAME).sha256
    assert not state.exists()


def test_pause_stops_every_connection_even_those_waiting_on_a_silent_server(hub, big_file):
    import threading

    from quantdesk.library.download import Cancelled

    hub.set_fault(REPO, NAME, stall_after_bytes=2_000_000, stall_seconds=60)  # every connection goes silent
    (entry,) = list_repo_ggufs(REPO)
    cancel = threading.Event()
    events = download_model(REPO, entry, cancel=cancel)
    for event in events:
        if isinstance(event, DownloadEvent) and event.done >= 4_000_000:
            break
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in events:
            pass
    deadline = time.monotonic() + 2  # not the 30 s read timeout
    while any(t.name.startswith("download-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("download-")]
    saved = json.loads(state_path(partial_path(REPO, NAME)).read_text())
    assert ByteRanges(saved["size"], [tuple(s) for s in saved["spans"]]).done() >= 4_000_000


def test_a_disk_filling_midway_keeps_what_arrived_and_says_so(hub, big_file, tmp_path):
    """The disk fills while several connections write (another program takes the space): one
    sentence that says what arrived is kept, the partial and its ranges stay, nothing enters the
    library. A private mount namespace gives the download a small disk of its own."""
    import shutil

    if not shutil.which("unshare"):
        pytest.skip("needs util-linux's unshare")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not allowed here: {probe.stderr.decode()[:200]}")
    hub.set_fault(REPO, NAME, bytes_per_second=1_000_000)
    disk = tmp_path / "small-disk"
    disk.mkdir()
    size_mb = big_file.stat().st_size // 2**20 + 300  # passes the pre-flight (file + 256 MiB margin)
    script = (f"mount -t tmpfs -o size={size_mb}m tmpfs {disk} && "
              f"QUANTDESK_HOME={disk}/home {sys.executable} -m quantdesk download {REPO} --quant F32 "
              f"> {disk}/out.txt 2>&1 & "
              f"sleep 1; head -c {(size_mb - 30) * 2**20} /dev/zero > {disk}/filler 2>/dev/null; wait $!; echo rc=$? >> {disk}/out.txt; "
              f"cat {disk}/out.txt; ls {disk}/home/models/.partial/{REPO}/")
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "QUANTDESK_STALL_TIMEOUT": "5"})
    text = out.stdout + out.stderr
    assert "rc=1" in text, text[-2000:]
    assert "disk filled up" in text and "kept" in text
    assert NAME + ".part" in text and NAME + ".part.ranges" in text  # what arrived, and which ranges it is


def test_connections_halve_after_a_429_burst(hub, big_file):
    """More connections while the rate grows; a 429 (the server says: too many) halves them."""
    hub.set_fault(REPO, NAME, bytes_per_second=1_500_000)
    (entry,) = list_repo_ggufs(REPO)
    most, after_429, throttled = 0, [], False
    for item in download_model(REPO, entry):
        if not isinstance(item, DownloadEvent):
            continue
        if not throttled:
            most = max(most, item.connections)
            if most >= 8:
                hub.set_fault(REPO, NAME, bytes_per_second=1_500_000, statuses=[429] * 6, retry_after=0)
                throttled = True
        elif item.state == "retrying" or after_429:
            after_429.append(item.connections if item.state == "downloading" else None)
    shown = [c for c in after_429 if c]
    assert throttled and shown, (most, after_429)
    assert max(shown[-3:]) <= most // 2  # settled at half (or less), not back up at once


def test_the_queue_pauses_every_connection_and_resumes_only_the_missing_ranges(hub, big_file):
    """What the Downloads page's Pause and Resume do, on a file fetched over several connections."""
    from quantdesk.library.index import Library
    from quantdesk.library.queue import DownloadQueue

    size = big_file.stat().st_size
    hub.set_fault(REPO, NAME, bytes_per_second=1_500_000)
    q = DownloadQueue(max_concurrent=1)
    try:
        (entry,) = list_repo_ggufs(REPO)
        job = q.add(REPO, entry)
        deadline = time.monotonic() + 60
        while q.get(job.id).done < 10_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        q.pause(job.id)
        assert q.get(job.id).state == "paused"
        saved = json.loads(state_path(partial_path(REPO, NAME)).read_text())
        recorded = ByteRanges(size, [tuple(s) for s in saved["spans"]])
        assert 0 < recorded.done() < size and len(recorded.spans()) >= 1
        hub.clear_faults()
        time.sleep(0.3)
        hub.clear_requests()
        q.resume(job.id)
        assert q.wait(120) and q.get(job.id).state == "done"
        fetched = covered([r.range for r in content_gets(hub)], size)
        assert sum(e - s for s, e in fetched.spans()) == size - recorded.done()  # Pause saved every range
        assert Library().verify(q.get(job.id).model)[1] == []
    finally:
        q.shutdown()
