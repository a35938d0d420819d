"""Conversations against a real model child: replies persist, regenerate/edit, context overflow, fallbacks."""

from __future__ import annotations

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.engine import Engine, Finished, LoadSettings, Token
from quantdesk.chat.sampling import Sampling
from quantdesk.chat.session import ChatSession, Notice
from quantdesk.chat.store import ChatStore
from tests.support import gguf_factory as factory

# Random weights emit noise; ban the raw-byte tokens (a lone UTF-8 lead byte makes llama-cpp-python hold the
# stream back) and generate to max_tokens.
NO_BYTES = {str(i): -100.0 for i in range(3, 259)}
SAMPLING = Sampling(max_tokens=12, seed=1, ignore_eos=True, logit_bias=NO_BYTES)


def _engine(path, log, n_ctx=512) -> Engine:
    eng = Engine(path, LoadSettings(n_ctx=n_ctx, n_threads=2), log_path=log)
    eng.start(timeout=120)
    return eng


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    d = tmp_path_factory.mktemp("chat")
    path = factory.write_model(d / "chatty.gguf", factory.TINY, "F16")
    eng = _engine(path, d / "e.log")
    yield eng
    eng.stop()


@pytest.fixture
def store(tmp_path):
    return ChatStore(tmp_path / "chats.db")


def test_send_streams_and_persists_the_reply_with_figures(engine, store):
    s = ChatSession(engine, store, model_name="chatty", system_prompt="Be brief.", sampling=SAMPLING)
    events = list(s.send("Tell me a story about a lighthouse keeper"))
    assert sum(isinstance(e, Token) for e in events) >= 6 and isinstance(events[-1], Finished)
    conv = store.get(s.conversation_id)
    assert conv.title == "Tell me a story about a lighthouse keeper"
    user, reply = conv.messages
    assert (user.role, reply.role, reply.status) == ("user", "assistant", "complete")
    assert reply.content == events[-1].text and reply.content
    assert reply.figures["tokens"] == 12 and reply.figures["ttft_s"] > 0 and reply.figures["context_used"] > 12


def test_regenerate_replaces_only_the_last_reply(engine, store):
    s = ChatSession(engine, store, sampling=SAMPLING)
    list(s.send("first"))
    list(s.send("second"))
    before = store.get(s.conversation_id).messages
    list(s.regenerate())
    after = store.get(s.conversation_id).messages
    assert [m.content for m in after[:3]] == [m.content for m in before[:3]]
    assert len(after) == 4 and after[3].id != before[3].id and after[3].status == "complete"


def test_edit_forgets_everything_after_the_edited_turn(engine, store):
    s = ChatSession(engine, store, sampling=SAMPLING)
    list(s.send("first"))
    list(s.send("second"))
    first = store.get(s.conversation_id).messages[0]
    list(s.edit(first.id, "first, edited"))
    msgs = store.get(s.conversation_id).messages
    assert [(m.role, m.content) for m in msgs[:1]] == [("user", "first, edited")] and len(msgs) == 2
    reply = msgs[1]
    with pytest.raises(QuantDeskError):
        list(s.edit(reply.id, "not mine"))


def test_stop_keeps_the_partial_reply_marked_stopped(engine, store):
    s = ChatSession(engine, store, sampling=SAMPLING.with_(max_tokens=400))
    seen = 0
    for event in s.send("go on forever"):
        if isinstance(event, Token):
            seen += 1
            if seen == 3:
                s.stop()
    reply = store.get(s.conversation_id).messages[-1]
    assert reply.status == "stopped" and reply.content and reply.figures["finish_reason"] == "stopped"
    assert reply.figures["tokens"] < 400  # the tiny model runs ~1000 tok/s: a few dozen land before the stop


def test_overflow_drops_oldest_turns_but_keeps_the_system_prompt(engine, store):
    s = ChatSession(engine, store, system_prompt="SYSTEM-RULES", sampling=SAMPLING)
    words = " ".join(["lorem"] * 10)  # ~70 tokens a message: a few fit in 512
    for i in range(6):
        store.add_message(s.conversation_id, "user", f"Q{i} {words}")
        store.add_message(s.conversation_id, "assistant", f"A{i} {words}")
    store.add_message(s.conversation_id, "user", "the newest question")
    prompt, n, dropped = s.fit_prompt(store.get(s.conversation_id), 64)
    assert n <= 512 - 64 and dropped >= 2 and dropped % 2 == 0
    assert prompt.startswith("<|im_start|>system\nSYSTEM-RULES") and "Q0 " not in prompt
    assert "the newest question" in prompt and "<|im_start|>user\nQ" in prompt  # history starts at a user turn
    events = list(s.regenerate())
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert any("oldest" in t and "512-token context" in t for t in notices)
    assert events[-1].finish_reason == "length"


def test_a_message_longer_than_the_context_is_a_clear_error(engine, store):
    s = ChatSession(engine, store, sampling=SAMPLING)
    with pytest.raises(QuantDeskError, match="context holds 512"):
        list(s.send(" ".join(["lorem"] * 2000)))


def test_model_without_template_uses_named_fallback(tmp_path, store):
    path = factory.write_model(tmp_path / "plain.gguf", factory.TINY, "F16", chat_template=None)
    with _engine(path, tmp_path / "e.log") as eng:
        s = ChatSession(eng, store, sampling=SAMPLING)
        assert s.template.source == "chatml"
        events = list(s.send("hello"))
        assert any(isinstance(e, Notice) and "no chat template" in e.text and "chatml" in e.text for e in events)
        assert events[-1].tokens == 12


def test_regenerate_keeps_every_answer_to_flip_between(engine, store):
    session = ChatSession(engine, store, sampling=SAMPLING)
    list(session.send("Hello"))
    first = session.conversation.messages[-1]
    list(session.regenerate())
    list(session.regenerate())
    reply = session.conversation.messages[-1]
    assert len(session.conversation.messages) == 2  # still one reply, with three answers
    assert [v["content"] for v in reply.versions][0] == first.content and reply.version == 2
    assert reply.content == reply.versions[2]["content"]
    session.show_version(reply.id, 0)
    shown = session.conversation.messages[-1]
    assert shown.content == first.content and shown.version == 0
    assert shown.versions[2]["content"] == reply.content  # the one shown before is kept
    list(session.send("And then?"))  # the next reply builds on the answer shown
    assert [m.content for m in session.conversation.messages[:2]] == ["Hello", first.content]


def test_a_store_from_before_versions_gains_the_column_and_keeps_its_messages(tmp_path):
    import sqlite3

    path = tmp_path / "old-chats.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE conversations (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, model TEXT, "
            "system_prompt TEXT NOT NULL DEFAULT '', sampling TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, "
            "updated_at REAL NOT NULL);"
            "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id INTEGER NOT NULL, "
            "position INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL DEFAULT "
            "'complete', figures TEXT, created_at REAL NOT NULL);"
            "INSERT INTO conversations VALUES (1, 'Old', NULL, '', '{}', 1, 1);"
            "INSERT INTO messages VALUES (1, 1, 0, 'user', 'hi', 'complete', NULL, 1);")
    store = ChatStore(path)
    (message,) = store.get(1).messages
    assert message.content == "hi" and message.versions == []
