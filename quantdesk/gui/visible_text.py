"""The text a window shows, as plain lines: what ``gui --screenshot PNG --text FILE`` writes next to
the picture, so scripts and tests (the installed-package test among them) can check what a page
says without reading pixels — a screen reader's view, roughly.
"""

from __future__ import annotations

import re
from html import unescape

from PySide6 import QtGui
from PySide6.QtCore import QAbstractItemModel, QModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QTextEdit,
    QWidget,
)

_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<br\s*/?>|</p>|</div>|</li>|</tr>|</h\d>", re.IGNORECASE)
MAX_ROWS = 200  # per list or table: enough to check, bounded for a long search


def plain(text: str) -> str:
    """Rich text as plain lines (labels here hold a little HTML)."""
    return unescape(_TAG.sub("", _BREAK.sub("\n", text))).replace("\u200b", "")  # (break hints in long names)


def _model_rows(model: QAbstractItemModel) -> list[str]:
    parent = QModelIndex()
    try:
        columns = model.columnCount(parent)
    except TypeError:  # list models keep columnCount private: one column
        columns = 1
    lines = []
    for row in range(min(model.rowCount(parent), MAX_ROWS)):
        cells = [model.data(model.index(row, col, parent), Qt.ItemDataRole.DisplayRole) for col in range(columns)]
        text = " | ".join(str(c) for c in cells if c not in (None, ""))
        if text:
            lines.append(text)
    return lines


def visible_text(root: QWidget) -> list[str]:
    """Every visible label, button, field, bar, list and table row under ``root``, in creation order."""
    lines: list[str] = []
    for w in [root, *root.findChildren(QWidget)]:
        if not w.isVisibleTo(root) and w is not root:
            continue
        if isinstance(w, QLabel):
            text = plain(w.text()) if w.textFormat() == Qt.TextFormat.RichText or (
                w.textFormat() == Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(w.text())) else w.text()
        elif isinstance(w, QAbstractButton):
            text = w.text().replace("&", "")
        elif isinstance(w, QGroupBox):
            text = w.title()
        elif isinstance(w, QComboBox):
            text = w.currentText()
        elif isinstance(w, QLineEdit):
            text = w.text() or w.placeholderText()
        elif isinstance(w, QProgressBar):
            text = w.text()
        elif isinstance(w, QTextEdit):
            text = w.toPlainText()
        elif isinstance(w, QAbstractItemView) and w.model() is not None:
            lines += _model_rows(w.model())
            continue
        else:
            continue
        lines += [line.strip() for line in text.splitlines() if line.strip()]
    return lines
