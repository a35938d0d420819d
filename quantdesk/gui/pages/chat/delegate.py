"""How the conversation list draws a conversation: its title in bold over its model and date."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

SUBTITLE_ROLE = Qt.ItemDataRole.UserRole + 2  # the second, smaller line of an item


class ConversationDelegate(QStyledItemDelegate):
    """Two lines per conversation: the title in bold, then model and date, smaller and muted."""

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        title = QFont(option.font)
        title.setBold(True)
        small = QFont(option.font)
        small.setPointSizeF(max(6.0, option.font.pointSizeF() * 0.88))
        return title, small

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        title, small = self._fonts(option)
        return QSize(option.rect.width(), QFontMetrics(title).height() + QFontMetrics(small).height() + 12)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
              ) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        title_font, small_font = self._fonts(option)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        rect = option.rect.adjusted(8, 5, -8, -5)
        painter.save()
        painter.setFont(title_font)
        painter.setPen(option.palette.color(text_role))
        fm = QFontMetrics(title_font)
        title = fm.elidedText(str(index.data(Qt.ItemDataRole.DisplayRole) or ""), Qt.TextElideMode.ElideRight,
                              rect.width())
        painter.drawText(rect.left(), rect.top() + fm.ascent(), title)
        painter.setFont(small_font)
        colour = option.palette.color(text_role)
        if not selected:
            colour = option.palette.color(QPalette.ColorRole.PlaceholderText)
        painter.setPen(colour)
        sm = QFontMetrics(small_font)
        subtitle = sm.elidedText(str(index.data(SUBTITLE_ROLE) or ""), Qt.TextElideMode.ElideRight, rect.width())
        painter.drawText(rect.left(), rect.top() + fm.height() + 2 + sm.ascent(), subtitle)
        painter.restore()
