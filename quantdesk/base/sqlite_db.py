"""Connections to the app's small SQLite files (library, download queue) that never make the GUI
thread wait for the disk.

In WAL mode a commit with ``synchronous=NORMAL`` appends to the log without an fsync; what still
fsyncs is a checkpoint, and SQLite runs one whenever the *last* connection to a file closes. With
short-lived connections that is almost every close, and while a download is writing hundreds of MB
that fsync waits behind its dirty pages: measured 0.57–0.95 s on the GUI thread in
``bench/gui_responsiveness.py``. So one idle "keeper" connection stays open per file, and
connections made on the main thread never run the automatic checkpoint (worker threads, which do
most of the writing, do). The database stays consistent through a crash either way.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from contextlib import closing
from pathlib import Path

MAX_KEEPERS = 8  # files kept open at once (tests make many data folders; an app uses two or three)
_keepers: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_lock = threading.Lock()


def connect(path: str | Path, timeout: float = 10.0) -> sqlite3.Connection:
    """A new connection (WAL, ``synchronous=NORMAL``, rows as ``sqlite3.Row``); close it when done."""
    key = str(Path(path).absolute())
    _keep_open(key, timeout)
    db = sqlite3.connect(key, timeout=timeout)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA synchronous=NORMAL")
    if threading.current_thread() is threading.main_thread():
        db.execute("PRAGMA wal_autocheckpoint=0")
    return db


def prepare(path: str | Path, schema: str) -> None:
    """Create the file and its tables (idempotent ``CREATE … IF NOT EXISTS``) and keep it open: the
    first creation fsyncs, so an app does this off its GUI thread before a page needs the file."""
    with closing(connect(path)) as db, db:
        db.executescript(schema)


def _keep_open(key: str, timeout: float) -> None:
    with _lock:
        if key in _keepers:
            _keepers.move_to_end(key)
            return
        keeper = sqlite3.connect(key, timeout=timeout, check_same_thread=False)
        keeper.execute("PRAGMA journal_mode=WAL")  # persistent in the file: every later connection uses it
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the log: now it holds it
        _keepers[key] = keeper
        while len(_keepers) > MAX_KEEPERS:
            _keepers.popitem(last=False)[1].close()
