"""A damaged data file in the window: chatting goes on, the banner names the file and offers to
start a new one, and doing so keeps the damaged copy and touches nothing else."""

from __future__ import annotations

import sqlite3

from quantdesk.base.paths import data_dir
from quantdesk.chat.store import ChatStore
from quantdesk.gui.app import PAGES, MainWindow
from quantdesk.hardware.machine import load_hardware_spec


def _damage(path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xaa" * (min(len(data), 4096) - 100)
    path.write_bytes(bytes(data))


def test_a_damaged_chats_db_is_offered_a_new_start_and_chat_keeps_working(qtbot):
    store = ChatStore()
    store.add_message(store.create(title="Old talk").id, "user", "hello")
    del store
    _damage(data_dir() / "chats.db")
    window = MainWindow(load_hardware_spec("cpu-8gb-laptop"))
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: len(window._built) == len(PAGES), timeout=30_000)
    qtbot.waitUntil(lambda: any(r.where == "Data" for r in window.context.errors.history), timeout=10_000)
    report = next(r for r in window.context.errors.history if r.where == "Data")
    assert "chats.db" in report.sentence and "damaged" in report.sentence and report.action == "Start a new one"
    chat = window.page("chat")
    assert chat.store.path != data_dir() / "chats.db"  # a scratch store: chatting is not blocked
    assert chat.store.create(title="Meanwhile").id
    window.banner.show_report(report)
    window.banner.action_button.click()
    qtbot.waitUntil(lambda: bool(list(data_dir().glob("chats.db.damaged-*"))), timeout=10_000)
    qtbot.waitUntil(lambda: chat.store.path == data_dir() / "chats.db", timeout=10_000)
    assert [c.title for c in ChatStore().list()] in ([], ["New chat"])
