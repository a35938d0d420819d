"""Issue 16, items 1–3 and 9 (part): Stop that always stops, a window that fits 1000×640 whatever
the chat wrote, a status that stays visible, Enter to send."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt

from quantdesk.base.settings import load_settings, save_settings
from quantdesk.chat.sampling import Sampling
from quantdesk.gui.app import PAGES, MainWindow
from quantdesk.hardware.detect import resolve_hardware
from tests.gui.test_chat_page import FAST, LOAD_TIMEOUT, REPLY_TIMEOUT, _conversation, _load, _wait_reply
from tests.support import gguf_factory as factory


@pytest.fixture(scope="module")
def never_text_model(tmp_path_factory):
    return factory.write_never_text_model(tmp_path_factory.mktemp("nt") / "never-text.gguf")


def _chat_window(qtbot, model=None, ctx: int = 512, size: tuple[int, int] | None = None):
    """The app's window on its Chat page, ``model`` loaded at ``ctx`` tokens when given."""
    window = MainWindow(resolve_hardware())
    qtbot.addWidget(window)
    if size:
        window.resize(*size)
    window.show()
    window.show_page("chat")
    page = window.chat_page
    if model is not None:
        assert page.select_model(str(model))
        page.ctx_combo.setCurrentIndex(page.ctx_combo.findData(ctx))
        with qtbot.waitSignal(page.model_loaded, timeout=LOAD_TIMEOUT):
            page.load_button.click()
    return window, page


def test_stop_ends_a_reply_that_never_forms_text_and_the_controls_come_back(qtbot, never_text_model):
    window, page = _chat_window(qtbot, never_text_model, ctx=16384, size=(1000, 640))
    _conversation(page, Sampling(max_tokens=100000, ignore_eos=True))
    page.input.setPlainText("Say something")
    page.send_button.click()
    qtbot.wait(1500)  # it is generating; not one piece of text has come
    assert page.streaming and page.tokens_seen == 0
    page.stop_button.click()
    assert "Stopping" in page.status_label.text() and page.status_label.isVisible()
    assert page.status_label.visibleRegion().boundingRect().width() > 40  # not squeezed out at 1000 px
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: not page.streaming, timeout=10_000)
    assert time.monotonic() - t0 < 2.0
    assert page.send_button.isEnabled() and page.load_button.isEnabled() or page.unload_button.isEnabled()
    assert page.last_finished.finish_reason == "stopped"
    window.close()


def test_every_page_fits_1000_by_640_after_a_long_reply_and_with_long_names(qtbot, tmp_path, tiny_model):
    import shutil

    from quantdesk.library.index import Library

    long_name = tmp_path / ("Very-Long-Model-Name-From-A-Generous-Publisher-" * 3 + "Instruct-Q8_0.gguf")
    shutil.copy(tiny_model, long_name)
    Library().import_file(long_name)
    window = MainWindow(resolve_hardware())
    qtbot.addWidget(window)
    window.resize(1000, 640)
    window.show()
    window.show_page("chat")
    page = window.chat_page
    _load(qtbot, page, long_name)
    _conversation(page, FAST.with_(max_tokens=300))
    page.input.setPlainText("Write a long answer")
    page.send_button.click()
    _wait_reply(qtbot, page)
    assert "300 tokens" in page.status_label.text()  # the long figures line is there
    qtbot.waitUntil(lambda: len(window._built) == len(PAGES), timeout=30_000)
    for name in PAGES:
        window.show_page(name)
        qtbot.wait(30)
        hint = window.minimumSizeHint()
        assert hint.width() <= 1000 and hint.height() <= 640, (name, hint)
        assert (window.width(), window.height()) == (1000, 640), name
    window.close()


def test_enter_sends_and_shift_enter_is_a_new_line_unless_settings_say_ctrl_enter(qtbot, tiny_model):
    window, page = _chat_window(qtbot, tiny_model)
    cid = _conversation(page, FAST.with_(max_tokens=4))
    page.input.setPlainText("first line")
    page.input.moveCursor(page.input.textCursor().MoveOperation.End)
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert not page.streaming and page.input.toPlainText().count("\n") == 1
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert page.streaming
    _wait_reply(qtbot, page)
    assert page.store.get(cid).messages[0].content == "first line\n"
    settings = load_settings()
    settings.enter_sends = False
    save_settings(settings)
    window.context.settings_changed.emit()
    page.input.setPlainText("x")
    page.input.moveCursor(page.input.textCursor().MoveOperation.End)
    qtbot.keyClick(page.input, Qt.Key.Key_Return)
    assert not page.streaming and "Ctrl+Enter sends" in page.input.placeholderText()
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.streaming
    _wait_reply(qtbot, page)
    window.close()


def test_closing_during_a_reply_that_never_forms_text_ends_the_model_process_at_once(qtbot, never_text_model):
    import psutil

    window, page = _chat_window(qtbot, never_text_model, ctx=16384)
    cid = _conversation(page, Sampling(max_tokens=100000, ignore_eos=True))
    page.input.setPlainText("Say something")
    page.send_button.click()
    qtbot.wait(1000)
    pid = page.engine.proc.pid
    t0 = time.monotonic()
    window.close()
    assert time.monotonic() - t0 < 6
    deadline = time.monotonic() + 3
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert page.store.get(cid).messages[-1].status == "stopped"


def test_regenerate_keeps_the_earlier_answer_one_click_away(qtbot, tiny_model):
    from PySide6.QtCore import QUrl

    window, page = _chat_window(qtbot, tiny_model)
    cid = _conversation(page, FAST.with_(max_tokens=6, seed=-1))
    page.input.setPlainText("Hi")
    page.send_button.click()
    _wait_reply(qtbot, page)
    first = page.store.get(cid).messages[-1].content
    page.regenerate_button.click()
    _wait_reply(qtbot, page)
    reply = page.store.get(cid).messages[-1]
    assert len(reply.versions) == 2 and reply.version == 1
    assert "answer 2 of 2" in page.transcript.toPlainText()
    assert f"version:{reply.id}:0" in page.transcript.toHtml()
    page.transcript.anchorClicked.emit(QUrl(f"version:{reply.id}:0"))  # the "‹" link
    assert page.store.get(cid).messages[-1].content == first
    assert "answer 1 of 2" in page.transcript.toPlainText()
    window.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_starts_and_stops_from_the_window_and_counts_what_it_served(qtbot, tiny_model):
    import http.client
    import json
    import socket

    window, page = _chat_window(qtbot, tiny_model)
    port = _free_port()
    page.server_toggle.click()
    page.server_port.setValue(port)
    with qtbot.waitSignal(page.model_loaded, timeout=LOAD_TIMEOUT):
        page.server_button.click()
    assert page.serving is not None and page.server_button.text() == "Stop server"
    assert f"http://127.0.0.1:{port}/v1" in page.server_status.text()
    assert page.server_url_text() == f"http://127.0.0.1:{port}/v1"

    def post(key: str | None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "hi", "max_tokens": 2}), headers)
        return conn.getresponse().status

    assert post(None) == 401 and post(page.server_key) == 200
    qtbot.waitUntil(lambda: "1 request served" in page.server_status.text(), timeout=10_000)  # (401: not served)
    cid = _conversation(page, FAST.with_(max_tokens=4))
    page.input.setPlainText("Still chatting?")
    page.send_button.click()
    _wait_reply(qtbot, page)
    assert page.store.get(cid).messages[-1].status == "complete"  # the window chats through the same process
    assert "1 request served" in page.server_status.text()  # its own requests are not counted
    with qtbot.waitSignal(page.model_loaded, timeout=LOAD_TIMEOUT):
        page.server_button.click()
    assert page.serving is None and page.server_button.text() == "Start server"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens there any more
    window.close()


def test_a_taken_port_is_said_and_the_model_comes_back_without_the_server(qtbot, tiny_model):
    import socket

    window, page = _chat_window(qtbot, tiny_model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        page.server_port.setValue(taken.getsockname()[1])
        page.server_button.click()
        qtbot.waitUntil(lambda: any("could not start on port" in r.sentence
                                    for r in window.context.errors.history), timeout=LOAD_TIMEOUT)
        qtbot.waitUntil(lambda: page.model_ready and not page.loading, timeout=LOAD_TIMEOUT)
    assert page.serving is None and page.server_button.text() == "Start server"
    window.close()


def test_tokens_per_second_show_live_while_a_reply_streams(qtbot, tiny_model):
    window, page = _chat_window(qtbot, tiny_model)
    _conversation(page, FAST.with_(max_tokens=2000))
    page.ctx_combo.setCurrentIndex(page.ctx_combo.findData(512))
    seen: list[str] = []
    page.input.setPlainText("Go on")
    page.send_button.click()
    qtbot.waitUntil(lambda: (seen.append(page.status_label.text()) or "tok/s" in seen[-1]) or not page.streaming,
                    timeout=REPLY_TIMEOUT)
    assert any(s.startswith("Writing… ") and "tok/s (Esc stops)" in s for s in seen), seen[-3:]
    _wait_reply(qtbot, page)
    window.close()


def test_a_stop_that_must_end_the_process_gives_the_controls_back_and_reloads_behind(qtbot, tiny_model):
    import os
    import signal

    window, page = _chat_window(qtbot, tiny_model)
    _conversation(page, FAST.with_(max_tokens=100000))
    page.input.setPlainText("Go on forever")
    page.send_button.click()
    qtbot.waitUntil(lambda: page.tokens_seen >= 3, timeout=REPLY_TIMEOUT)
    os.kill(page.engine.report.pid, signal.SIGSTOP)  # as if stuck inside one long llama.cpp call
    t0 = time.monotonic()
    page.stop_button.click()
    qtbot.waitUntil(lambda: not page.streaming, timeout=10_000)
    assert time.monotonic() - t0 < 5  # not the reload's time
    qtbot.waitUntil(lambda: "again" in page.report_label.text() or page.model_ready, timeout=5_000)
    qtbot.waitUntil(lambda: page.model_ready and page.send_button.isEnabled(), timeout=LOAD_TIMEOUT)
    assert "loaded in" in page.report_label.text()
    assert any("being loaded again" in n for n in page._notices) or "being loaded again" in page.transcript.toPlainText()
    window.close()
