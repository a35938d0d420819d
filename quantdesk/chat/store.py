"""Conversations in SQLite (WAL): every message committed as it changes.

A reply is written while it streams (status ``streaming``), so a killed app loses nothing that was
shown; on the next open such a reply is marked ``interrupted``. In WAL mode with
``synchronous=NORMAL`` a commit is an append to the log without fsync — cheap enough per token,
and durable through a process crash (a power cut may lose the last moments).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.base import sqlite_db
from quantdesk.base.errors import QuantDeskError
from quantdesk.base.paths import data_dir

STATUSES = ("complete", "streaming", "stopped", "interrupted", "failed")
SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    model TEXT,
    system_prompt TEXT NOT NULL DEFAULT '',
    sampling TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete',
    figures TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, position);
"""


@dataclass
class Message:
    id: int
    role: str
    content: str
    status: str = "complete"
    figures: dict[str, Any] | None = None
    created_at: float = 0.0
    # a regenerated reply keeps every answer it had: [{"content", "status", "figures"}], oldest first,
    # and which of them is shown (its content is the message's); empty for a reply never regenerated
    versions: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def as_version(self) -> dict[str, Any]:
        return {"content": self.content, "status": self.status, "figures": self.figures}


@dataclass
class Conversation:
    id: int
    title: str
    model: str | None
    system_prompt: str
    sampling: dict[str, Any]
    created_at: float
    updated_at: float
    messages: list[Message] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = [m.to_json() for m in self.messages]
        return data


class ChatStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "chats.db"
        self._local = threading.local()
        with self._db() as db:
            db.executescript(SCHEMA)
            columns = {r["name"] for r in db.execute("PRAGMA table_info(messages)")}
            if "versions" not in columns:  # a store made before regenerate kept earlier answers
                try:
                    db.execute("ALTER TABLE messages ADD COLUMN versions TEXT")
                except sqlite3.OperationalError:  # another process added it a moment ago
                    pass
            db.execute("UPDATE messages SET status='interrupted' WHERE status='streaming'")

    def _db(self) -> sqlite3.Connection:
        """One connection per thread (the GUI streams on a worker thread)."""
        db = getattr(self._local, "db", None)
        if db is None:
            sqlite_db.check_intact(self.path)
            db = sqlite3.connect(self.path, timeout=10)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    # --- conversations ---------------------------------------------------------------------
    def create(self, title: str = "New chat", model: str | None = None, system_prompt: str = "",
               sampling: dict[str, Any] | None = None) -> Conversation:
        now = time.time()
        with self._db() as db:
            cur = db.execute("INSERT INTO conversations (title, model, system_prompt, sampling, created_at, updated_at)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (title, model, system_prompt, json.dumps(sampling or {}),
                                                           now, now))
        return self.get(int(cur.lastrowid))

    def list(self, query: str | None = None) -> list[Conversation]:
        """Newest first; ``query`` matches titles and message text (case-insensitive)."""
        sql = "SELECT * FROM conversations"
        args: tuple[Any, ...] = ()
        if query:
            like = f"%{query.replace('%', '').replace('_', '')}%"
            sql += (" WHERE title LIKE ? OR id IN (SELECT conversation_id FROM messages WHERE content LIKE ?)")
            args = (like, like)
        rows = self._db().execute(sql + " ORDER BY updated_at DESC, id DESC", args).fetchall()
        return [self._conversation(r) for r in rows]

    def get(self, conversation_id: int) -> Conversation:
        row = self._db().execute("SELECT * FROM conversations WHERE id=?", (conversation_id,)).fetchone()
        if row is None:
            raise QuantDeskError(f"no conversation with id {conversation_id}")
        conv = self._conversation(row)
        conv.messages = [self._message(r) for r in self._db().execute(
            "SELECT * FROM messages WHERE conversation_id=? ORDER BY position", (conversation_id,))]
        return conv

    def update(self, conversation_id: int, **changes: Any) -> None:
        allowed = {"title", "model", "system_prompt", "sampling"}
        bad = set(changes) - allowed
        if bad:
            raise ValueError(f"cannot change {sorted(bad)}")
        if "sampling" in changes:
            changes["sampling"] = json.dumps(changes["sampling"])
        self.get(conversation_id)
        sets = ", ".join(f"{k}=?" for k in changes)
        with self._db() as db:
            db.execute(f"UPDATE conversations SET {sets}, updated_at=? WHERE id=?",
                       (*changes.values(), time.time(), conversation_id))

    def rename(self, conversation_id: int, title: str) -> None:
        if not title.strip():
            raise QuantDeskError("a conversation needs a title")
        self.update(conversation_id, title=title.strip())

    def delete(self, conversation_id: int) -> None:
        self.get(conversation_id)
        with self._db() as db:
            db.execute("DELETE FROM messages WHERE conversation_id=?", (conversation_id,))
            db.execute("DELETE FROM conversations WHERE id=?", (conversation_id,))

    # --- messages --------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, status: str = "complete",
                    figures: dict[str, Any] | None = None) -> Message:
        now = time.time()
        with self._db() as db:
            position = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM messages WHERE conversation_id=?",
                                  (conversation_id,)).fetchone()[0]
            cur = db.execute("INSERT INTO messages (conversation_id, position, role, content, status, figures, "
                             "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (conversation_id, position, role, content, status,
                              json.dumps(figures) if figures else None, now))
            db.execute("UPDATE conversations SET updated_at=? WHERE id=?", (now, conversation_id))
        return Message(int(cur.lastrowid), role, content, status, figures, now)

    def update_message(self, message_id: int, content: str | None = None, status: str | None = None,
                       figures: dict[str, Any] | None = None) -> None:
        sets, args = [], []
        if content is not None:
            sets.append("content=?")
            args.append(content)
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"unknown status {status}")
            sets.append("status=?")
            args.append(status)
        if figures is not None:
            sets.append("figures=?")
            args.append(json.dumps(figures))
        if sets:
            with self._db() as db:
                db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id=?", (*args, message_id))

    def set_versions(self, message_id: int, versions: list[dict[str, Any]], current: int) -> None:
        """Keep ``versions`` (every answer a regenerated reply had) with ``current`` the one shown."""
        with self._db() as db:
            db.execute("UPDATE messages SET versions=? WHERE id=?",
                       (json.dumps({"all": versions, "current": current}), message_id))

    def show_version(self, message_id: int, index: int) -> Message:
        """Show another of a reply's answers: it becomes the message's content (and the history the
        next reply sees); the one shown before stays among the versions."""
        row = self._db().execute("SELECT * FROM messages WHERE id=?", (message_id,)).fetchone()
        if row is None:
            raise QuantDeskError(f"no message {message_id}")
        message = self._message(row)
        if not 0 <= index < len(message.versions):
            raise QuantDeskError(f"message {message_id} has no version {index + 1}")
        versions = list(message.versions)
        versions[message.version] = message.as_version()
        chosen = versions[index]
        with self._db() as db:
            db.execute("UPDATE messages SET content=?, status=?, figures=?, versions=? WHERE id=?",
                       (chosen["content"], chosen["status"],
                        json.dumps(chosen["figures"]) if chosen.get("figures") else None,
                        json.dumps({"all": versions, "current": index}), message_id))
        return self._message(self._db().execute("SELECT * FROM messages WHERE id=?", (message_id,)).fetchone())

    def truncate_after(self, conversation_id: int, message_id: int, inclusive: bool = False) -> None:
        """Forget every message after (or from) one: the basis of edit and regenerate."""
        row = self._db().execute("SELECT position FROM messages WHERE id=? AND conversation_id=?",
                                 (message_id, conversation_id)).fetchone()
        if row is None:
            raise QuantDeskError(f"message {message_id} is not in conversation {conversation_id}")
        op = ">=" if inclusive else ">"
        with self._db() as db:
            db.execute(f"DELETE FROM messages WHERE conversation_id=? AND position {op} ?",
                       (conversation_id, row["position"]))

    # --- export ----------------------------------------------------------------------------
    def export_markdown(self, conversation_id: int) -> str:
        conv = self.get(conversation_id)
        out = [f"# {conv.title}", ""]
        if conv.model:
            out += [f"*Model: {conv.model}*", ""]
        if conv.system_prompt:
            out += ["**System**", "", conv.system_prompt, ""]
        for m in conv.messages:
            label = {"user": "You", "assistant": "Assistant"}.get(m.role, m.role.title())
            mark = "" if m.status == "complete" else f" *({m.status})*"
            out += [f"**{label}**{mark}", "", m.content, ""]
        return "\n".join(out).rstrip() + "\n"

    def export_json(self, conversation_id: int) -> str:
        return json.dumps(self.get(conversation_id).to_json(), indent=2, ensure_ascii=False)

    @staticmethod
    def _conversation(r: sqlite3.Row) -> Conversation:
        return Conversation(r["id"], r["title"], r["model"], r["system_prompt"], json.loads(r["sampling"] or "{}"),
                            r["created_at"], r["updated_at"])

    @staticmethod
    def _message(r: sqlite3.Row) -> Message:
        kept = json.loads(r["versions"]) if "versions" in r.keys() and r["versions"] else {}
        return Message(r["id"], r["role"], r["content"], r["status"],
                       json.loads(r["figures"]) if r["figures"] else None, r["created_at"],
                       list(kept.get("all", [])), int(kept.get("current", 0)))
