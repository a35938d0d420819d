"""Conversations persist per message; a reply cut by a crash is kept and marked."""

from __future__ import annotations

import json

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.store import ChatStore


def test_conversation_round_trip_search_rename_delete(tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    a = store.create("Pasta", model="m.gguf", system_prompt="You cook.")
    store.add_message(a.id, "user", "How long to boil spaghetti?")
    store.add_message(a.id, "assistant", "About 9 minutes.", figures={"tokens": 5})
    b = store.create("Other")
    store.add_message(b.id, "user", "Tell me about Mars")
    assert [c.title for c in store.list()] == ["Other", "Pasta"]
    assert [c.id for c in store.list("spaghetti")] == [a.id]
    assert [c.id for c in store.list("past")] == [a.id]
    store.rename(a.id, "Cooking")
    conv = ChatStore(tmp_path / "chats.db").get(a.id)  # a fresh connection sees it all
    assert conv.title == "Cooking" and conv.system_prompt == "You cook."
    assert [(m.role, m.content) for m in conv.messages] == [("user", "How long to boil spaghetti?"),
                                                            ("assistant", "About 9 minutes.")]
    assert conv.messages[1].figures == {"tokens": 5}
    store.delete(b.id)
    assert [c.id for c in store.list()] == [a.id]
    with pytest.raises(QuantDeskError):
        store.get(b.id)
    with pytest.raises(QuantDeskError):
        store.rename(a.id, "  ")


def test_streaming_reply_is_marked_interrupted_on_next_open(tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    c = store.create()
    store.add_message(c.id, "user", "Hi")
    reply = store.add_message(c.id, "assistant", "", status="streaming")
    store.update_message(reply.id, content="Hel")
    store.update_message(reply.id, content="Hello wor")
    # no clean finish: the process "died" here
    again = ChatStore(tmp_path / "chats.db").get(c.id)
    assert again.messages[-1].content == "Hello wor" and again.messages[-1].status == "interrupted"


def test_truncate_after_drops_later_messages_only(tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    c = store.create()
    ids = [store.add_message(c.id, r, t).id for r, t in [("user", "1"), ("assistant", "2"), ("user", "3"),
                                                           ("assistant", "4")]]
    store.truncate_after(c.id, ids[2])
    assert [m.content for m in store.get(c.id).messages] == ["1", "2", "3"]
    store.truncate_after(c.id, ids[1], inclusive=True)
    assert [m.content for m in store.get(c.id).messages] == ["1"]
    other = store.create()
    with pytest.raises(QuantDeskError):
        store.truncate_after(other.id, ids[0])


def test_exports_markdown_and_json(tmp_path):
    store = ChatStore(tmp_path / "chats.db")
    c = store.create("Code", model="qwen.gguf", system_prompt="Be exact.")
    store.add_message(c.id, "user", "Show a loop")
    store.add_message(c.id, "assistant", "```python\nfor i in range(3):\n    print(i)\n```", status="stopped")
    md = store.export_markdown(c.id)
    assert md.startswith("# Code\n") and "*Model: qwen.gguf*" in md and "Be exact." in md
    assert "**Assistant** *(stopped)*" in md and "```python\nfor i in range(3):" in md
    data = json.loads(store.export_json(c.id))
    assert data["title"] == "Code" and [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["status"] == "stopped"
