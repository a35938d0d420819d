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
import time
from collections import OrderedDict
from contextlib import closing
from pathlib import Path

from quantdesk.base.errors import QuantDeskError

MAX_KEEPERS = 8  # files kept open at once (tests make many data folders; an app uses two or three)
_keepers: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_lock = threading.Lock()


_checked: set[str] = set()


class DamagedDatabase(QuantDeskError):
    """One of the data folder's SQLite files cannot be read: it names the file and how to go on."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        what = {"chats.db": "the stored conversations", "library.db": "the library's index",
                "downloads.db": "the download queue"}.get(path.name, "QuantDesk's data")
        super().__init__(
            f"{path} ({what}) is damaged and cannot be read ({detail}); nothing else is affected",
            f"Run `quantdesk repair {path.stem}` (or use the window's “Start a new one”): the damaged file is kept "
            f"beside it as {path.name}.damaged-…, and a new one is started.")


def check_intact(path: str | Path) -> None:
    """Raise ``DamagedDatabase`` when the file exists but SQLite cannot read it (once per file and
    process: a quick_check reads every page, which for these small files is a few milliseconds)."""
    path = Path(path)
    key = str(path.absolute())
    if key in _checked or not path.exists():
        return
    try:
        with closing(sqlite3.connect(key, timeout=10)) as db:
            result = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.OperationalError:
        return  # locked, busy, unopenable (permissions, a folder, a full disk): not damage; the real open says so
    except sqlite3.DatabaseError as exc:
        raise DamagedDatabase(path, str(exc)) from None
    if result != ["ok"]:
        raise DamagedDatabase(path, "; ".join(result[:2]))
    _checked.add(key)


def set_aside(path: str | Path) -> Path:
    """Move a damaged file (and its WAL and shared-memory files) to ``NAME.damaged-STAMP`` so a new one
    can start; returns where it went. The damaged copy is kept for a later rescue, never deleted."""
    path = Path(path)
    key = str(path.absolute())
    with _lock:
        keeper = _keepers.pop(key, None)
        if keeper is not None:
            keeper.close()
    _checked.discard(key)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(str(path) + suffix)
        if part.exists():
            part.replace(Path(str(target) + suffix))
    return target


def connect(path: str | Path, timeout: float = 10.0) -> sqlite3.Connection:
    """A new connection (WAL, ``synchronous=NORMAL``, rows as ``sqlite3.Row``); close it when done.
    A file SQLite cannot read raises ``DamagedDatabase``."""
    key = str(Path(path).absolute())
    check_intact(key)
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
