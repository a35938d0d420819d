"""The library index as a Qt table model: a thin adapter over ``Library.models()``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from quantdesk.base.units import fmt_bytes
from quantdesk.gui.theme import MUTED
from quantdesk.gui.theme import tone as pick_tone
from quantdesk.library.index import LibraryModel

COLUMNS = ("Name", "Quant", "Size", "Source", "Repository", "Verified")
NAME, QUANT, SIZE, SOURCE, REPO, VERIFIED = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
_TONES = {"ok": ("#15803d", "#56d364"), "bad": ("#b91c1c", "#ff7b72"), "muted": MUTED}  # (light, dark)
Index = QModelIndex | QPersistentModelIndex


def verified_text(model: LibraryModel, missing: bool, checking: bool) -> tuple[str, str, str]:
    """(cell text, tone, tooltip) of the Verified column."""
    if checking:
        return "checking…", "muted", "Re-hashing the file(s) now"
    if missing:
        return "✗ file missing", "bad", "Not found on disk: " + ", ".join(f["path"] for f in model.files
                                                                        if not Path(f["path"]).is_file())
    if model.problems:
        return "✗ does not match", "bad", "\n".join(model.problems)
    if model.verified_at:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(model.verified_at))
        return f"✓ {when}", "ok", f"SHA-256 of every file matched the recorded hash at {when}"
    return "not checked", "muted", "Verify re-hashes the file(s) against the recorded SHA-256"


class LibraryTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[LibraryModel] = []
        self.missing: set[str] = set()   # names of models with a file gone from disk
        self.checking: str | None = None  # the model being verified

    def set_models(self, models: list[LibraryModel]) -> None:
        self.beginResetModel()
        self.models = models
        self.missing = {m.name for m in models if not all(Path(f["path"]).is_file() for f in m.files)}
        self.endResetModel()

    def set_checking(self, name: str | None) -> None:
        self.checking = name
        if self.models:
            self.dataChanged.emit(self.index(0, VERIFIED), self.index(len(self.models) - 1, VERIFIED))

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self.models)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt API
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        model, column = self.models[index.row()], index.column()
        if column == VERIFIED:
            text, tone, tip = verified_text(model, model.name in self.missing, model.name == self.checking)
            if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
                return text
            if role == Qt.ItemDataRole.ForegroundRole:
                return QColor(pick_tone(*_TONES[tone]))
            if role == Qt.ItemDataRole.ToolTipRole:
                return tip
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return [model.name, model.quant or "?", fmt_bytes(model.size), model.source, model.repo or "—"][column]
        if role == SORT_ROLE:
            return model.size if column == SIZE else str(self.data(index)).lower()
        if role == Qt.ItemDataRole.ToolTipRole and column == NAME:
            return "\n".join(f["path"] for f in model.files)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
