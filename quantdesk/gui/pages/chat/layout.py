"""The Chat page's widgets and keys: where everything sits, and what Ctrl+Enter, Esc, Ctrl+F do.

Conversations on the left; on the right the model bar, the error banner, the transcript beside the
reply settings, the edit bar, the message box and its buttons.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.settings import load_settings
from quantdesk.gui.theme import themed_style, tone
from quantdesk.gui.pages.chat.delegate import ConversationDelegate
from quantdesk.gui.pages.chat.settings_panel import SamplingPanel

CONTEXTS = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]


class LayoutMixin:
    """Builds the page's widgets (``_build``) and handles its keys."""

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
        self.model_combo.setToolTip("The model to chat with: one from the library, or Open GGUF file…")
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(8)  # names elide; the window must fit 1000 px
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
        # (no "Model:" label: the list says "Choose a model…", and the row must fit a 1000 px window)
        row.addWidget(self.model_combo, 1)
        row.addWidget(QLabel("Context:"))
        row.addWidget(self.ctx_combo)
        self.server_toggle = QToolButton()
        self.server_toggle.setText("Server")
        self.server_toggle.setCheckable(True)
        self.server_toggle.setAccessibleName("Server panel")
        self.server_toggle.setToolTip("Serve the loaded model to other programs (OpenAI-compatible API)")
        for b in (self.load_button, self.cancel_load_button, self.unload_button, self.server_toggle):
            row.addWidget(b)
        rv.addLayout(row)
        self.server_panel = self._build_server()
        self.server_toggle.toggled.connect(self.server_panel.setVisible)
        rv.addWidget(self.server_panel)
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
        themed_style(self.banner, lambda: "#errorBanner { background: %s; border: 1px solid %s; border-radius: 4px; }"
                     "#errorBanner QLabel { color: %s; }" % (tone("#fdecea", "#3d1f1f"), tone("#f1aeb5", "#8a3b3b"),
                                                             tone("#842029", "#ffd7d5")))
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
        self.input.setPlaceholderText(self._input_hint())
        self.input.setMaximumHeight(80)
        self.input.setMinimumHeight(60)
        self.input.installEventFilter(self)
        rv.addWidget(self.input)
        row = QHBoxLayout()
        self.send_button = self._button("Send", "Send message", self.send, "Send (Enter or Ctrl+Enter, as set in Settings)")
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
        # The status has a line of its own, wrapped: a reply's figures ("1,023 tokens · first token …")
        # or "Stopping…" must never widen the window, nor be squeezed out at 1000 px.
        self.status_label = QLabel()
        self.status_label.setAccessibleName("Chat status")
        self.status_label.setObjectName("chatStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for b in (self.send_button, self.stop_button, self.regenerate_button, self.edit_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.settings_button)
        rv.addLayout(row)
        rv.addWidget(self.status_label)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([230, 770])

        for keys, slot in ((QKeySequence.StandardKey.Find, self.focus_search), ("Ctrl+Return", self.send),
                           ("Ctrl+Enter", self.send), ("Esc", self._escape), ("Ctrl+N", self.new_conversation)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

    def _build_settings(self) -> SamplingPanel:
        panel = SamplingPanel()
        panel.changed.connect(self._settings_changed)
        panel.defaults_button.clicked.connect(lambda _=False: self.reset_sampling())
        # the page's names for the panel's controls (tests and the settings logic use them)
        self.system_edit = panel.system_edit
        self.temperature_spin = panel.temperature_spin
        self.top_p_spin = panel.top_p_spin
        self.top_k_spin = panel.top_k_spin
        self.min_p_spin = panel.min_p_spin
        self.repeat_spin = panel.repeat_spin
        self.seed_spin = panel.seed_spin
        self.max_tokens_spin = panel.max_tokens_spin
        self.defaults_button = panel.defaults_button
        return panel

    def _input_hint(self) -> str:
        self._enter_sends = load_settings().enter_sends  # read again when Settings change (apply_settings)
        if self._enter_sends:
            return "Type a message — Enter sends, Shift+Enter adds a line, Esc stops a reply"
        return "Type a message — Ctrl+Enter sends, Esc stops a reply"

    def apply_settings(self) -> None:
        self.input.setPlaceholderText(self._input_hint())

    def _button(self, text: str, name: str, slot: Any, tip: str | None = None) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(name)
        button.setAutoDefault(False)
        if tip:
            button.setToolTip(tip)
        button.clicked.connect(lambda _=False: slot())
        return button

    # --- keyboard --------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt naming
        if obj is self.input and event.type() == QEvent.Type.KeyPress:
            key_event: QKeyEvent = event  # type: ignore[assignment]
            if key_event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                mods = key_event.modifiers()
                ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
                plain = not mods & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier
                                    | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier)
                if ctrl or (plain and self._enter_sends):
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

