"""A damaged data file (chats.db, library.db, downloads.db) is named, set aside on request and
replaced, and never takes the other data with it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import gguf_factory as factory


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quantdesk", *args], capture_output=True, text=True, timeout=timeout)


def data_dir() -> Path:
    from quantdesk.base.paths import data_dir as where

    return where()


def damage(path: Path) -> None:
    """Overwrite the start of the file's pages as a bad sector or a crashed copy would (after
    folding the write-ahead log in, so no newer copy of those pages hides the damage)."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for i in range(100, min(len(data), 4096)):
        data[i] = 0xAA
    path.write_bytes(bytes(data))


@pytest.fixture
def stocked(tmp_path, tiny_model):
    """A library with one model, one stored conversation, one queued download."""
    from quantdesk.chat.store import ChatStore

    assert run_cli("import", str(tiny_model)).returncode == 0
    store = ChatStore()
    conv = store.create(title="Kept conversation")
    store.add_message(conv.id, "user", "hello")
    return tiny_model


@pytest.mark.parametrize("verb, name", [(("list",), "library.db"), (("chats",), "chats.db"),
                                        (("downloads",), "downloads.db")])
def test_a_damaged_file_is_named_with_the_way_out(stocked, verb, name):
    assert run_cli(*verb).returncode == 0  # the file exists and works
    damage(data_dir() / name)
    out = run_cli(*verb)
    assert out.returncode == 1
    assert name in out.stderr and "is damaged and cannot be read" in out.stderr
    assert f"quantdesk repair {name.removesuffix('.db')}" in out.stderr
    assert "unexpected error" not in out.stderr.lower()


def test_repair_keeps_the_damaged_copy_and_starts_anew_without_touching_the_rest(stocked):
    damage(data_dir() / "chats.db")
    out = run_cli("repair", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["chats"]["state"] == "replaced" and Path(report["chats"]["kept_as"]).exists()
    assert report["library"]["state"] == "ok" and report["downloads"]["state"] in ("ok", "absent")
    chats = run_cli("chats", "--json")
    assert chats.returncode == 0 and json.loads(chats.stdout) == []
    (model,) = json.loads(run_cli("list", "--json").stdout)  # the library was not touched
    assert model["path"] == str(stocked)


def test_a_damaged_library_comes_back_from_the_models_folder(tmp_path):
    from quantdesk.base.settings import models_dir

    folder = models_dir() / "someorg" / "Tiny-GGUF"
    folder.mkdir(parents=True)
    model = factory.write_model(folder / "Tiny-Q8_0.gguf", factory.TINY, "F16")
    assert run_cli("import", str(model)).returncode == 0
    damage(data_dir() / "library.db")
    assert run_cli("list").returncode == 1
    out = run_cli("repair", "library")
    assert out.returncode == 0 and "library.db was damaged" in out.stdout and "1 models" in out.stdout
    (entry,) = json.loads(run_cli("list", "--json").stdout)
    assert entry["repo"] == "someorg/Tiny-GGUF" and entry["source"] == "downloaded"
    assert list(data_dir().glob("library.db.damaged-*"))


def test_chat_with_a_damaged_chats_db_says_so_before_loading_anything(stocked):
    damage(data_dir() / "chats.db")
    out = run_cli("chat", str(stocked), "--prompt", "hi", "--max-tokens", "2")
    assert out.returncode == 1 and "chats.db" in out.stderr and "quantdesk repair chats" in out.stderr
    assert "Loading" not in out.stderr  # refused before a model was loaded for nothing
