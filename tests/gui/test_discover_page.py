"""The Discover page with real widgets against the fake hub, generated models and a real model child."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit, QPushButton, QSlider

from quantdesk.chat.sampling import Sampling
from quantdesk.gui.app import MainWindow
from quantdesk.gui.pages import discover as discover_page
from quantdesk.hardware.detect import resolve_hardware
from quantdesk.hardware.machine import load_hardware_spec
from tests.support import gguf_factory as factory

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there
PLAN_TIMEOUT = 30_000
CHAT_REPO = "someorg/Tiny-Chat-GGUF"
# deterministic replies from random weights: no raw-byte tokens, always to max_tokens (see test_chat_page.py)
NO_BYTES = {str(i): -100.0 for i in range(3, 259)}
# long enough to outlast a few of the transcript's render intervals (30–250 ms) even on a fast machine
STREAMED = Sampling(max_tokens=600, seed=1, ignore_eos=True, logit_bias=NO_BYTES)


@pytest.fixture
def hub(fake_hub, tmp_path):
    def repo(repo_id, shape, quants, downloads):
        name = repo_id.split("/")[1].replace("-GGUF", "")
        factory.add_header_only_repo(fake_hub, repo_id, tmp_path, {f"{name}-{q}.gguf": (shape, q) for q in quants},
                                     downloads=downloads)

    repo("bartowski/Big-70B-GGUF", factory.LLAMA3_70B, ["Q4_K_M", "Q2_K"], downloads=900)
    repo("someone/Mid-8B-GGUF", factory.LLAMA3_8B, ["Q8_0", "Q4_K_M"], downloads=500)
    repo("Qwen/Small-0.5B-GGUF", factory.QWEN25_05B, ["Q8_0"], downloads=100)
    return fake_hub


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory):
    """Two real, loadable quants of one tiny model: the planner picks one, the other must stay on the hub."""
    d = tmp_path_factory.mktemp("chatrepo")
    return {"Tiny-Chat-F32.gguf": factory.write_model(d / "Tiny-Chat-F32.gguf", factory.TINY, "F32", seed=5),
            "Tiny-Chat-F16.gguf": factory.write_model(d / "Tiny-Chat-F16.gguf", factory.TINY, "F16", seed=5)}


@pytest.fixture
def chat_hub(fake_hub, chat_files):
    fake_hub.add_repo(CHAT_REPO, {**chat_files, "README.md": b"# Tiny chat"}, downloads=7)
    return fake_hub


@pytest.fixture
def open_window(qtbot):
    """A main window on Discover; closed at the end (its pages shut down: no model process outlives a test)."""
    windows: list[MainWindow] = []

    def make(hardware):
        window = MainWindow(hardware)
        qtbot.addWidget(window)
        windows.append(window)
        window.show_page("discover")
        return window, window.discover_page

    yield make
    for window in windows:
        window.close()


def _wait_plan(qtbot, page, ref: str, ctx: int | None = None, kv: str | None = None):
    qtbot.waitUntil(lambda: page.plan is not None and page.plan.model == ref and not page._planning.busy
                    and (ctx is None or page.plan.ctx == ctx) and (kv is None or page.plan.kv_type == kv),
                    timeout=PLAN_TIMEOUT)
    return page.plan


def test_search_lists_hub_repos_with_publishers_and_plans_with_fit_badges(qtbot, open_window, hub):
    window, page = open_window(load_hardware_spec("nvidia-8gb"))
    qtbot.keyClick(page, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    page.search_edit.setText("GGUF")
    with qtbot.waitSignal(page.searched, timeout=PLAN_TIMEOUT):
        qtbot.keyClick(page.search_edit, Qt.Key.Key_Return)
    assert page.results_list.repos() == ["bartowski/Big-70B-GGUF", "someone/Mid-8B-GGUF", "Qwen/Small-0.5B-GGUF"]
    assert "Hugging Face hub" in page.source_label.text() and "3 models" in page.source_label.text()
    rows = [page.results_list.item(i).text() for i in range(3)]
    assert "known quantizer" in rows[0] and "model author" in rows[2] and "900 downloads" in rows[0]

    # the first result is planned at once: a 70B on an 8 GB card is split or does not fit at all
    plan = _wait_plan(qtbot, page, "bartowski/Big-70B-GGUF")
    assert plan.source == "hub" and "known quantizer" in page.title.accessibleDescription()
    assert all(b.startswith("partial ") or b in ("CPU only", "won't fit") for b in page.view.cells(3))

    page.results_list.setCurrentRow(1)
    plan = _wait_plan(qtbot, page, "someone/Mid-8B-GGUF")
    assert dict(zip(page.view.cells(1), page.view.cells(3))) == {"Q8_0": f"partial {plan.options[0].gpu_layers} of 33",
                                                           "Q4_K_M": "full GPU"}
    assert page.view.cells(0) == ["", "★"] and "tok/s" in page.view.cells(4)[1]
    assert page.best_button.text() == "Download best fit: Q4_K_M · 4.6 GiB" and page.best_button.isEnabled()
    description = page.view.chart.accessibleDescription()
    assert "Q4_K_M (recommended): VRAM:" in description and "System RAM:" in description
    assert page.view.chart.selected == 1  # the recommendation is selected in the table and the chart
    assert window.context.errors.history == []


def test_offline_search_shows_the_catalog_and_says_so(qtbot, open_window, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    window, page = open_window(load_hardware_spec("nvidia-8gb"))
    page.open_ref("llama 3.2 instruct")
    qtbot.waitUntil(lambda: page.results is not None, timeout=PLAN_TIMEOUT)
    label = page.source_label.text()
    assert "Bundled catalog (offline, snapshot " in label and "cannot be reached" in label
    assert page.results.source == "catalog" and page.results_list.count() > 1
    assert all("B params" in page.results_list.item(i).text() for i in range(page.results_list.count()))
    plan = _wait_plan(qtbot, page, page.results_list.repos()[0])
    assert plan.source == "catalog" and "offline estimate" in page.title.accessibleDescription()
    assert "bundled catalog" in page.view.notes.text() and page.view.table.rowCount() == len(plan.options)


def test_context_slider_and_kv_type_replan_from_headers_already_read(qtbot, open_window, hub):
    window, page = open_window(load_hardware_spec("nvidia-8gb"))
    page.open_ref("someone/Mid-8B-GGUF")
    first = _wait_plan(qtbot, page, "someone/Mid-8B-GGUF", ctx=4096)
    kv = {o.quant: o.memory.kv_cache for o in first.options}
    hub.clear_requests()
    page.ctx_slider.setValue(discover_page.CONTEXTS.index(32768))
    longer = _wait_plan(qtbot, page, "someone/Mid-8B-GGUF", ctx=32768)
    assert all(o.memory.kv_cache > kv[o.quant] for o in longer.options)
    assert not any(r.filename for r in hub.requests)  # re-planned from the headers read before
    assert page.ctx_label.text() == "32,768 tokens"
    assert page.view.chart.options == longer.options
    page.kv_combo.setCurrentText("q8_0")
    halved = _wait_plan(qtbot, page, "someone/Mid-8B-GGUF", ctx=32768, kv="q8_0")
    assert all(o.memory.kv_cache < 0.6 * p.memory.kv_cache for o, p in zip(halved.options, longer.options))


def test_a_newer_search_is_never_overwritten_by_an_older_slow_one(qtbot, open_window, hub, monkeypatch):
    release, slow_done = threading.Event(), threading.Event()
    real_search = discover_page.search

    def search(text, **kwargs):
        if text != "Big":
            return real_search(text, **kwargs)
        release.wait(10)
        try:
            return real_search(text, **kwargs)
        finally:
            slow_done.set()

    monkeypatch.setattr(discover_page, "search", search)
    window, page = open_window(load_hardware_spec("nvidia-8gb"))
    page.open_ref("Big")
    assert page.spinner.isVisibleTo(page) and "Searching" in page.status.text()
    page.open_ref("Small")
    qtbot.waitUntil(lambda: page.results is not None and page.results.text == "Small", timeout=PLAN_TIMEOUT)
    release.set()
    qtbot.waitUntil(slow_done.is_set, timeout=PLAN_TIMEOUT)
    qtbot.wait(300)  # its answer is delivered now, and dropped
    assert page.results.text == "Small" and page.results_list.repos() == ["Qwen/Small-0.5B-GGUF"]


def test_local_file_and_a_missing_one(qtbot, open_window, llama8b_q4):
    window, page = open_window(load_hardware_spec("nvidia-8gb"))
    page.open_ref(str(llama8b_q4))
    plan = _wait_plan(qtbot, page, str(llama8b_q4))
    assert plan.source == "file" and page.view.cells(3) == ["full GPU"] and "Local file" in page.source_label.text()
    assert page.best_button.text() == "Open in Chat"
    page.open_ref("/nonexistent/model.gguf")
    qtbot.waitUntil(lambda: bool(window.context.errors.history), timeout=PLAN_TIMEOUT)
    report = window.context.errors.history[-1]
    assert report.where == "Discover" and "/nonexistent/model.gguf" in report.text()
    assert "Could not plan" in page.status.text() and window.banner.isVisibleTo(window)


def test_quantize_locally_is_offered_for_a_full_precision_file_that_runs_badly(qtbot, open_window, tmp_path):
    f16 = factory.write_header_only(tmp_path / "L8B-F16.gguf", factory.LLAMA3_8B, "F16")
    window, page = open_window(load_hardware_spec("cpu-16gb-laptop"))
    page.open_ref(str(f16))
    _wait_plan(qtbot, page, str(f16))
    assert page.quantize_button.isVisibleTo(page) and page.quantize_button.text() == "Quantize locally to Q4_K_M…"
    assert "tokens/s" in page.quantize_button.toolTip()
    with qtbot.waitSignal(window.context.quantize_requested) as signal:
        page.quantize_button.click()
    assert signal.args == [str(f16), "Q4_K_M"]


def test_ctrl_f_searches_and_controls_have_accessible_names(qtbot, open_window, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    window, page = open_window(load_hardware_spec("nvidia-8gb"))
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: QGuiApplication.focusWindow() is not None, timeout=5000)
    window.sidebar.setFocus()  # Ctrl+F works from anywhere while Discover is shown
    qtbot.keyClick(window.sidebar, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.focusWidget() is page.search_edit
    qtbot.keyClicks(page.search_edit, "qwen3 8b")
    qtbot.keyClick(page.search_edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: page.results is not None and page.results.text == "qwen3 8b", timeout=PLAN_TIMEOUT)
    assert page.results_list.repos() and all("8B" in r for r in page.results_list.repos())
    _wait_plan(qtbot, page, page.results_list.repos()[0])  # the first result is planned (from the catalog)
    controls = [w for kind in (QPushButton, QComboBox, QSlider, QLineEdit) for w in page.findChildren(kind)
                if not isinstance(w.parent(), QComboBox)]
    assert controls and all(w.accessibleName() for w in controls), [w for w in controls if not w.accessibleName()]
    assert page.results_list.accessibleName() and page.view.table.accessibleName() and page.view.chart.accessibleName()


def _chat_window(qtbot, open_window):
    window, page = open_window(resolve_hardware())
    chat = window.chat_page
    page.ctx_slider.setValue(discover_page.CONTEXTS.index(1024))  # Chat loads at the planned context
    page.kv_combo.setCurrentText("q8_0")
    page.open_ref(CHAT_REPO)
    plan = _wait_plan(qtbot, page, CHAT_REPO, ctx=1024, kv="q8_0")
    assert plan.recommended is not None and len(plan.options) == 2
    return window, page, chat, plan


def test_download_best_fit_end_to_end_to_a_streamed_chat_reply(qtbot, open_window, chat_hub, chat_files):
    window, page, chat, plan = _chat_window(qtbot, open_window)
    pick = plan.recommended.file
    chat_hub.set_fault(CHAT_REPO, pick, bytes_per_second=1_500_000)  # slow enough to show progress
    progress: list[tuple[str, int]] = []
    page.best_fit.progress.connect(lambda text, pct: progress.append((text, pct)))
    with qtbot.waitSignal(chat.model_loaded, timeout=120_000):
        page.best_button.click()
        assert not page.best_button.isEnabled()
    assert any(text.startswith("Downloading") and 0 < pct < 100 for text, pct in progress), progress
    assert "verified, in the library and opened in Chat." == progress[-1][0].split(" is ", 1)[1]  # no stale "…"

    (model,) = window.context.library().models()
    assert model.repo == CHAT_REPO and model.files[0]["path"].endswith(pick)
    assert model.sha256 == chat_hub.file(CHAT_REPO, pick).sha256
    other = next(n for n in chat_files if n != pick)
    assert all(r.range for r in chat_hub.requests_for(CHAT_REPO, other, "GET"))  # only its header, to plan it
    assert window.current_page() == "chat" and chat.model_path() == model.path
    assert page.best_button.text().startswith("Open in Chat") and page.best_button.isEnabled()  # not "Download"
    # loaded as planned on Discover, not with Chat's own context choice
    assert chat.engine.report.n_ctx == 1024 and chat.ctx_combo.currentData() == 1024
    assert chat.engine.settings.type_k == chat.engine.settings.type_v == 8  # llama.cpp's GGML_TYPE_Q8_0
    assert "q8_0 KV cache" in chat.report_label.text()

    cid = chat.store.create(title="Discover test", sampling=STREAMED.to_json()).id
    chat.refresh_conversations()
    chat.open_conversation(cid)
    lengths: list[int] = []
    chat.rendered.connect(lambda: lengths.append(len(chat.transcript.toPlainText()))
                          if chat.streaming and chat.tokens_seen else None)
    chat.input.setPlainText("Which model is this?")
    chat.send_button.click()
    qtbot.waitUntil(lambda: not chat.streaming, timeout=60_000)
    user, reply = chat.store.get(cid).messages
    assert reply.status == "complete" and reply.content.strip()
    assert reply.content.strip()[:20] in chat.transcript.toPlainText()
    assert len(set(lengths)) >= 2 and lengths == sorted(lengths), lengths  # it streamed into the pane
    assert window.context.errors.history == []


def test_corrupt_download_is_reported_with_retry_and_nothing_enters_the_library(qtbot, open_window, chat_hub):
    window, page, chat, plan = _chat_window(qtbot, open_window)
    pick = plan.recommended.file
    chat_hub.set_fault(CHAT_REPO, pick, corrupt_byte_at=100_000)
    assert window.pages["downloads"].rows == {}  # built, so it sees the job fail too
    page.best_button.click()
    qtbot.waitUntil(lambda: any(r.where == "Discover" for r in window.context.errors.history), timeout=60_000)
    report = next(r for r in window.context.errors.history if r.where == "Discover")
    assert window.banner.current is report  # its Retry also finishes the one click
    downloads = window.pages["downloads"]
    qtbot.waitUntil(lambda: any(row.job.state == "failed" for row in downloads.rows.values()), timeout=5_000)
    assert [r.where for r in window.context.errors.history] == ["Discover"]  # one failure, one report
    assert report.where == "Discover" and "did not match the hub's checksum" in report.sentence
    assert report.action == "Retry" and "Expected SHA-256" in report.details and "Expected" not in report.sentence
    assert window.banner.details_button.isVisibleTo(window) and not window.banner.details_label.isVisibleTo(window)
    window.banner.details_button.click()
    assert window.banner.details_label.isVisibleTo(window) and "Expected SHA-256" in window.banner.details_label.text()
    assert pick in report.sentence and "nothing was added to the library" in report.sentence
    assert window.context.library().models() == [] and window.current_page() == "discover"
    assert window.banner.isVisibleTo(window) and page.best_button.isEnabled()

    chat_hub.clear_faults()
    with qtbot.waitSignal(chat.model_loaded, timeout=120_000):
        window.banner.action_button.click()  # Retry: fetched again, verified, opened in Chat
    (model,) = window.context.library().models()
    assert model.sha256 == chat_hub.file(CHAT_REPO, pick).sha256 and window.current_page() == "chat"


def test_a_repo_with_only_a_checkpoint_offers_to_quantize_it_and_the_quantize_page_does(qtbot, open_window,
                                                                                         fake_hub, tmp_path):
    from quantdesk.library.index import Library
    from tests.support.checkpoint_factory import write_llama_checkpoint

    repo = "someorg/Tiny-Llama-Finetune"
    write_llama_checkpoint(tmp_path / "ckpt", shards=2, bf16=True)
    fake_hub.add_repo(repo, {p.name: p for p in (tmp_path / "ckpt").iterdir()}, tags=("safetensors",))
    window, page = open_window(load_hardware_spec("cpu-16gb-laptop"))
    asked = []
    window.context.quantize_requested.connect(lambda source, kind: asked.append((source, kind)))
    page.open_ref(repo)
    qtbot.waitUntil(lambda: "has no GGUF files, but a LlamaForCausalLM checkpoint" in page.view.notes.text(),
                    timeout=PLAN_TIMEOUT)
    assert "checkpoint to quantize locally" in page.status.text()
    assert window.context.errors.history == [] and page.plan is None
    assert page.quantize_button.isVisibleTo(page) and "checkpoint" in page.quantize_button.text()
    assert not page.best_button.isEnabled()
    qtbot.mouseClick(page.quantize_button, Qt.MouseButton.LeftButton)
    assert asked == [(repo, "")]
    quantize = window.page("quantize")  # the request filled it: checked from config.json alone, then run
    qtbot.waitUntil(lambda: quantize.types_loaded, timeout=PLAN_TIMEOUT)
    assert quantize.set_type("Q8_0")
    qtbot.waitUntil(lambda: quantize.last_check is not None and quantize.last_check.kind == "checkpoint-repo",
                    timeout=PLAN_TIMEOUT)
    assert "downloaded, verified and converted first" in quantize.preflight.values["Input"].text()
    qtbot.waitUntil(lambda: quantize.quantize_button.isEnabled(), timeout=PLAN_TIMEOUT)
    quantize.start()
    qtbot.waitUntil(lambda: not quantize.running, timeout=180_000)
    assert window.context.errors.history == [], window.context.errors.history
    (model,) = Library().models()
    assert model.source == "converted+quantized" and model.repo == repo and model.quant == "Q8_0"
