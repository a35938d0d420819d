"""The Chat page with real widgets and a real model child (a tiny random-weight GGUF at 512 tokens)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication, QTextCursor, QTextDocument
from PySide6.QtWidgets import QInputDialog, QMessageBox

from quantdesk.chat.sampling import Sampling
from quantdesk.chat.store import ChatStore
from quantdesk.gui.app import MainWindow
from quantdesk.gui.pages.chat.page import ChatPage
from quantdesk.gui.visible_text import plain
from quantdesk.hardware.detect import resolve_hardware

# Random weights emit noise; ban the raw-byte tokens (a lone UTF-8 lead byte makes llama-cpp-python hold the
# stream back) and generate to max_tokens (see tests/core/test_chat_session.py).
NO_BYTES = {str(i): -100.0 for i in range(3, 259)}
FAST = Sampling(max_tokens=24, seed=1, ignore_eos=True, logit_bias=NO_BYTES)
LONG = FAST.with_(max_tokens=400)
LOAD_TIMEOUT = 60_000
REPLY_TIMEOUT = 120_000


@pytest.fixture(scope="module")
def hardware():
    return resolve_hardware()


@pytest.fixture
def page(qtbot, hardware):
    p = ChatPage(hardware)
    qtbot.addWidget(p)
    p.resize(1000, 700)
    p.show()
    yield p
    p.shutdown()


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def _load(qtbot, page: ChatPage, model) -> None:
    assert page.select_model(str(model))
    page.ctx_combo.setCurrentIndex(page.ctx_combo.findData(512))
    with qtbot.waitSignal(page.model_loaded, timeout=LOAD_TIMEOUT):
        page.load_button.click()
        assert page.loading and page.cancel_load_button.isVisibleTo(page)
        assert "Loading" in page.report_label.text()


def _conversation(page: ChatPage, sampling: Sampling, title: str = "Test chat") -> int:
    """A stored conversation with test sampling, opened in the page."""
    cid = page.store.create(title=title, sampling=sampling.to_json()).id
    page.refresh_conversations()
    page.open_conversation(cid)
    return cid


def _wait_reply(qtbot, page: ChatPage) -> None:
    qtbot.waitUntil(lambda: not page.streaming, timeout=REPLY_TIMEOUT)


def test_load_shows_the_report_then_a_reply_streams_in_pieces_and_is_stored(qtbot, hardware, tiny_model):
    window = MainWindow(hardware)
    qtbot.addWidget(window)
    window.show_page("chat")
    page = window.chat_page
    assert window.stack.currentWidget() is page
    _load(qtbot, page, tiny_model)
    report = plain(page.report_label.text())  # as shown (long names carry break hints)
    assert "tiny-F16" in report and "loaded in" in report and "512 tokens of context" in report
    assert "RAM in use" in report and page.engine.report.summary in report
    assert page.send_button.isEnabled() and not page.cancel_load_button.isVisibleTo(page)

    cid = _conversation(page, FAST)
    assert page.temperature_spin.value() == pytest.approx(FAST.temperature)
    # ~1000 tok/s here and the pane redraws every 30 ms: 400 tokens give a dozen redraws even on a busy machine
    page.session.set_sampling(FAST.with_(max_tokens=400))
    lengths: list[int] = []
    page.rendered.connect(lambda: lengths.append(len(page.transcript.toPlainText()))
                          if page.streaming and page.tokens_seen else None)
    page.input.setPlainText("Tell me about lighthouses")
    page.send_button.click()
    assert page.streaming and page.stop_button.isEnabled() and not page.send_button.isEnabled()
    _wait_reply(qtbot, page)

    assert page.last_finished is not None and page.last_finished.finish_reason == "length"
    assert page.tokens_seen >= 6
    growth = sorted(set(lengths))
    assert len(growth) >= 3 and lengths == sorted(lengths), lengths  # the pane grew during the reply
    user, reply = page.store.get(cid).messages
    assert (user.content, reply.status) == ("Tell me about lighthouses", "complete")
    assert reply.content == page.last_finished.text and reply.content.strip()
    text = page.transcript.toPlainText()
    assert reply.content.strip()[:20] in text and "Tell me about lighthouses" in text
    assert "400 tokens" in text and "of 512" in text and "tok/s" in text  # the reply's stored figures

    pid = page.engine.proc.pid
    window.close()  # closing the app ends the model process: no orphans
    assert _gone(pid)


def test_stop_button_and_escape_end_a_long_reply_kept_as_stopped(qtbot, page, tiny_model):
    _load(qtbot, page, tiny_model)
    cid = _conversation(page, LONG)
    page.input.setPlainText("Go on forever")
    page.send_button.click()
    qtbot.waitUntil(lambda: page.tokens_seen >= 3, timeout=REPLY_TIMEOUT)
    page.stop_button.click()
    _wait_reply(qtbot, page)
    reply = page.store.get(cid).messages[-1]
    assert reply.status == "stopped" and reply.content and reply.figures["finish_reason"] == "stopped"
    assert reply.figures["tokens"] < 100
    assert "stopped" in page.transcript.toPlainText()

    page.input.setPlainText("And again")
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: page.tokens_seen >= 3, timeout=REPLY_TIMEOUT)
    qtbot.keyClick(page.input, Qt.Key.Key_Escape)
    _wait_reply(qtbot, page)
    messages = page.store.get(cid).messages
    assert [m.role for m in messages] == ["user", "assistant"] * 2
    assert messages[-1].status == "stopped" and messages[-1].figures["tokens"] < 100

    # closing mid-reply stops the reply, keeps it, and ends the model's process
    page.input.setPlainText("One more")
    page.send_button.click()
    qtbot.waitUntil(lambda: page.tokens_seen >= 3, timeout=REPLY_TIMEOUT)
    pid = page.engine.proc.pid
    page.shutdown()
    assert _gone(pid) and page.store.get(cid).messages[-1].status == "stopped"


def test_ctrl_enter_sends_regenerate_replaces_and_edit_resends(qtbot, page, tiny_model):
    _load(qtbot, page, tiny_model)
    page.new_conversation()
    assert page.conversation_id is None and "Ctrl+Enter" in page.transcript.toPlainText()
    page.max_tokens_spin.setValue(12)  # a draft's settings go with its first message
    qtbot.keyClicks(page.input, "hello there")
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert page.streaming
    _wait_reply(qtbot, page)
    cid = page.conversation_id
    conv = page.store.get(cid)
    assert conv.title == "hello there" and conv.sampling["max_tokens"] == 12
    assert page.conversation_ids()[0] == cid and page.input.toPlainText() == ""
    first_reply = conv.messages[1]
    assert first_reply.status == "complete" and first_reply.figures["tokens"] <= 12

    # settings are saved with the conversation, keeping what the panel does not show
    page.session.set_sampling(FAST)
    page.open_conversation(cid)
    page.temperature_spin.setValue(0.5)
    page._flush_settings()
    stored = Sampling.from_json(page.store.get(cid).sampling)
    assert stored.temperature == 0.5 and stored.logit_bias == NO_BYTES and stored.ignore_eos

    page.regenerate_button.click()
    _wait_reply(qtbot, page)
    messages = page.store.get(cid).messages
    assert len(messages) == 2 and messages[1].id != first_reply.id and messages[1].status == "complete"

    page.edit_button.click()
    assert page.input.toPlainText() == "hello there" and page.edit_bar.isVisibleTo(page)
    page.input.setPlainText("hello again")
    qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    _wait_reply(qtbot, page)
    messages = page.store.get(cid).messages
    assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
    assert messages[0].content == "hello again" and not page.edit_bar.isVisibleTo(page)


def test_a_killed_model_process_shows_a_banner_and_reload_works(qtbot, page, tiny_model):
    _load(qtbot, page, tiny_model)
    cid = _conversation(page, LONG)
    page.input.setPlainText("Keep talking")
    page.send_button.click()
    qtbot.waitUntil(lambda: page.tokens_seen >= 3, timeout=REPLY_TIMEOUT)
    pid = page.engine.proc.pid
    os.kill(pid, signal.SIGKILL)
    _wait_reply(qtbot, page)
    assert page.error_text and "SIGKILL" in page.error_text and "reload" in page.error_text.lower()
    assert page.reload_button.isVisibleTo(page)
    assert page.store.get(cid).messages[-1].status == "interrupted"
    assert "interrupted" in page.transcript.toPlainText()
    assert not page.send_button.isEnabled()

    with qtbot.waitSignal(page.model_loaded, timeout=LOAD_TIMEOUT):
        page.reload_button.click()
    assert page.engine.proc.pid != pid and page.error_text is None
    assert page.ctx_combo.currentData() == 512 and page.engine.report.n_ctx == 512
    page.session.set_sampling(FAST)
    page.input.setPlainText("Are you back?")
    page.send_button.click()
    _wait_reply(qtbot, page)
    assert page.store.get(cid).messages[-1].status == "complete"

    os.kill(page.engine.proc.pid, signal.SIGKILL)  # dying while idle is reported too, not at the next Send
    qtbot.waitUntil(lambda: page.error_text is not None, timeout=10_000)
    assert "SIGKILL" in page.error_text and page.reload_button.isVisibleTo(page)


def test_loading_can_be_cancelled_and_errors_are_sentences(qtbot, page, tiny_model, tmp_path):
    page.select_model(str(tiny_model))
    page.load_button.click()
    page.cancel_load_button.click()
    assert not page.loading and "cancelled" in page.report_label.text()
    done = page._load_done
    qtbot.waitUntil(done.is_set, timeout=LOAD_TIMEOUT)
    children = [c for c in psutil.Process().children(recursive=True)
                if "quantdesk.chat.engine_child" in " ".join(c.cmdline())]
    assert all(_gone(c.pid) for c in children), "a cancelled load left its model process running"
    assert page.engine is None
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    page.load_model(str(bad))
    qtbot.waitUntil(lambda: page.error_text is not None, timeout=LOAD_TIMEOUT)
    assert page.error_text.startswith("Could not load broken: ") and "download it again" in page.error_text
    assert page.engine is None
    page.input.setPlainText("hello")
    page.send()
    assert "No model is loaded" in page.error_text


def test_template_fallback_is_in_the_report_and_a_notice_line_in_the_pane(qtbot, page, tmp_path):
    from tests.support import gguf_factory as factory

    plain = factory.write_model(tmp_path / "plain.gguf", factory.TINY, "F16", chat_template=None)
    _load(qtbot, page, plain)
    assert "no chat template; using the chatml fallback" in page.report_label.text()
    _conversation(page, FAST.with_(max_tokens=8))
    page.input.setPlainText("hello")
    page.send_button.click()
    _wait_reply(qtbot, page)
    notice = "Note: Chat template: this model has no chat template; using the chatml fallback."
    text = page.transcript.toPlainText()
    assert notice in text and text.index("hello") < text.index(notice) < text.index("8 tokens")


def test_the_picker_lists_the_library_and_the_window_remembers_the_last_model(qtbot, hardware, tiny_model,
                                                                             small_model):
    from quantdesk.library.index import Library

    Library().import_file(small_model)
    window = MainWindow(hardware)
    qtbot.addWidget(window)
    combo = window.chat_page.model_combo
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items[0].startswith("small-F16 — F16") and items[-1] == "Open GGUF file…"
    assert window.chat_page.model_path() == str(Path(small_model).absolute())
    assert window.chat_page.select_model(str(tiny_model))  # a file outside the library joins the list
    assert [combo.itemText(i) for i in range(combo.count())][-2:] == ["tiny-F16.gguf", "Open GGUF file…"]
    window.close()
    again = MainWindow(hardware)
    qtbot.addWidget(again)
    assert again.chat_page.model_path() == str(tiny_model)
    again.close()


def _seed(store: ChatStore) -> list[int]:
    ids = []
    for title, text in (("Lighthouse keepers", "Tell me about the lighthouse"), ("Pasta recipe", "How long to boil?"),
                        ("Rust lifetimes", "Explain borrowing")):
        conv = store.create(title=title, model="tiny")
        store.add_message(conv.id, "user", text)
        store.add_message(conv.id, "assistant", f"An answer about {title.lower()}.",
                          figures={"tokens": 7, "ttft_s": 0.05, "tokens_per_s": 50.0, "n_ctx": 512})
        ids.append(conv.id)
        time.sleep(0.01)
    return ids


def test_conversation_list_search_rename_delete(qtbot, hardware, monkeypatch):
    ids = _seed(ChatStore())
    page = ChatPage(hardware)
    qtbot.addWidget(page)
    page.show()
    assert page.conversation_ids() == ids[::-1] and page.conversation_id == ids[-1]  # newest first, opened
    assert "Explain borrowing" in page.transcript.toPlainText()

    page.activateWindow()
    qtbot.waitUntil(lambda: QGuiApplication.focusWindow() is not None, timeout=5000)
    qtbot.keyClick(page.transcript, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert page.search_edit.hasFocus()
    qtbot.keyClicks(page.search_edit, "lighthouse")
    assert page.conversation_ids() == [ids[0]]
    page.conversation_list.setCurrentRow(0)
    assert page.conversation_id == ids[0] and "Tell me about the lighthouse" in page.transcript.toPlainText()
    page.search_edit.setText("boil")  # message text matches too
    assert page.conversation_ids() == [ids[1]]
    page.search_edit.setText("nothing like this")
    assert page.conversation_ids() == [] and "No chat matches" in page.status_label.text()
    page.search_edit.clear()
    assert len(page.conversation_ids()) == 3

    page.open_conversation(ids[1])
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Carbonara", True))
    page.rename_button.click()
    assert page.store.get(ids[1]).title == "Carbonara"
    assert page.conversation_list.currentItem().text() == "Carbonara"

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    page.delete_button.click()
    assert ids[1] in page.conversation_ids()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    page.delete_button.click()
    assert ids[1] not in page.conversation_ids() and len(page.conversation_ids()) == 2
    assert "Deleted" in page.status_label.text() and page.conversation_id in page.conversation_ids()
    page.shutdown()


def test_export_writes_markdown_and_json(qtbot, hardware, tmp_path):
    ids = _seed(ChatStore())
    page = ChatPage(hardware)
    qtbot.addWidget(page)
    page.open_conversation(ids[0])
    assert page.export_conversation(tmp_path / "chat.md", "md")
    md = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert md.startswith("# Lighthouse keepers") and "**You**" in md and "Tell me about the lighthouse" in md
    assert page.export_conversation(tmp_path / "chat.json", "json")
    data = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert data["title"] == "Lighthouse keepers" and [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert "Exported to" in page.status_label.text()
    assert not page.export_conversation(tmp_path / "missing-dir" / "x.md")
    assert "Could not export" in page.error_text
    page.shutdown()


def test_code_block_copy_link_puts_the_code_on_the_clipboard(qtbot, hardware):
    store = ChatStore()
    conv = store.create(title="Code")
    store.add_message(conv.id, "user", "Show me a function")
    code = "def square(x):\n    return x * x  # <not html>"
    store.add_message(conv.id, "assistant", f"Here it is:\n\n```python\n{code}\n```\n\nAnd `inline` **bold**.")
    page = ChatPage(hardware)
    qtbot.addWidget(page)
    page.resize(900, 600)
    page.show()
    page.open_conversation(conv.id)
    text = page.transcript.toPlainText()
    assert "return x * x  # <not html>" in text and "python" in text and "**" not in text
    assert len(page.code_keys()) == 1

    QGuiApplication.clipboard().setText("")
    doc = page.transcript.document()
    found = doc.find("Copy", 0, QTextDocument.FindFlag.FindCaseSensitively)
    assert not found.isNull() and found.charFormat().isAnchor()
    assert found.charFormat().anchorHref().startswith("copy:")
    cursor = QTextCursor(doc)
    cursor.setPosition(found.selectionStart() + 1)
    rect = page.transcript.cursorRect(cursor)
    qtbot.mouseClick(page.transcript.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(rect.center().x(),
                                                                                       rect.center().y()))
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == code, timeout=5000)
    assert "Copied 2 lines" in page.status_label.text()
    page.shutdown()


def test_empty_store_shows_how_to_start_and_screenshot_verb_renders_the_page(qtbot, hardware, tmp_path,
                                                                             _isolated_home):
    page = ChatPage(hardware)
    qtbot.addWidget(page)
    assert "Pick a model from the library and load it" in page.transcript.toPlainText()
    assert page.conversation_ids() == [] and not page.send_button.isEnabled()
    names = {w.accessibleName() for w in (page.model_combo, page.load_button, page.send_button, page.stop_button,
                                          page.input, page.transcript, page.search_edit, page.conversation_list,
                                          page.regenerate_button, page.edit_button, page.temperature_spin)}
    assert "" not in names and len(names) == 11
    page.shutdown()

    _seed(ChatStore())
    out = tmp_path / "chat.png"
    result = subprocess.run([sys.executable, "-m", "quantdesk", "gui", "--screenshot", str(out), "--page", "chat"],
                            capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def _planner_spy(monkeypatch) -> list[tuple[object, object]]:
    """Plan for real, record (hardware, plan), then stop the load before any model process starts."""
    from quantdesk.base.errors import QuantDeskError
    from quantdesk.chat import load

    seen: list[tuple[object, object]] = []
    real = load.plan_load

    def spy(path, hw, *args, **kwargs):
        seen.append((hw, real(path, hw, *args, **kwargs)))
        raise QuantDeskError("stopped by the test")

    monkeypatch.setattr(load, "plan_load", spy)
    return seen


def test_loads_are_planned_for_the_contexts_machine_as_it_is_now(qtbot, monkeypatch, llama8b_q4):
    from quantdesk.gui.context import AppContext
    from quantdesk.hardware.machine import load_hardware_spec

    seen = _planner_spy(monkeypatch)
    laptop, gpu = load_hardware_spec("cpu-16gb-laptop"), load_hardware_spec("nvidia-24gb")
    context = AppContext(laptop)
    page = ChatPage(context=context)
    qtbot.addWidget(page)
    assert page.hardware is laptop and page.errors is context.errors

    def load() -> None:
        page.hide_error()
        page.load_model(str(llama8b_q4), 4096)
        qtbot.waitUntil(lambda: not page.loading, timeout=LOAD_TIMEOUT)

    load()
    assert seen[-1][0] is laptop and seen[-1][1].planned_gpu_layers == 0
    assert page.error_text.endswith(": stopped by the test.")  # a QuantDeskError with no next step: no guess added
    context.set_hardware(gpu)  # a simulated machine (or a refreshed free-VRAM figure)
    assert page.hardware is gpu
    load()
    assert seen[-1][0] is gpu and seen[-1][1].planned_gpu_layers == 33 and page.engine is None
    page.shutdown()


def test_the_window_chat_plans_for_the_machine_the_window_simulates(qtbot, monkeypatch, llama8b_q4):
    from quantdesk.hardware.machine import load_hardware_spec

    seen = _planner_spy(monkeypatch)
    window = MainWindow(load_hardware_spec("cpu-16gb-laptop"))
    qtbot.addWidget(window)
    chat = window.chat_page
    window.context.set_hardware(load_hardware_spec("nvidia-6gb"))
    chat.load_model(str(llama8b_q4), 4096)
    qtbot.waitUntil(lambda: bool(seen) and not chat.loading, timeout=LOAD_TIMEOUT)
    hw, planned = seen[-1]
    assert hw is window.context.hardware and planned.planned_gpu_layers == 30 and planned.notes
    window.close()


def test_a_failed_load_is_told_from_the_errors_type_not_its_words():
    import errno

    from quantdesk.base.errors import QuantDeskError
    from quantdesk.chat.engine import EngineError
    from quantdesk.gguf.reader import GGUFError
    from quantdesk.gui.pages.chat.models import MISSING_FILE_STEP, load_failure_text

    damaged = load_failure_text("m", GGUFError("header is corrupt: try reading it again"))
    assert damaged.startswith("Could not load m: header is corrupt: try reading it again. ")
    assert "download it again" in damaged  # the word "try" no longer hides the hint
    gone = load_failure_text("m", FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/m.gguf"))
    assert gone == f"Could not load m: File not found: /x/m.gguf. {MISSING_FILE_STEP}"
    died = load_failure_text("m", EngineError("the model process was killed (SIGKILL) while loading"))
    assert "smaller quant" in died and "GGUF" not in died
    told = load_failure_text("m", QuantDeskError("the model needs 9 GB", next_step="Close other programs."))
    assert told == "Could not load m: the model needs 9 GB. Close other programs."
    plain = load_failure_text("m", QuantDeskError("m does not fit at 4096 tokens: Try a smaller context."))
    assert plain == "Could not load m: m does not fit at 4096 tokens: Try a smaller context."
    bug = load_failure_text("m", RuntimeError("gguf not found"))  # its words say nothing about the file
    assert bug.startswith("Could not load m: Unexpected error: RuntimeError: gguf not found.")
    assert "download" not in bug and MISSING_FILE_STEP not in bug


def test_a_missing_model_file_says_to_choose_another(qtbot, page, tmp_path):
    page.load_model(str(tmp_path / "gone.gguf"))
    qtbot.waitUntil(lambda: page.error_text is not None, timeout=LOAD_TIMEOUT)
    assert page.error_text.startswith("Could not load gone") and "Choose another model" in page.error_text
    assert not page.loading and page.engine is None
