"""The text a window shows, as `gui --screenshot --text` writes it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

from quantdesk.gui.visible_text import visible_text


def test_labels_buttons_and_rows_in_plain_text_and_hidden_widgets_left_out(qtbot):
    root = QWidget()
    qtbot.addWidget(root)
    layout = QVBoxLayout(root)
    layout.addWidget(QLabel("<b>Good picks</b><br>Q4_K_M &amp; more"))
    plain = QLabel("needs <4 GB> of RAM")
    plain.setTextFormat(Qt.TextFormat.PlainText)
    layout.addWidget(plain)
    layout.addWidget(QPushButton("&Open in Discover"))
    hidden = QLabel("not shown")
    layout.addWidget(hidden)
    hidden.hide()
    rows = QListWidget()
    rows.addItems(["first row", "second row"])
    layout.addWidget(rows)
    lines = visible_text(root)
    assert lines[:5] == ["Good picks", "Q4_K_M & more", "needs <4 GB> of RAM", "Open in Discover", "first row"]
    assert "second row" in lines and "not shown" not in lines
