"""The model library: installed GGUF models with their hashes and origin, in SQLite.

SQLite (WAL, one transaction per change) keeps the index whole through a crash mid-write.
A model is one row; split models keep every part's path and hash in ``files``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.base import sqlite_db
from quantdesk.base.errors import QuantDeskError, explain
from quantdesk.base.paths import data_dir
from quantdesk.base.settings import models_dir
from quantdesk.gguf.model_info import SPLIT_RE, load_model_info, split_parts

SOURCES = ("downloaded", "quantized", "converted+quantized", "imported")
SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    repo TEXT,
    quant TEXT,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    files TEXT NOT NULL,          -- JSON list of {"path", "size", "sha256"}
    source_sha256 TEXT,           -- quantized: the input's hash
    added_at REAL NOT NULL,
    verified_at REAL,             -- the last verification that passed (adding counts: files are hashed then)
    problems TEXT                 -- JSON list: what the last verification found wrong; NULL when it passed
);
"""
Progress = Callable[[int, int], None]  # (bytes hashed so far, bytes to hash in all)


ImportProgress = Callable[[int, int, Path], None]  # (bytes done, bytes in all, the file being read)


class HashingCancelled(QuantDeskError):
    """A verify or import was cancelled mid-hash; nothing was recorded."""


@dataclass
class LibraryModel:
    name: str
    repo: str | None
    quant: str | None
    size: int
    sha256: str
    source: str
    files: list[dict[str, Any]]
    added_at: float
    verified_at: float | None = None
    source_sha256: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.files[0]["path"]

    @property
    def verified(self) -> bool:
        """Its files matched their recorded hashes the last time they were checked."""
        return self.verified_at is not None and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "repo": self.repo, "path": self.path, "quant": self.quant or "unknown",
                "size": self.size, "sha256": self.sha256, "source": self.source, "files": self.files,
                "verified_at": self.verified_at, "added_at": self.added_at,
                "source_sha256": self.source_sha256, "problems": self.problems}


def sha256_file(path: Path, chunk: int = 8 << 20, progress: Callable[[int], None] | None = None,
                cancel: threading.Event | None = None) -> str:
    """``progress`` gets each chunk's length; ``cancel`` is checked between chunks (files run to GBs)."""
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while data := fh.read(chunk):
            if cancel is not None and cancel.is_set():
                raise HashingCancelled(f"cancelled while hashing {path.name}")
            sha.update(data)
            if progress is not None:
                progress(len(data))
    return sha.hexdigest()


def _hasher(total: int, progress: Progress | None) -> Callable[[int], None] | None:
    """Per-chunk byte counts summed into (done, total) over several files."""
    if progress is None:
        return None
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    return step


def find_ggufs(paths: Iterable[str | Path]) -> list[Path]:
    """The GGUF models among files and folders (searched recursively, e.g. an LM Studio or Hugging Face
    cache folder), one path per model: a split model is named by its first part."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            candidates = sorted((p for p in path.rglob("*") if p.suffix.lower() == ".gguf" and p.is_file()), key=str)
        else:
            candidates = [path]  # picked by name: whatever it is, the import says why it is not a model
        for candidate in candidates:
            match = SPLIT_RE.match(candidate.name)
            first = candidate.with_name(f"{match['base']}-00001-of-{match['count']}.gguf") if match else candidate
            found.setdefault(first if first.is_file() else candidate)  # else the import names the missing part
    return list(found)


@dataclass
class ImportOutcome:
    imported: list[LibraryModel] = field(default_factory=list)
    known: list[LibraryModel] = field(default_factory=list)       # already in the library
    failed: list[tuple[Path, str]] = field(default_factory=list)  # not a usable model, and why
    cancelled: bool = False


def _model_bytes(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in split_parts(path))
    except (QuantDeskError, OSError):
        return 0


def model_name_for(path: str) -> str:
    name = Path(path).name
    match = SPLIT_RE.match(name)
    return match["base"] if match else re.sub(r"\.gguf$", "", name, flags=re.I)


class Library:
    def __init__(self, db_path: Path | None = None) -> None:
        self.db_path = db_path or data_dir() / "library.db"
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)
            columns = {r["name"] for r in db.execute("PRAGMA table_info(models)")}
            if "problems" not in columns:  # a library made before verification results were kept
                db.execute("ALTER TABLE models ADD COLUMN problems TEXT")

    def _connect(self) -> sqlite3.Connection:
        return sqlite_db.connect(self.db_path, timeout=30)  # WAL; never waits for an fsync on the GUI thread

    def add(self, *, files: list[dict[str, Any]], source: str, repo: str | None = None, quant: str | None = None,
            name: str | None = None, source_sha256: str | None = None) -> LibraryModel:
        if source not in SOURCES:
            raise ValueError(source)
        name = self._free_name(name or model_name_for(files[0]["path"]), repo, files[0]["path"])
        now = time.time()
        model = LibraryModel(name=name, repo=repo, quant=quant, size=sum(f["size"] for f in files),
                             sha256=files[0]["sha256"], source=source, files=files, added_at=now, verified_at=now,
                             source_sha256=source_sha256)
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO models (name, repo, quant, size, sha256, source, files, source_sha256,"
                       " added_at, verified_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (model.name, repo, quant, model.size, model.sha256, source, json.dumps(files),
                        source_sha256, now, now))
        return model

    def _free_name(self, base: str, repo: str | None, path: str) -> str:
        existing = self.find(base)
        if existing is None or existing.path == path:
            return base
        owner = (repo or "local").split("/")[0]
        name, i = f"{owner}--{base}", 2
        while (other := self.find(name)) is not None and other.path != path:
            name, i = f"{owner}--{base}-{i}", i + 1
        return name

    def models(self) -> list[LibraryModel]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM models ORDER BY added_at").fetchall()
        return [self._row(r) for r in rows]

    def find(self, key: str) -> LibraryModel | None:
        """By name, or by the path of any of its files."""
        for model in self.models():
            if model.name == key or any(Path(f["path"]) == Path(key).expanduser().absolute() or f["path"] == key
                                        for f in model.files):
                return model
        return None

    def get(self, key: str) -> LibraryModel:
        model = self.find(key)
        if model is None:
            raise QuantDeskError(f"'{key}' is not in the library; `quantdesk list` shows what is")
        return model

    def remove(self, key: str, delete_files: bool = True) -> LibraryModel:
        model = self.get(key)
        if delete_files and model.source != "imported":  # imported files belong to the user
            root = models_dir().resolve()
            for f in model.files:
                path = Path(f["path"])
                if path.resolve().is_relative_to(root):
                    path.unlink(missing_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM models WHERE name = ?", (model.name,))
        return model

    def verify(self, key: str, progress: Progress | None = None,
               cancel: threading.Event | None = None) -> tuple[LibraryModel, list[str]]:
        """Re-hash every file against the recorded hash; returns the problems found and records the
        result (a failed check marks the model not verified until a later check passes)."""
        model = self.get(key)
        step = _hasher(sum(f["size"] for f in model.files), progress)
        problems = []
        for f in model.files:
            path = Path(f["path"])
            if not path.is_file():
                problems.append(f"{path}: missing")
                if step is not None:
                    step(f["size"])
                continue
            actual = sha256_file(path, progress=step, cancel=cancel)
            if actual != f["sha256"]:
                problems.append(f"{path}: sha256 {actual} does not match the recorded {f['sha256']}")
        with closing(self._connect()) as db, db:
            if problems:
                db.execute("UPDATE models SET verified_at = NULL, problems = ? WHERE name = ?",
                           (json.dumps(problems), model.name))
            else:
                db.execute("UPDATE models SET verified_at = ?, problems = NULL WHERE name = ?",
                           (time.time(), model.name))
        return model, problems

    def relocate(self, moved: dict[str, str]) -> int:
        """Point recorded files at their new paths (``{old path: new path}``), all models in one
        transaction, so a move is recorded whole or not at all; returns how many models changed."""
        changed = 0
        with closing(self._connect()) as db, db:
            for r in db.execute("SELECT name, files FROM models").fetchall():
                files = json.loads(r["files"])
                updated = [{**f, "path": moved.get(f["path"], f["path"])} for f in files]
                if updated != files:
                    db.execute("UPDATE models SET files = ? WHERE name = ?", (json.dumps(updated), r["name"]))
                    changed += 1
        return changed

    def import_file(self, path: str | Path, progress: Progress | None = None,
                    cancel: threading.Event | None = None) -> LibraryModel:
        """Register an existing GGUF without copying it; a broken file raises and is not added."""
        path = Path(path).expanduser().absolute()
        info = load_model_info(path)  # raises GGUFError for anything that is not a whole model
        existing = self.find(str(path))
        if existing is not None:
            return existing
        parts = [Path(p).absolute() for p in info.files]
        step = _hasher(sum(p.stat().st_size for p in parts), progress)
        files = [{"path": str(p), "size": p.stat().st_size, "sha256": sha256_file(p, progress=step, cancel=cancel)}
                 for p in parts]
        return self.add(files=files, source="imported", quant=info.quant)

    def import_paths(self, paths: Iterable[str | Path], progress: ImportProgress | None = None,
                     cancel: threading.Event | None = None) -> ImportOutcome:
        """Import every model among files and folders; broken files are listed with the reason, not added.
        A cancel keeps what was imported before it."""
        found = find_ggufs(paths)
        sizes = [_model_bytes(p) for p in found]
        total, before = sum(sizes), 0
        outcome = ImportOutcome()
        for path, size in zip(found, sizes):
            if cancel is not None and cancel.is_set():
                outcome.cancelled = True
                break
            step = None if progress is None else (lambda done, _, p=path, b=before: progress(b + done, total, p))
            known = self.find(str(path))
            try:
                model = self.import_file(path, progress=step, cancel=cancel)
            except HashingCancelled:
                outcome.cancelled = True
                break
            except QuantDeskError as exc:
                outcome.failed.append((path, str(exc)))
            except OSError as exc:
                outcome.failed.append((path, explain(exc).sentence))
            else:
                (outcome.known if known is not None else outcome.imported).append(model)
            before += size
            if progress is not None:
                progress(before, total, path)
        return outcome

    @staticmethod
    def _row(r: sqlite3.Row) -> LibraryModel:
        return LibraryModel(name=r["name"], repo=r["repo"], quant=r["quant"], size=r["size"], sha256=r["sha256"],
                            source=r["source"], files=json.loads(r["files"]), added_at=r["added_at"],
                            verified_at=r["verified_at"], source_sha256=r["source_sha256"],
                            problems=json.loads(r["problems"]) if r["problems"] else [])


def restart_damaged_library(db_path: Path | None = None) -> tuple[Path, ImportOutcome]:
    """Set a damaged ``library.db`` aside and start a new one from what the models folder holds:
    files under ``<models>/<org>/<repo>/`` come back as downloads of that repo (hashed again), any
    other model there as imported. Returns where the damaged file went and what was found."""
    library_db = db_path or data_dir() / "library.db"
    aside = sqlite_db.set_aside(library_db)
    library = Library(library_db)
    root = models_dir()
    outcome = ImportOutcome()
    for path in find_ggufs([root]) if root.is_dir() else []:
        try:
            info = load_model_info(path)
            parts = [Path(p).absolute() for p in info.files]
            files = [{"path": str(p), "size": p.stat().st_size, "sha256": sha256_file(p)} for p in parts]
            rel = path.absolute().relative_to(root.absolute()).parts
            repo = f"{rel[0]}/{rel[1]}" if len(rel) >= 3 else None
            outcome.imported.append(library.add(files=files, source="downloaded" if repo else "imported",
                                                repo=repo, quant=info.quant))
        except (QuantDeskError, OSError, ValueError) as exc:
            outcome.failed.append((path, str(exc)))
    return aside, outcome
