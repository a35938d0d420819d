"""Chat page: load a model, talk to it, keep every conversation.

The page only shows and drives the core: ``plan_load`` + ``Engine.start`` load a model (on the
thread pool, cancellable), a ``ChatSession`` does every turn (on the page's reply thread, stoppable
within a token), and the transcript is drawn from the ``ChatStore`` — which the session writes at
every token — so what the pane shows is exactly what is kept.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QFont,
    QFontMetrics,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPalette,
    QShortcut,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.units import fmt_bytes
from quantdesk.chat.engine import Engine, EngineError, Finished, LoadReport, PlannedLoad, Token, plan_load
from quantdesk.chat.sampling import Sampling, defaults_for
from quantdesk.chat.session import ChatSession, Notice
from quantdesk.chat.store import ChatStore, Conversation, Message
from quantdesk.chat.template import template_for
from quantdesk.gui.errors import ErrorBridge
from quantdesk.gui.pages.chat.workers import reply_failure_sentence, sentence, stream_reply
from quantdesk.gui.tasks import SerialWorker, run_task
from quantdesk.gui.widgets.markdown_view import DARK, LIGHT, Theme, markdown_to_html
from quantdesk.hardware.machine import Hardware

CONTEXTS = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
OPEN_FILE = "__open_file__"
FILE_ROLE = Qt.ItemDataRole.UserRole + 1  # marks models opened as files (kept when the library list refreshes)
SUBTITLE_ROLE = Qt.ItemDataRole.UserRole + 2
ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System"}
STATUS_MARKS = {"stopped": ("■ stopped", "stopped"), "interrupted": ("⚠ interrupted", "interrupted"),
                "failed": ("⚠ failed", "interrupted"), "streaming": ("● writing…", "muted")}


def _when(ts: float) -> str:
    """Today's chats by time, older ones by date."""
    now = time.localtime()
    t = time.localtime(ts)
    if t.tm_year == now.tm_year and t.tm_yday == now.tm_yday:
        return time.strftime("%H:%M", t)
    return time.strftime("%b %d" if t.tm_year == now.tm_year else "%Y-%m-%d", t)


def _kv_suffix(kv_type: str | None) -> str:
    """" (q8_0 KV cache)" when the KV cache is quantized; nothing for the default f16."""
    return f" ({kv_type} KV cache)" if kv_type and kv_type != "f16" else ""


def figures_text(figures: dict[str, Any] | None) -> str:
    """One line of a reply's stored figures: tokens, TTFT, speeds, context used of n_ctx."""
    if not figures:
        return ""
    parts = []
    if figures.get("tokens") is not None:
        parts.append(f"{figures['tokens']} tokens")
    if figures.get("ttft_s"):
        parts.append(f"first token {figures['ttft_s']:.2f} s")
    if figures.get("tokens_per_s"):
        parts.append(f"{figures['tokens_per_s']:.1f} tok/s")
    if figures.get("prompt_tokens_per_s"):
        parts.append(f"prompt {figures['prompt_tokens_per_s']:,.0f} tok/s")
    if figures.get("context_used") and figures.get("n_ctx"):
        parts.append(f"context {figures['context_used']:,} of {figures['n_ctx']:,}")
    if figures.get("dropped_messages"):
        parts.append(f"{figures['dropped_messages']} oldest messages left out")
    return " · ".join(parts)


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


class ChatPage(QWidget):
    """Conversations on the left; model bar, transcript, settings and the message box on the right."""

    model_loaded = Signal()
    reply_ended = Signal()
    rendered = Signal()

    def __init__(self, hardware: Hardware, parent: QWidget | None = None, store: ChatStore | None = None,
                 errors: ErrorBridge | None = None) -> None:
        super().__init__(parent)
        self.hardware = hardware
        self.errors = errors  # in the window, problems go to its one error bridge; alone, to our banner
        self.store = store or ChatStore()
        self.engine: Engine | None = None
        self.session: ChatSession | None = None
        self.model_name: str | None = None
        self.conversation_id: int | None = None
        self.last_finished: Finished | None = None
        self.last_error: str | None = None
        self._loaded_args: tuple[str, str, int | None, str | None] | None = None  # (path, name, ctx, kv) for Reload
        self._planned_notes: list[str] = []
        self._template_note: str | None = None
        self._model_defaults = Sampling()
        self._load_generation = 0
        self._load_cancel: threading.Event | None = None
        self._load_done: threading.Event | None = None
        self._loading_name = ""
        self._loading_path = ""
        self._unload_note: str | None = None  # set: unload once the reply being stopped has ended
        self._streaming = False
        self._stream_conversation: int | None = None
        self._editing_id: int | None = None
        self._notices: list[str] = []
        self._notice_conversation: int | None = None
        self._death_reported = False
        self._populating = False
        self._shut_down = False
        self._code: dict[str, str] = {}
        self._html_cache: dict[tuple[Any, ...], tuple[str, dict[str, str]]] = {}
        self._signature: tuple[Any, ...] | None = None
        self._conv: Conversation | None = None
        self.tokens_seen = 0
        self._build()
        self._replies = SerialWorker("quantdesk-chat-reply")  # one thread: one chat-store connection
        self._render_timer = QTimer(self, singleShot=True, interval=30, timeout=self.render)
        self._poll_timer = QTimer(self, interval=150, timeout=self._schedule_render)  # prompt processing has no tokens
        self._health_timer = QTimer(self, interval=1000, timeout=self._check_engine)
        self._health_timer.start()
        self._settings_timer = QTimer(self, singleShot=True, interval=400, timeout=self._save_settings)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self.refresh_models()
        self.refresh_conversations()
        if self.conversation_list.count():
            self.open_conversation(self.conversation_list.item(0).data(Qt.ItemDataRole.UserRole))
        else:
            self.new_conversation()
        self._update_actions()

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        outer.addWidget(splitter)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 6, 0)
        title = QLabel("<h2 style='margin:0'>Chats</h2>")
        lv.addWidget(title)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search chats (Ctrl+F)")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setAccessibleName("Search conversations")
        self.search_edit.textChanged.connect(lambda _: self.refresh_conversations())
        lv.addWidget(self.search_edit)
        self.conversation_list = QListWidget()
        self.conversation_list.setAccessibleName("Conversations")
        self.conversation_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.conversation_list.setItemDelegate(ConversationDelegate(self.conversation_list))
        self.conversation_list.setUniformItemSizes(True)
        self.conversation_list.currentItemChanged.connect(self._list_selection_changed)
        lv.addWidget(self.conversation_list, 1)
        row = QHBoxLayout()
        self.new_button = self._button("New", "New conversation", self.new_conversation, "Start a new conversation")
        self.rename_button = self._button("Rename", "Rename conversation", lambda: self.rename_conversation())
        self.delete_button = self._button("Delete", "Delete conversation", lambda: self.delete_conversation())
        self.export_button = QToolButton()
        self.export_button.setText("Export ▾")
        self.export_button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0px; }")
        self.export_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.export_button.setAccessibleName("Export conversation")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("Markdown (.md)…", lambda: self._export_dialog("md"))
        menu.addAction("JSON (.json)…", lambda: self._export_dialog("json"))
        self.export_button.setMenu(menu)
        for b in (self.new_button, self.rename_button, self.delete_button, self.export_button):
            row.addWidget(b)
        lv.addLayout(row)
        left.setMinimumWidth(180)
        splitter.addWidget(left)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(6, 0, 0, 0)
        row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName("Model")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        self.model_combo.setPlaceholderText("Choose a model…")
        self.model_combo.activated.connect(self._model_activated)
        self._last_model_index = -1
        self.ctx_combo = QComboBox()
        self.ctx_combo.setAccessibleName("Context length")
        self.ctx_combo.setToolTip("Tokens of context to load the model with; Auto lets the planner choose")
        self.ctx_combo.addItem("Auto", None)
        for n in CONTEXTS:
            self.ctx_combo.addItem(f"{n:,}", n)
        self.load_button = self._button("Load", "Load model", lambda: self.load_model())
        self.cancel_load_button = self._button("Cancel", "Cancel loading", self.cancel_load)
        self.unload_button = self._button("Unload", "Unload model", self.unload_model)
        row.addWidget(QLabel("Model:"))
        row.addWidget(self.model_combo, 1)
        row.addWidget(QLabel("Context:"))
        row.addWidget(self.ctx_combo)
        for b in (self.load_button, self.cancel_load_button, self.unload_button):
            row.addWidget(b)
        rv.addLayout(row)
        self.loading_bar = QProgressBar()
        self.loading_bar.setRange(0, 0)
        self.loading_bar.setMaximumHeight(6)
        self.loading_bar.setTextVisible(False)
        self.loading_bar.setAccessibleName("Loading")
        self.loading_bar.hide()
        rv.addWidget(self.loading_bar)
        self.report_label = QLabel()
        self.report_label.setWordWrap(True)
        self.report_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report_label.setAccessibleName("Model status")
        self.report_label.setObjectName("reportLabel")
        self.report_label.setStyleSheet("#reportLabel { padding: 4px 6px; border-radius: 4px; "
                                        "background: palette(alternate-base); }")
        self.report_label.setText(f"No model loaded. {self._idle_hint()}")
        rv.addWidget(self.report_label)

        self.banner = QFrame()
        self.banner.setObjectName("errorBanner")
        self.banner.setStyleSheet("#errorBanner { background: #fdecea; border: 1px solid #f1aeb5; border-radius: 4px; }"
                                  "#errorBanner QLabel { color: #842029; }")
        self.banner.setAccessibleName("Error")
        bl = QHBoxLayout(self.banner)
        bl.setContentsMargins(8, 4, 4, 4)
        self.banner_label = QLabel()
        self.banner_label.setWordWrap(True)
        self.banner_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bl.addWidget(self.banner_label, 1)
        self.reload_button = self._button("Reload model", "Reload model", self.reload_model)
        bl.addWidget(self.reload_button)
        dismiss = self._button("✕", "Dismiss error", self.hide_error)
        dismiss.setFlat(True)
        dismiss.setFixedWidth(28)
        bl.addWidget(dismiss)
        self.banner.hide()
        rv.addWidget(self.banner)

        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.setChildrenCollapsible(False)
        self.transcript = QTextBrowser()
        self.transcript.setAccessibleName("Transcript")
        self.transcript.setOpenLinks(False)
        self.transcript.setOpenExternalLinks(False)
        self.transcript.anchorClicked.connect(self._anchor_clicked)
        self.transcript.setMinimumWidth(320)
        self._stick_to_bottom = True
        self._setting_html = False
        bar = self.transcript.verticalScrollBar()
        bar.actionTriggered.connect(self._user_scrolled)
        bar.valueChanged.connect(self._follow)
        bar.rangeChanged.connect(lambda _low, _high: self._follow())
        middle.addWidget(self.transcript)
        self.settings_panel = self._build_settings()
        middle.addWidget(self.settings_panel)
        middle.setStretchFactor(0, 1)
        self.settings_panel.hide()
        rv.addWidget(middle, 1)

        self.edit_bar = QFrame()
        eb = QHBoxLayout(self.edit_bar)
        eb.setContentsMargins(0, 0, 0, 0)
        eb.addWidget(QLabel("✎ Editing your last message — Ctrl+Enter answers it again; "
                            "later messages will be replaced."), 1)
        eb.addWidget(self._button("Cancel edit", "Cancel edit", self.cancel_edit))
        self.edit_bar.hide()
        rv.addWidget(self.edit_bar)
        self.input = QPlainTextEdit()
        self.input.setAccessibleName("Message")
        self.input.setPlaceholderText("Type a message — Ctrl+Enter sends, Esc stops a reply")
        self.input.setMaximumHeight(80)
        self.input.setMinimumHeight(60)
        self.input.installEventFilter(self)
        rv.addWidget(self.input)
        row = QHBoxLayout()
        self.send_button = self._button("Send", "Send message", self.send, "Send (Ctrl+Enter)")
        self.send_button.setDefault(True)
        self.stop_button = self._button("Stop", "Stop reply", self.stop, "Stop the reply (Esc)")
        self.regenerate_button = self._button("Regenerate", "Regenerate last reply", self.regenerate,
                                              "Answer your last message again")
        self.edit_button = self._button("Edit last", "Edit last message", self.edit_last,
                                        "Put your last message back in the box to change it")
        self.settings_button = QToolButton()
        self.settings_button.setText("⚙ Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setAccessibleName("Reply settings")
        self.settings_button.setToolTip("System prompt and sampling for this conversation")
        self.settings_button.toggled.connect(self.settings_panel.setVisible)
        self.status_label = QLabel()
        self.status_label.setAccessibleName("Chat status")
        self.status_label.setStyleSheet("color: palette(mid);")
        for b in (self.send_button, self.stop_button, self.regenerate_button, self.edit_button):
            row.addWidget(b)
        row.addWidget(self.status_label, 1)
        row.addWidget(self.settings_button)
        rv.addLayout(row)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([230, 770])

        for keys, slot in ((QKeySequence.StandardKey.Find, self.focus_search), ("Ctrl+Return", self.send),
                           ("Ctrl+Enter", self.send), ("Esc", self._escape), ("Ctrl+N", self.new_conversation)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

    def _button(self, text: str, name: str, slot: Any, tip: str | None = None) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(name)
        button.setAutoDefault(False)
        if tip:
            button.setToolTip(tip)
        button.clicked.connect(lambda _=False: slot())
        return button

    def _build_settings(self) -> QGroupBox:
        box = QGroupBox("Reply settings")
        box.setAccessibleName("Reply settings panel")
        box.setMinimumWidth(240)
        box.setMaximumWidth(320)
        column = QVBoxLayout(box)
        form = QFormLayout()
        column.addLayout(form)
        column.addStretch(1)
        self.system_edit = QPlainTextEdit()
        self.system_edit.setAccessibleName("System prompt")
        self.system_edit.setPlaceholderText("e.g. You are a concise assistant.")
        self.system_edit.setMaximumHeight(90)
        self.system_edit.textChanged.connect(self._settings_changed)
        form.addRow(QLabel("System prompt:"))
        form.addRow(self.system_edit)

        def dspin(name: str, lo: float, hi: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
            s = QDoubleSpinBox()
            s.setRange(lo, hi)
            s.setSingleStep(step)
            s.setDecimals(decimals)
            s.setAccessibleName(name)
            s.valueChanged.connect(self._settings_changed)
            return s

        def ispin(name: str, lo: int, hi: int) -> QSpinBox:
            s = QSpinBox()
            s.setRange(lo, hi)
            s.setAccessibleName(name)
            s.valueChanged.connect(self._settings_changed)
            return s

        self.temperature_spin = dspin("Temperature", 0.0, 2.0, 0.05)
        self.top_p_spin = dspin("Top-p", 0.0, 1.0, 0.01)
        self.top_k_spin = ispin("Top-k", 0, 1000)
        self.min_p_spin = dspin("Min-p", 0.0, 1.0, 0.01)
        self.repeat_spin = dspin("Repeat penalty", 0.0, 2.0, 0.01)
        self.seed_spin = ispin("Seed", -1, 2_147_483_647)
        self.seed_spin.setSpecialValueText("random")
        self.max_tokens_spin = ispin("Max tokens", 1, 131_072)
        self.max_tokens_spin.setSingleStep(64)
        for label, w in (("Temperature", self.temperature_spin), ("Top-p", self.top_p_spin),
                         ("Top-k", self.top_k_spin), ("Min-p", self.min_p_spin),
                         ("Repeat penalty", self.repeat_spin), ("Seed", self.seed_spin),
                         ("Max tokens", self.max_tokens_spin)):
            form.addRow(label + ":", w)
        self.defaults_button = self._button("Model defaults", "Reset to model defaults", self.reset_sampling,
                                            "The sampler the model's publisher recommends, else llama.cpp's")
        form.addRow(self.defaults_button)
        note = QLabel("Saved with this conversation.")
        note.setStyleSheet("color: palette(mid);")
        form.addRow(note)
        return box

    # --- keyboard --------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt naming
        if obj is self.input and event.type() == QEvent.Type.KeyPress:
            key_event: QKeyEvent = event  # type: ignore[assignment]
            if key_event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                    key_event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                self.send()
                return True
            if key_event.key() == Qt.Key.Key_Escape:
                self._escape()
                return True
        return super().eventFilter(obj, event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt naming
        if event.key() == Qt.Key.Key_Escape:
            self._escape()
            return
        super().keyPressEvent(event)

    def focus_search(self) -> None:
        self.search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_edit.selectAll()

    def _escape(self) -> None:
        if self._streaming:
            self.stop()
        elif self._editing_id is not None:
            self.cancel_edit()

    # --- models ----------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """Library models, any files opened this session, then "Open GGUF file…"."""
        from quantdesk.library.index import Library

        current = self.model_path()
        opened = [(self.model_combo.itemText(i), self.model_combo.itemData(i))
                  for i in range(self.model_combo.count())
                  if self.model_combo.itemData(i, FILE_ROLE)]
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        try:
            models = Library().models()
        except Exception as exc:  # noqa: BLE001 - an unreadable library must not take the page down
            models = []
            self.status_label.setText(f"The model library could not be read ({exc}).")
        for m in models:
            self.model_combo.addItem(f"{m.name} — {m.quant or '?'}, {fmt_bytes(m.size)}", m.path)
            self.model_combo.setItemData(self.model_combo.count() - 1, m.path, Qt.ItemDataRole.ToolTipRole)
        for text, path in opened:
            if self.model_combo.findData(path) < 0:
                self._add_file_item(path, text)
        self.model_combo.addItem("Open GGUF file…", OPEN_FILE)
        self.model_combo.blockSignals(False)
        if current:
            self.select_model(current)
        elif models:
            self.model_combo.setCurrentIndex(0)
        self._last_model_index = self.model_combo.currentIndex()

    def _add_file_item(self, path: str, text: str | None = None) -> int:
        index = max(0, self.model_combo.findData(OPEN_FILE))
        if self.model_combo.findData(OPEN_FILE) < 0:
            index = self.model_combo.count()
        self.model_combo.insertItem(index, text or Path(path).name, path)
        self.model_combo.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        self.model_combo.setItemData(index, True, FILE_ROLE)
        return index

    def model_path(self) -> str | None:
        data = self.model_combo.currentData()
        return data if isinstance(data, str) and data != OPEN_FILE else None

    def select_model(self, path: str) -> bool:
        """Pick a model by path, adding it when it is a GGUF file outside the library."""
        if not path:
            return False
        index = self.model_combo.findData(path)
        if index < 0:
            if not Path(path).is_file():
                return False
            index = self._add_file_item(path)
        self.model_combo.setCurrentIndex(index)
        self._last_model_index = index
        return True

    def _model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) != OPEN_FILE:
            self._last_model_index = index
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", "", "GGUF models (*.gguf)")
        if path and self.select_model(path):
            return
        self.model_combo.setCurrentIndex(self._last_model_index)

    def _model_label(self, path: str) -> str:
        from quantdesk.library.index import Library, model_name_for

        try:
            found = Library().find(path)
        except Exception:  # noqa: BLE001 - the file name is a fine label
            found = None
        return found.name if found else model_name_for(path)

    def set_context(self, ctx: int) -> None:
        """Pick ``ctx`` in the Context list (added when it is not one of the usual sizes)."""
        index = self.ctx_combo.findData(ctx)
        if index < 0:
            self.ctx_combo.addItem(f"{ctx:,}", ctx)
            index = self.ctx_combo.count() - 1
        self.ctx_combo.setCurrentIndex(index)

    def load_model(self, path: str | None = None, ctx: int | None | str = "ui", kv_type: str | None = None) -> None:
        """Plan and start the model off the GUI thread; Cancel ends the child it started.
        ``kv_type`` (q8_0, q4_0, …) quantizes the KV cache as planned on Discover; None keeps f16."""
        if self._streaming:
            self.show_error("A reply is still being written: stop it first, then load another model.")
            return
        path = path or self.model_path()
        if not path:
            self.show_error("Pick a model first: choose one from the library in the Model list, "
                            "or “Open GGUF file…”.")
            return
        if ctx == "ui":
            ctx = self.ctx_combo.currentData()
        if self.loading:
            self.cancel_load()
        self.unload_model(quiet=True)
        name = self._model_label(path)
        self._load_generation += 1
        generation = self._load_generation
        cancel, done = threading.Event(), threading.Event()
        self._load_cancel, self._load_done = cancel, done
        hw = self.hardware

        def job() -> tuple[Engine, PlannedLoad]:
            try:
                planned = plan_load(path, hw, ctx, kv_type or "f16")
                if cancel.is_set():
                    raise EngineError("loading was cancelled")
                engine = Engine(path, planned.settings)
                try:
                    engine.start(cancel=cancel)
                    if cancel.is_set():
                        raise EngineError("loading was cancelled")
                except BaseException:
                    engine.stop()
                    raise
                return engine, planned
            finally:
                done.set()

        self.hide_error()
        self._loading_name = name
        self._loading_path = path
        ctx_text = (f"{ctx:,} tokens of context" if ctx else "the planner's context") + _kv_suffix(kv_type)
        self.report_label.setText(f"Loading <b>{html.escape(name)}</b> with {ctx_text}…")
        self.loading_bar.show()
        self._update_actions()
        run_task(lambda _: job(), lambda result: self._load_succeeded(result, generation, path, name, ctx, kv_type),
                 lambda error: self._load_failed(error, generation, name))

    @property
    def loading(self) -> bool:
        return self._load_cancel is not None

    def cancel_load(self) -> None:
        if self._load_cancel is None:
            return
        self._load_cancel.set()
        self._load_generation += 1  # whatever the job returns now is stopped, not shown
        self._load_cancel = None
        self.loading_bar.hide()
        self.report_label.setText(f"Loading {html.escape(self._loading_name)} was cancelled. {self._idle_hint()}")
        self._update_actions()

    def _load_succeeded(self, result: tuple[Engine, PlannedLoad], generation: int, path: str, name: str,
                        ctx: int | None, kv_type: str | None = None) -> None:
        engine, planned = result
        if generation != self._load_generation or self._shut_down:
            run_task(lambda _: engine.stop(), None, _ignore)
            return
        self._load_cancel = None
        self.loading_bar.hide()
        self.engine = engine
        self.model_name = name
        self._loaded_args = (path, name, ctx, kv_type)
        self._planned_notes = list(planned.notes)
        self._death_reported = False
        metadata = dict(engine.report.raw.get("metadata", {})) if engine.report else {}
        self._model_defaults = defaults_for(metadata)
        self._template_note = template_for(metadata).note
        self.session = None
        self._ensure_session()
        self._populate_settings()
        self.report_label.setText(self._report_html(engine.report, name))
        self._update_actions()
        self.render(force=True)
        self.input.setFocus()
        self.model_loaded.emit()

    def _load_failed(self, error: Exception, generation: int, name: str) -> None:
        if generation != self._load_generation:
            return  # cancelled or superseded: already told
        message = (f"{error} — {error.next_step}" if isinstance(error, QuantDeskError) and error.next_step
                   else str(error) if isinstance(error, QuantDeskError) else f"Unexpected error: {type(error).__name__}: {error}")
        self._load_cancel = None
        self.loading_bar.hide()
        self.report_label.setText(f"No model loaded. {self._idle_hint()}")
        message = message.strip().rstrip(".")
        if "try" in message.lower() or "reload" in message.lower():
            hint = ""  # the core already said what to do
        elif "no such file" in message.lower() or "not found" in message.lower():
            hint = " Choose another model, or add it to the library again."
        elif "gguf" in message.lower():
            hint = " The file looks damaged or is not a model llama.cpp can read: download it again or pick another."
        else:
            hint = " Try a smaller context or another model."
        self.show_error(f"Could not load {name}: {message}.{hint}")
        self._update_actions()

    def _report_html(self, report: LoadReport | None, name: str) -> str:
        if report is None:
            return ""
        seconds = f"{report.load_s:.1f}" if report.load_s >= 1 else f"{report.load_s:.2f}"
        lines = [f"<b>{html.escape(name)}</b> loaded in {seconds} s — {html.escape(report.summary)}. "
                 f"{fmt_bytes(report.ram)} RAM in use · {report.n_ctx:,} tokens of context"
                 f"{_kv_suffix(self._loaded_args[3] if self._loaded_args else None)}."]
        for note in self._planned_notes + report.notes:
            lines.append(f"⚠ {html.escape(note[0].upper() + note[1:])}.")
        if self._template_note:
            lines.append(f"⚠ Chat template: {html.escape(self._template_note)}.")
        return "<br>".join(lines)

    def reload_model(self) -> None:
        """Load the last model again with the same context (after a crash, or to start fresh)."""
        if self._loaded_args is None:
            self.load_model()
            return
        path, _name, ctx, kv_type = self._loaded_args
        self.load_model(path, ctx, kv_type)

    def unload_model(self, quiet: bool = False) -> None:
        """Stop the model's process (off the GUI thread); conversations stay."""
        if self._streaming:
            self.stop()
            return
        engine, self.engine, self.session = self.engine, None, None
        if engine is not None:
            run_task(lambda _: engine.stop(), None, _ignore)
        if not quiet:
            self.report_label.setText(f"Model unloaded. {self._idle_hint()}")
            self.hide_error()
            self.render(force=True)
        self._update_actions()

    def models_in_use(self) -> set[str]:
        """The model file the chat has loaded or is loading."""
        if self.engine is not None and self._loaded_args is not None:
            return {self._loaded_args[0]}
        if self.loading and self._loading_path:
            return {self._loading_path}
        return set()

    def release_model(self, path: str) -> None:
        """Unload ``path`` (a delete or a folder move needs it): stops a reply or a load first."""
        if path not in self.models_in_use():
            return
        note = f"Model unloaded: {html.escape(Path(path).name)} was deleted or moved. {self._idle_hint()}"
        if self.loading:
            self.cancel_load()
        if self._streaming:  # the reply stops within a token; the model goes when it has
            self._unload_note = note
            self.stop()
            return
        self.unload_model()
        self.report_label.setText(note)

    def _idle_hint(self) -> str:
        return "Pick a model from the library and press Load."

    def _check_engine(self) -> None:
        """A model process that dies while idle is reported, not discovered at the next Send."""
        if self.engine is None or self._streaming or self._death_reported or self.engine.alive:
            return
        self._death_reported = True
        self.report_label.setText(f"{html.escape(self.model_name or 'The model')} is not running.")
        self.show_error(f"{sentence(self.engine.death_message())} Reload the model to go on.", reload=True)
        self._update_actions()

    def _ensure_session(self) -> ChatSession | None:
        if self.engine is None or self.engine.report is None or self.conversation_id is None:
            return None
        if self.session is None or self.session.conversation_id != self.conversation_id:
            self.session = ChatSession(self.engine, self.store, self.conversation_id, model_name=self.model_name)
        return self.session

    @property
    def model_ready(self) -> bool:
        return self.engine is not None and self.engine.report is not None and self.engine.alive

    # --- conversations ---------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        """All stored conversations newest first, filtered by the search box."""
        query = self.search_edit.text().strip() or None
        try:
            conversations = self.store.list(query)
        except QuantDeskError as exc:
            self.show_error(f"The chat history could not be read: {exc}")
            return
        self.conversation_list.blockSignals(True)
        self.conversation_list.clear()
        for conv in conversations:
            subtitle = " · ".join(x for x in (_when(conv.updated_at), conv.model or "") if x)
            item = QListWidgetItem(conv.title)
            item.setData(Qt.ItemDataRole.UserRole, conv.id)
            item.setData(SUBTITLE_ROLE, subtitle)
            item.setToolTip(f"{conv.title}\n{conv.model or 'no model recorded'}\n"
                            f"last change {time.strftime('%Y-%m-%d %H:%M', time.localtime(conv.updated_at))}")
            self.conversation_list.addItem(item)
            if conv.id == self.conversation_id:
                self.conversation_list.setCurrentItem(item)
        self.conversation_list.blockSignals(False)
        if query and not conversations:
            self.status_label.setText(f"No chat matches “{query}”.")
        elif query:
            self.status_label.setText(f"{len(conversations)} chat{'s' if len(conversations) != 1 else ''} "
                                      f"match “{query}”.")
        self._update_actions()

    def conversation_ids(self) -> list[int]:
        return [self.conversation_list.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.conversation_list.count())]

    def _list_selection_changed(self, current: QListWidgetItem | None, _previous: Any) -> None:
        if current is not None:
            self.open_conversation(current.data(Qt.ItemDataRole.UserRole))

    def open_conversation(self, conversation_id: int) -> None:
        if self._streaming:
            return
        self._flush_settings()
        self.conversation_id = conversation_id
        self.cancel_edit()
        self._notices, self._notice_conversation = [], None
        self.session = None
        self._ensure_session()
        for i in range(self.conversation_list.count()):
            item = self.conversation_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == conversation_id:
                self.conversation_list.blockSignals(True)
                self.conversation_list.setCurrentItem(item)
                self.conversation_list.blockSignals(False)
        self._populate_settings()
        self.render(force=True, to_bottom=True)
        self._update_actions()

    def new_conversation(self) -> None:
        """A blank draft: the conversation is stored with its first message (no empty chats pile up)."""
        if self._streaming:
            return
        self._flush_settings()
        self.conversation_id = None
        self.session = None
        self.cancel_edit()
        self._notices, self._notice_conversation = [], None
        self.conversation_list.blockSignals(True)
        self.conversation_list.clearSelection()
        self.conversation_list.setCurrentItem(None)
        self.conversation_list.blockSignals(False)
        self._populating = True
        self.system_edit.setPlainText("")
        self._populating = False
        self._populate_settings()
        self.render(force=True)
        self._update_actions()
        self.input.setFocus()

    def rename_conversation(self, title: str | None = None) -> None:
        if self.conversation_id is None:
            return
        try:
            conv = self.store.get(self.conversation_id)
            if title is None:
                title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=conv.title)
                if not ok:
                    return
            self.store.rename(conv.id, title)
        except QuantDeskError as exc:
            self.show_error(f"{sentence(str(exc))} Type a title and try again.")
            return
        self.refresh_conversations()

    def delete_conversation(self, confirm: bool = True) -> None:
        if self.conversation_id is None or self._streaming:
            return
        try:
            conv = self.store.get(self.conversation_id)
        except QuantDeskError:
            self.refresh_conversations()
            return
        if confirm:
            answer = QMessageBox.question(
                self, "Delete conversation",
                f"Delete “{conv.title}” and its {len(conv.messages)} messages? This cannot be undone.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.store.delete(conv.id)
        self.conversation_id = None
        self.session = None
        self.refresh_conversations()
        if self.conversation_list.count():
            self.open_conversation(self.conversation_list.item(0).data(Qt.ItemDataRole.UserRole))
        else:
            self.new_conversation()
        self.status_label.setText(f"Deleted “{conv.title}”.")

    def _export_dialog(self, fmt: str) -> None:
        if self.conversation_id is None:
            return
        title = self.store.get(self.conversation_id).title
        stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
        suffix, kind = (".md", "Markdown (*.md)") if fmt == "md" else (".json", "JSON (*.json)")
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", str(Path.home() / f"{stem}{suffix}"), kind)
        if path:
            self.export_conversation(path, fmt)

    def export_conversation(self, path: str | Path, fmt: str = "md") -> bool:
        """Write the conversation as Markdown (``md``) or JSON (``json``); says where, or why not."""
        if self.conversation_id is None:
            self.show_error("Pick a conversation to export first.")
            return False
        try:
            text = (self.store.export_json(self.conversation_id) if fmt == "json"
                    else self.store.export_markdown(self.conversation_id))
            Path(path).write_text(text, encoding="utf-8")
        except (OSError, QuantDeskError) as exc:
            self.show_error(f"Could not export to {path}: {exc}. Choose another folder and try again.")
            return False
        self.status_label.setText(f"Exported to {path}.")
        return True

    # --- settings --------------------------------------------------------------------------
    def _effective_sampling(self, conv: Conversation | None) -> Sampling:
        if conv is not None and conv.sampling:
            return Sampling.from_json(conv.sampling)
        return self._model_defaults

    def _populate_settings(self) -> None:
        conv = self._current_conversation()
        s = self._effective_sampling(conv)
        self._populating = True
        try:
            if conv is not None:
                self.system_edit.setPlainText(conv.system_prompt)
            self.temperature_spin.setValue(s.temperature)
            self.top_p_spin.setValue(s.top_p)
            self.top_k_spin.setValue(s.top_k)
            self.min_p_spin.setValue(s.min_p)
            self.repeat_spin.setValue(s.repeat_penalty)
            self.seed_spin.setValue(s.seed)
            self.max_tokens_spin.setValue(s.max_tokens)
        finally:
            self._populating = False

    def panel_sampling(self, base: Sampling) -> Sampling:
        """The panel's values over ``base`` (which keeps fields the panel has no control for)."""
        return base.with_(temperature=round(self.temperature_spin.value(), 4), top_p=round(self.top_p_spin.value(), 4),
                          top_k=self.top_k_spin.value(), min_p=round(self.min_p_spin.value(), 4),
                          repeat_penalty=round(self.repeat_spin.value(), 4), seed=self.seed_spin.value(),
                          max_tokens=self.max_tokens_spin.value())

    def _settings_changed(self, *_: Any) -> None:
        if not self._populating:
            self._settings_timer.start()

    def _flush_settings(self) -> None:
        if self._settings_timer.isActive():
            self._settings_timer.stop()
            self._save_settings()

    def _save_settings(self) -> None:
        """Store changed settings with the conversation (a draft keeps them until its first message)."""
        conv = self._current_conversation()
        if conv is None:
            return
        base = self._effective_sampling(conv)
        sampling = self.panel_sampling(base)
        system = self.system_edit.toPlainText()
        session = self.session if self.session and self.session.conversation_id == conv.id else None
        if sampling != base:
            if session:
                session.set_sampling(sampling)
            else:
                self.store.update(conv.id, sampling=sampling.to_json())
        if system != conv.system_prompt:
            if session:
                session.set_system_prompt(system)
            else:
                self.store.update(conv.id, system_prompt=system)

    def reset_sampling(self) -> None:
        conv = self._current_conversation()
        base = self._effective_sampling(conv)
        d = self._model_defaults.with_(ignore_eos=base.ignore_eos)
        self._populating = True
        for spin, value in ((self.temperature_spin, d.temperature), (self.top_p_spin, d.top_p),
                            (self.top_k_spin, d.top_k), (self.min_p_spin, d.min_p),
                            (self.repeat_spin, d.repeat_penalty), (self.seed_spin, d.seed),
                            (self.max_tokens_spin, d.max_tokens)):
            spin.setValue(value)
        self._populating = False
        self._settings_timer.start()

    # --- turns -----------------------------------------------------------------------------
    def send(self) -> None:
        """Send the box's text (or the edited last message) and stream the reply."""
        if self._streaming or self.loading:
            return
        text = self.input.toPlainText()
        if not text.strip():
            self.status_label.setText("Type a message first.")
            return
        if not self.model_ready:
            self._not_ready()
            return
        self._flush_settings()
        try:
            if self.conversation_id is None:
                base = self._model_defaults
                self.session = ChatSession(self.engine, self.store, None, model_name=self.model_name,
                                           system_prompt=self.system_edit.toPlainText(),
                                           sampling=self.panel_sampling(base))
                self.conversation_id = self.session.conversation_id
            session = self._ensure_session()
        except QuantDeskError as exc:
            self.show_error(f"{sentence(str(exc))} Reload the model and try again.", reload=True)
            return
        assert session is not None
        events = session.edit(self._editing_id, text) if self._editing_id is not None else session.send(text)
        self.input.clear()
        self.cancel_edit()
        self._start(events)

    def regenerate(self) -> None:
        """Replace the last reply with a new one."""
        if self._streaming or self.loading:
            return
        if not self.model_ready:
            self._not_ready()
            return
        self._flush_settings()
        session = self._ensure_session()
        if session is None:
            self.status_label.setText("Nothing to regenerate yet: send a message first.")
            return
        self._start(session.regenerate())

    def edit_last(self) -> None:
        """Put the last message you sent back in the box; sending it replaces it and what followed."""
        if self._streaming:
            return
        conv = self._current_conversation()
        last = next((m for m in reversed(conv.messages) if m.role == "user"), None) if conv else None
        if last is None:
            self.status_label.setText("Nothing to edit yet: send a message first.")
            return
        self._editing_id = last.id
        self.input.setPlainText(last.content)
        self.input.setFocus()
        cursor = self.input.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.input.setTextCursor(cursor)
        self.edit_bar.show()

    def cancel_edit(self) -> None:
        if self._editing_id is not None:
            self._editing_id = None
            self.input.clear()
        self.edit_bar.hide()

    def stop(self) -> None:
        """End the reply within a token; what came so far is kept, marked stopped."""
        if self._streaming and self.session is not None:
            self.session.stop()
            self.status_label.setText("Stopping…")

    def _not_ready(self) -> None:
        if self.loading:
            self.status_label.setText("The model is still loading.")
        elif self.engine is not None and not self.engine.alive:
            self.show_error(f"{sentence(self.engine.death_message())} Reload the model to go on.", reload=True)
        else:
            self.show_error("No model is loaded: pick one from the library above and press Load.")

    def _start(self, events: Iterator[Token | Notice | Finished]) -> None:
        self.hide_error()
        self._streaming = True
        self._stream_conversation = self.conversation_id
        self._notices, self._notice_conversation = [], self.conversation_id
        self.last_finished = None
        self.last_error = None
        self.tokens_seen = 0
        self.status_label.setText("Writing… (Esc stops)")
        self._update_actions()
        self.refresh_conversations()
        run_task(lambda _: stream_reply(events), None, self._on_failed, on_progress=self._on_event,
                 on_ended=self._on_ended, owner=self, where=self._replies)
        self._poll_timer.start()
        self.render(force=True, to_bottom=True)

    def _on_event(self, event: Token | Notice | Finished) -> None:
        if isinstance(event, Token):
            self._on_token(event.text)
        elif isinstance(event, Notice):
            self._on_notice(event.text)
        elif isinstance(event, Finished):
            self._on_finished(event)

    def _on_token(self, _text: str) -> None:
        self.tokens_seen += 1
        if self.tokens_seen == 1:
            self.refresh_conversations()  # the first message has named the conversation by now
        self._schedule_render()

    def _on_notice(self, text: str) -> None:
        self._notices.append(text)
        self._schedule_render()

    def _on_finished(self, finished: Finished) -> None:
        self.last_finished = finished
        if finished.finish_reason == "crashed":
            self.last_error = finished.error
            self._death_reported = True
            self.show_error(f"{sentence(finished.error or 'the model process stopped')} What was written so far "
                            "is kept; reload the model to go on.", reload=True)
            self.report_label.setText(f"{html.escape(self.model_name or 'The model')} is not running.")
            self.status_label.setText("")
        else:
            self.status_label.setText(figures_text(finished.to_json()) +
                                      (" · stopped" if finished.finish_reason == "stopped" else ""))

    def _on_failed(self, error: Exception) -> None:
        message = reply_failure_sentence(error)
        self.last_error = message
        dead = self.engine is not None and not self.engine.alive
        if dead:
            self._death_reported = True
            self.show_error(f"{message} Reload the model to go on.", reload=True)
        else:
            self.show_error(message)
        self.status_label.setText("")

    def _on_ended(self) -> None:
        self._streaming = False
        self._poll_timer.stop()
        self.refresh_conversations()
        self.render(force=True)
        self._update_actions()
        if self._unload_note is not None:
            note, self._unload_note = self._unload_note, None
            self.unload_model()
            self.report_label.setText(note)
        self.reply_ended.emit()

    @property
    def streaming(self) -> bool:
        return self._streaming

    # --- transcript ------------------------------------------------------------------------
    def _current_conversation(self) -> Conversation | None:
        if self.conversation_id is None:
            return None
        try:
            return self.store.get(self.conversation_id)
        except QuantDeskError:
            return None

    def _schedule_render(self) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _theme(self) -> Theme:
        return DARK if self.palette().color(QPalette.ColorRole.Base).lightness() < 128 else LIGHT

    def render(self, force: bool = False, to_bottom: bool = False) -> None:
        """Draw the conversation from the store (cheap when nothing changed since last time)."""
        conv = self._current_conversation()
        self._conv = conv
        signature = (self.conversation_id, self._streaming, tuple(self._notices), self.model_ready,
                     tuple((m.id, m.status, len(m.content)) for m in conv.messages) if conv else ())
        if not force and signature == self._signature:
            return
        self._signature = signature
        started = time.perf_counter()
        theme = self._theme()
        if conv is None or not conv.messages:
            body = self._empty_state_html(theme)
            self._code = {}
        else:
            body = self._conversation_html(conv, theme)
        bar = self.transcript.verticalScrollBar()
        previous = bar.value()
        if to_bottom:
            self._stick_to_bottom = True
        self._setting_html = True
        try:
            self.transcript.setHtml(f"<body style='color:{theme.text}'>{body}</body>")
            bar.setValue(bar.maximum() if self._stick_to_bottom else previous)
        finally:
            self._setting_html = False
        # a long transcript takes longer to lay out: render less often rather than starve the GUI
        spent_ms = (time.perf_counter() - started) * 1000
        self._render_timer.setInterval(int(min(250, max(30, 2 * spent_ms))))
        self._update_actions()
        self.rendered.emit()

    def _conversation_html(self, conv: Conversation, theme: Theme) -> str:
        parts: list[str] = []
        code: dict[str, str] = {}
        last_assistant = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=-1)
        notices = self._notices if self._notice_conversation == conv.id else []
        if conv.system_prompt:
            parts.append(f"<p style='margin:2px 0 6px 0; color:{theme.muted}'><i>System prompt: "
                         f"{html.escape(conv.system_prompt)}</i></p>")
        streaming_here = self._streaming and self._stream_conversation == conv.id
        for i, m in enumerate(conv.messages):
            if i == last_assistant and notices:
                parts.extend(self._notice_html(n, theme) for n in notices)
            block, codes = self._message_html(m, theme)
            code.update(codes)
            parts.append(block)
        if streaming_here and conv.messages[-1].role == "user":
            if notices and last_assistant < len(conv.messages) - 1:
                parts.extend(self._notice_html(n, theme) for n in notices)
            parts.append(self._bubble("Assistant", theme.assistant_label, theme.assistant_bg, theme.assistant_border,
                                      f" <span style='color:{theme.muted}'>● reading your message…</span>", ""))
        self._code = code
        return "".join(parts)

    def _user_scrolled(self, _action: int) -> None:
        """Follow the reply while the user keeps the view at the bottom; stay put once they scroll up."""
        bar = self.transcript.verticalScrollBar()
        self._stick_to_bottom = bar.sliderPosition() >= bar.maximum() - 8

    def _follow(self, *_: Any) -> None:
        """Qt moves the view itself on relayout and resize; keep it on the newest text."""
        bar = self.transcript.verticalScrollBar()
        if self._stick_to_bottom and not self._setting_html and bar.value() != bar.maximum():
            bar.setValue(bar.maximum())

    def _notice_html(self, text: str, theme: Theme) -> str:
        return (f"<table width='100%' cellspacing='0' cellpadding='6' style='margin-top:8px; "
                f"background-color:{theme.notice_bg}; border:1px solid {theme.notice_border}'>"
                f"<tr><td><b>Note:</b> {html.escape(text)}</td></tr></table>")

    def _bubble(self, label: str, label_color: str, bg: str, border: str, mark: str, body: str,
                footer: str = "") -> str:
        return (f"<table width='100%' cellspacing='0' cellpadding='10' style='margin-top:10px; "
                f"background-color:{bg}; border:1px solid {border}'><tr><td>"
                f"<p style='margin:0 0 2px 0'><b style='color:{label_color}'>{label}</b>{mark}</p>"
                f"{body}{footer}</td></tr></table>")

    def _message_html(self, m: Message, theme: Theme) -> tuple[str, dict[str, str]]:
        key = (m.id, m.status, m.content, repr(m.figures), theme.text)
        cached = self._html_cache.get(key)
        if cached is not None:
            return cached
        body, blocks = markdown_to_html(m.content, theme, anchor_prefix=f"{m.id}.")
        codes = {f"{m.id}.{k}": c for k, c in enumerate(blocks)}
        user = m.role == "user"
        mark = ""
        if m.status in STATUS_MARKS:
            text, colour = STATUS_MARKS[m.status]
            mark = f"  <span style='color:{getattr(theme, colour)}; font-size:small'>{text}</span>"
        footer = ""
        if m.role == "assistant" and m.figures:
            footer = (f"<p style='margin:6px 0 0 0; color:{theme.muted}; font-size:small'>"
                      f"{html.escape(figures_text(m.figures))}</p>")
        if m.role == "assistant" and m.status == "streaming" and not m.content:
            body = f"<p style='margin:0; color:{theme.muted}'>…</p>"
        result = (self._bubble(ROLE_LABELS.get(m.role, m.role.title()),
                               theme.user_label if user else theme.assistant_label,
                               theme.user_bg if user else theme.assistant_bg,
                               theme.user_border if user else theme.assistant_border, mark, body, footer), codes)
        if m.status != "streaming":  # a streaming reply changes at every token: not worth keeping
            if len(self._html_cache) > 2000:
                self._html_cache.clear()
            self._html_cache[key] = result
        return result

    def _empty_state_html(self, theme: Theme) -> str:
        has_models = any(self.model_combo.itemData(i) not in (OPEN_FILE, None)
                         for i in range(self.model_combo.count()))
        if self.model_ready:
            title = "New conversation"
            text = (f"Talking to <b>{html.escape(self.model_name or '')}</b>. Type a message below and press "
                    "<b>Ctrl+Enter</b>. The reply streams in here; <b>Esc</b> stops it.")
        elif self.loading:
            title = "Loading the model…"
            text = "This takes a few seconds for small models and up to a minute for large ones."
        elif has_models:
            title = "Pick a model from the library and load it"
            text = ("Choose a model in the <b>Model</b> list above and press <b>Load</b>, then type a message "
                    "below and press <b>Ctrl+Enter</b>.")
        else:
            title = "Pick a model from the library and load it"
            text = ("Your library has no models yet: choose <b>Open GGUF file…</b> in the <b>Model</b> list above "
                    "to chat with a file you already have, or add one with <code>quantdesk download</code> "
                    "or <code>quantdesk import</code>.")
        return (f"<div align='center' style='margin-top:80px'><p style='font-size:x-large; color:{theme.text}'>"
                f"{title}</p><p style='color:{theme.muted}'>{text}</p>"
                f"<p style='color:{theme.muted}; font-size:small'>Conversations are kept on this computer and "
                "listed on the left; Ctrl+F searches them.</p></div>")

    def code_block(self, key: str) -> str | None:
        return self._code.get(key)

    def code_keys(self) -> list[str]:
        return list(self._code)

    def _anchor_clicked(self, url: QUrl) -> None:
        target = url.toString()
        if target.startswith("copy:"):
            code = self._code.get(target[5:])
            if code is not None:
                QGuiApplication.clipboard().setText(code)
                lines = code.count("\n") + 1
                self.status_label.setText(f"Copied {lines} line{'s' if lines != 1 else ''} of code.")
        elif url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)

    # --- state and errors ------------------------------------------------------------------
    def show_error(self, text: str, reload: bool = False) -> None:
        self._error_text = text
        if self.errors is not None:
            self.errors.report("Chat", text, action="Reload" if reload else None,
                               callback=self.reload_model if reload else None)
            return
        self.banner_label.setText(text)
        self.reload_button.setVisible(reload)
        self.banner.show()

    def hide_error(self) -> None:
        self._error_text = None
        if self.errors is not None:
            self.errors.clear("Chat")
        self.banner.hide()

    @property
    def error_text(self) -> str | None:
        return getattr(self, "_error_text", None)

    def _update_actions(self) -> None:
        if not hasattr(self, "send_button"):
            return
        busy, loading, ready = self._streaming, self.loading, self.model_ready
        conv = self._conv
        has_user = bool(conv and any(m.role == "user" for m in conv.messages))
        self.load_button.setEnabled(not busy and not loading)
        self.cancel_load_button.setVisible(loading)
        self.unload_button.setEnabled(self.engine is not None and not busy and not loading)
        self.model_combo.setEnabled(not busy and not loading)
        self.ctx_combo.setEnabled(not busy and not loading)
        self.send_button.setEnabled(ready and not busy)
        self.stop_button.setEnabled(busy)
        self.regenerate_button.setEnabled(ready and not busy and has_user)
        self.edit_button.setEnabled(not busy and has_user)
        has_conv = self.conversation_id is not None
        self.conversation_list.setEnabled(not busy)
        self.new_button.setEnabled(not busy)
        self.rename_button.setEnabled(has_conv and not busy)
        self.delete_button.setEnabled(has_conv and not busy)
        self.export_button.setEnabled(has_conv)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt naming
        super().showEvent(event)
        if not self._streaming and not self.loading:
            self.refresh_models()  # another page may have downloaded or imported a model

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt naming
        if self.isWindow():  # the page on its own (the main window calls shutdown itself)
            self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop any reply, cancel any load, end the model's process: nothing outlives the app."""
        if self._shut_down:
            return
        self._shut_down = True
        self._load_generation += 1  # a load still finishing is stopped, not shown
        self._flush_settings()
        for timer in (self._health_timer, self._poll_timer, self._render_timer):
            timer.stop()
        if self._load_cancel is not None:
            self._load_cancel.set()
        if self._streaming and self.session is not None:
            self.session.stop()
        self._replies.shutdown()
        if self._load_done is not None:
            self._load_done.wait(10)
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        self.session = None


def _ignore(_error: Exception) -> None:
    """Stopping a model that is already gone has nothing left to report."""
