"""The Downloads page with real widgets against the fake hub and generated models."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantdesk.gui.app import PAGES, MainWindow
from quantdesk.gui.context import AppContext
from quantdesk.gui.pages.downloads import DownloadsPage
from quantdesk.gui.widgets.library_model import VERIFIED
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.hub.client import list_repo_ggufs
from quantdesk.library.download import partial_path
from quantdesk.library.index import Library, sha256_file
from quantdesk.library.queue import DownloadQueue
from tests.support import gguf_factory as factory

REPO = "someorg/Page-Test-GGUF"
Q8, Q6 = "Page-Test-Q8_0.gguf", "Page-Test-Q6_K.gguf"
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pagefiles")
    return {name: factory.write_model(d / name, factory.SMALL, "F16", seed=i)  # ~10 MB, loadable
            for i, name in enumerate([Q8, Q6])}


@pytest.fixture
def hub(fake_hub, files):
    fake_hub.add_repo(REPO, files)
    return fake_hub


@pytest.fixture
def context():
    ctx = AppContext(load_hardware_spec("cpu-16gb-laptop"))
    yield ctx
    ctx.shutdown()  # no download thread outlives the test's data folder


@pytest.fixture
def page(qtbot, context):
    p = DownloadsPage(context)
    qtbot.addWidget(p)
    p.resize(1000, 600)
    p.show()
    return p


def entry(name: str):
    return next(e for e in list_repo_ggufs(REPO) if e.name == name)


def state(page: DownloadsPage, job_id: int) -> str:
    return page.rows[job_id].job.state


def click(qtbot, page: DownloadsPage, job_id: int, action: str) -> None:
    button = page.rows[job_id].buttons[action]
    qtbot.waitUntil(lambda: button.isVisibleTo(page) and button.isEnabled(), timeout=TIMEOUT)
    button.click()


def test_a_queued_download_completes_verified_and_appears_in_the_library_page(qtbot, hub):
    window = MainWindow(load_hardware_spec("cpu-16gb-laptop"))
    qtbot.addWidget(window)
    downloads, library = window.pages["downloads"], window.pages["library"]
    assert library.table_model.rowCount() == 0
    job = window.context.downloads.add(REPO, entry(Q8))  # what the Discover page does
    qtbot.waitUntil(lambda: job.id in downloads.rows and state(downloads, job.id) == "done", timeout=TIMEOUT)
    row = downloads.rows[job.id]
    assert "SHA-256 verified" in row.detail.text() and row.bar.value() == row.bar.maximum()
    assert row.buttons["chat"].isVisibleTo(downloads) and not row.buttons["pause"].isVisibleTo(downloads)
    assert window.sidebar.item(PAGES.index("downloads")).text() == "Downloads"  # nothing under way: no badge
    qtbot.waitUntil(lambda: library.table_model.rowCount() == 1, timeout=TIMEOUT)
    (model,) = library.table_model.models
    assert model.repo == REPO and model.source == "downloaded" and model.sha256 == hub.file(REPO, Q8).sha256
    cell = library.table_model.index(0, VERIFIED).data()
    assert cell.startswith("✓")


def test_open_in_chat_hands_the_downloaded_file_to_the_chat_page(qtbot, hub, page, context):
    job = context.downloads.add(REPO, entry(Q6))
    qtbot.waitUntil(lambda: job.id in page.rows and state(page, job.id) == "done", timeout=TIMEOUT)
    with qtbot.waitSignal(context.open_in_chat, timeout=5_000) as opened:
        click(qtbot, page, job.id, "chat")
    assert opened.args == [Library().get(page.rows[job.id].job.model).path]


def test_a_corrupt_download_fails_with_the_checksum_reason_and_retry_succeeds(qtbot, hub, page, context):
    hub.set_fault(REPO, Q8, corrupt_byte_at=123_456)
    job = context.downloads.add(REPO, entry(Q8))
    qtbot.waitUntil(lambda: job.id in page.rows and state(page, job.id) == "failed", timeout=TIMEOUT)
    row = page.rows[job.id]
    expected = hub.file(REPO, Q8).sha256
    # one sentence for people in the row and the banner; the hashes behind "Details" (and the row's tooltip)
    assert "Page-Test-Q8_0.gguf did not match the hub's checksum" in row.detail.text()
    assert expected not in row.detail.text() and "partial file, if any" not in row.detail.text()
    assert expected in row.detail.toolTip() and "Retry downloads it again" in row.detail.toolTip()
    assert row.buttons["retry"].isVisibleTo(page) and not row.buttons["pause"].isVisibleTo(page)
    qtbot.waitUntil(lambda: bool(context.errors.history), timeout=TIMEOUT)
    report = context.errors.history[-1]
    assert report.where == "Downloads" and expected not in report.sentence
    assert f"Expected SHA-256 {expected}, got " in report.details
    assert report.next_step.startswith("Retry downloads it again") and report.action == "Retry"
    assert Library().models() == [] and not partial_path(REPO, Q8).exists()
    hub.clear_faults()
    click(qtbot, page, job.id, "retry")
    qtbot.waitUntil(lambda: state(page, job.id) == "done", timeout=TIMEOUT)
    (model,) = Library().models()
    assert model.sha256 == expected and Library().verify(model.name)[1] == []


def test_pause_then_resume_a_slow_download_completes_with_the_right_hash(qtbot, hub, page, context):
    size = hub.file(REPO, Q8).size
    hub.set_fault(REPO, Q8, bytes_per_second=2_000_000, times=1)
    job = context.downloads.add(REPO, entry(Q8))
    qtbot.waitUntil(lambda: job.id in page.rows and page.rows[job.id].job.done > 1_000_000, timeout=TIMEOUT)
    click(qtbot, page, job.id, "pause")
    qtbot.waitUntil(lambda: state(page, job.id) == "paused", timeout=TIMEOUT)
    have = partial_path(REPO, Q8).stat().st_size
    assert 0 < have < size and "Paused at" in page.rows[job.id].detail.text()
    click(qtbot, page, job.id, "resume")
    qtbot.waitUntil(lambda: state(page, job.id) == "done", timeout=TIMEOUT)
    (model,) = Library().models()
    assert sha256_file(Path(model.path)) == hub.file(REPO, Q8).sha256


def test_cancel_removes_the_partial_and_clear_finished_empties_the_list(qtbot, hub, page, context):
    hub.set_fault(REPO, Q6, bytes_per_second=1_000_000, times=1)
    job = context.downloads.add(REPO, entry(Q6))
    qtbot.waitUntil(lambda: job.id in page.rows and page.rows[job.id].job.done > 300_000, timeout=TIMEOUT)
    assert partial_path(REPO, Q6).exists()
    click(qtbot, page, job.id, "cancel")
    qtbot.waitUntil(lambda: state(page, job.id) == "cancelled", timeout=TIMEOUT)
    assert not partial_path(REPO, Q6).exists() and Library().models() == []
    assert page.clear_button.isEnabled()
    page.clear_button.click()
    assert page.rows == {} and context.downloads.jobs() == [] and page.empty.isVisibleTo(page)


def test_the_page_shows_the_jobs_a_previous_run_left_and_resumes_them(qtbot, hub, context):
    hub.set_fault(REPO, Q8, bytes_per_second=2_000_000, times=1)
    earlier = DownloadQueue(max_concurrent=1)  # the last run of the app
    running = earlier.add(REPO, entry(Q8))
    waiting = earlier.add(REPO, entry(Q6))
    earlier.pause(waiting.id)
    qtbot.waitUntil(lambda: earlier.get(running.id).done > 500_000, timeout=TIMEOUT)
    earlier.shutdown()  # the app quit mid-download: the job is left queued with its partial file
    assert earlier.get(running.id).state == "queued" and partial_path(REPO, Q8).exists()
    badges: list[tuple[str, str]] = []
    context.page_badge.connect(lambda name, text: badges.append((name, text)))
    page = DownloadsPage(context)  # the next start, over the same database
    qtbot.addWidget(page)
    page.show()
    assert set(page.rows) == {running.id, waiting.id}
    assert badges[-1] == ("downloads", "1")  # the sidebar counts the one under way
    assert state(page, waiting.id) == "paused" and page.rows[waiting.id].buttons["resume"].isVisibleTo(page)
    assert page.rows[running.id].job.done > 0
    qtbot.waitUntil(lambda: state(page, running.id) == "done", timeout=TIMEOUT)
    assert Library().verify(page.rows[running.id].job.model)[1] == []
    assert "1 paused" in page.summary.text() and "1 done" in page.summary.text()
    assert badges[-1] == ("downloads", "")
