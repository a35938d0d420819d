"""Search results as a list: the model's name, then who publishes it (a badge for the model's own
organisation or a well-known quantizer) and how popular it is."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from quantdesk.hub.client import RepoSummary

SUMMARY_ROLE = Qt.ItemDataRole.UserRole + 1
BADGE_COLORS = {"model author": "#2E7D32", "known quantizer": "#1565C0"}


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k" if n >= 10_000 else f"{n:,}"


def popularity(r: RepoSummary) -> str:
    return f"{r.params / 1e9:.1f} B params" if r.params else f"↓ {_count(r.downloads)}"


def describe(r: RepoSummary) -> str:
    """The row in words (what screen readers and tooltips get)."""
    extras = [r.publisher] if r.publisher else []
    if r.gated:
        extras.append("gated: needs a token")
    extras += [f"{r.params / 1e9:.1f} B params"] if r.params else [f"{r.downloads:,} downloads", f"{r.likes:,} likes"]
    return f"{r.repo_id} — {', '.join(extras)}"


class ResultDelegate(QStyledItemDelegate):
    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return QSize(200, 2 * option.fontMetrics.height() + 12)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
              ) -> None:
        r: RepoSummary = index.data(SUMMARY_ROLE)
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, option.widget)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        pal = option.palette
        text = pal.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        dim = QColor(text)
        dim.setAlpha(170)
        owner, _, name = r.repo_id.partition("/")
        rect = option.rect.adjusted(8, 5, -8, -5)
        bold = QFont(option.font)
        bold.setBold(True)
        fm, bfm = QFontMetrics(option.font), QFontMetrics(bold)
        painter.save()
        painter.setFont(bold)
        painter.setPen(text)
        line1 = bfm.elidedText(name, Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect.left(), rect.top() + bfm.ascent(), line1)
        painter.setFont(option.font)
        y = rect.top() + bfm.height() + 2
        x = rect.left()
        painter.setPen(dim)
        owner_text = fm.elidedText(owner, Qt.TextElideMode.ElideRight, rect.width() // 2)
        painter.drawText(x, y + fm.ascent(), owner_text)
        x += fm.horizontalAdvance(owner_text) + 6
        if r.publisher:
            small = QFont(option.font)
            small.setPointSizeF(max(6.0, option.font.pointSizeF() * 0.85))
            sfm = QFontMetrics(small)
            pill = QRectF(x, y + 1, sfm.horizontalAdvance(r.publisher) + 10, fm.height() - 2)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(BADGE_COLORS.get(r.publisher, "#616161")))
            painter.drawRoundedRect(pill, 6, 6)
            painter.setFont(small)
            painter.setPen(QColor("white"))
            painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, r.publisher)
            painter.setFont(option.font)
            x = int(pill.right()) + 6
        painter.setPen(dim)
        rest = fm.elidedText(("gated · " if r.gated else "") + popularity(r), Qt.TextElideMode.ElideRight,
                             max(0, rect.right() - x))
        painter.drawText(x, y + fm.ascent(), rest)
        painter.restore()


class ResultsList(QListWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Search results")
        self.setItemDelegate(ResultDelegate(self))
        self.setUniformItemSizes(True)

    def show_rows(self, rows: list[RepoSummary]) -> None:
        self.blockSignals(True)
        self.clear()
        for r in rows:
            item = QListWidgetItem(describe(r))
            item.setData(SUMMARY_ROLE, r)
            item.setData(Qt.ItemDataRole.UserRole, r.repo_id)
            item.setToolTip(describe(r))
            self.addItem(item)
        self.blockSignals(False)

    def repos(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def select_repo(self, repo: str) -> None:
        """Highlight ``repo`` without re-triggering a plan (the caller is already planning it)."""
        self.blockSignals(True)
        self.setCurrentRow(self.repos().index(repo) if repo in self.repos() else -1)
        self.blockSignals(False)
