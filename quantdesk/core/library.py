"""The model library: installed GGUF models with their hashes and origin, in SQLite.

SQLite (WAL, one transaction per change) keeps the index whole through a crash mid-write.
A model is one row; split models keep every part's path and hash in ``files``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantdesk.core.errors import QuantDeskError
from quantdesk.core.model_info import SPLIT_RE, load_model_info
from quantdesk.core.paths import data_dir, models_dir

SOURCES = ("downloaded", "quantized", "imported")
_SCHEMA = """
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
    verified_at REAL
);
"""


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

    @property
    def path(self) -> str:
        return self.files[0]["path"]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "repo": self.repo, "path": self.path, "quant": self.quant or "unknown",
                "size": self.size, "sha256": self.sha256, "source": self.source, "files": self.files,
                "verified_at": self.verified_at, "added_at": self.added_at,
                "source_sha256": self.source_sha256}


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while data := fh.read(chunk):
            sha.update(data)
    return sha.hexdigest()


def model_name_for(path: str) -> str:
    name = Path(path).name
    match = SPLIT_RE.match(name)
    return match["base"] if match else re.sub(r"\.gguf$", "", name, flags=re.I)


class Library:
    def __init__(self, db_path: Path | None = None) -> None:
        self.db_path = db_path or data_dir() / "library.db"
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.row_factory = sqlite3.Row
        return db

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
            db.execute("INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?,?,?,?)",
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

    def verify(self, key: str) -> tuple[LibraryModel, list[str]]:
        """Re-hash every file against the recorded hash; returns the problems found."""
        model = self.get(key)
        problems = []
        for f in model.files:
            path = Path(f["path"])
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            actual = sha256_file(path)
            if actual != f["sha256"]:
                problems.append(f"{path}: sha256 {actual} does not match the recorded {f['sha256']}")
        if not problems:
            with closing(self._connect()) as db, db:
                db.execute("UPDATE models SET verified_at = ? WHERE name = ?", (time.time(), model.name))
        return model, problems

    def import_file(self, path: str | Path) -> LibraryModel:
        """Register an existing GGUF without copying it; a broken file raises and is not added."""
        path = Path(path).expanduser().absolute()
        info = load_model_info(path)  # raises GGUFError for anything that is not a whole model
        existing = self.find(str(path))
        if existing is not None:
            return existing
        files = [{"path": str(Path(p).absolute()), "size": Path(p).stat().st_size, "sha256": sha256_file(Path(p))}
                 for p in info.files]
        return self.add(files=files, source="imported", quant=info.quant)

    @staticmethod
    def _row(r: sqlite3.Row) -> LibraryModel:
        return LibraryModel(name=r["name"], repo=r["repo"], quant=r["quant"], size=r["size"], sha256=r["sha256"],
                            source=r["source"], files=json.loads(r["files"]), added_at=r["added_at"],
                            verified_at=r["verified_at"], source_sha256=r["source_sha256"])
