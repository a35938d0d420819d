"""Chat page: load a model, talk to it, keep every conversation.

The page only shows and drives the core: ``chat.load.start_model`` loads a model (on the thread pool,
cancellable), a ``ChatSession`` does every turn (on the page's reply thread, stoppable within a
token), and the transcript is drawn from the ``ChatStore`` — which the session writes at every
token — so what the pane shows is exactly what is kept.

``ChatPage`` is put together from one part per job, each in its own module here:

- ``layout``: the widgets and the keys (``LayoutMixin``);
- ``models``: the model list, loading, unloading, a model process that died (``ModelsMixin``);
- ``conversations``: the conversation list and its buttons (``ConversationsMixin``; ``delegate``
  draws each item);
- ``settings_panel``: the system prompt and sampler box (``SamplingPanel``) and saving it (``SettingsMixin``);
- ``turns``: send, regenerate, edit, stop, and the streamed reply (``TurnsMixin``);
- ``transcript``: redrawing the pane (``TranscriptMixin``) with ``transcript_html``'s renderer;
- this module: the page's state, its errors and its shutdown.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QWidget

from quantdesk.chat.engine import Engine, Finished
from quantdesk.chat.sampling import Sampling
from quantdesk.chat.session import ChatSession
from quantdesk.chat.store import ChatStore, Conversation
from quantdesk.gui.context import AppContext
from quantdesk.gui.errors import ErrorBridge
from quantdesk.gui.pages.chat.conversations import ConversationsMixin
from quantdesk.gui.pages.chat.layout import LayoutMixin
from quantdesk.gui.pages.chat.models import ModelsMixin
from quantdesk.gui.pages.chat.settings_panel import SettingsMixin
from quantdesk.gui.pages.chat.transcript import TranscriptMixin
from quantdesk.gui.pages.chat.transcript_html import TranscriptRenderer
from quantdesk.gui.pages.chat.server import ServerMixin
from quantdesk.gui.pages.chat.turns import TurnsMixin
from quantdesk.gui.tasks import SerialWorker
from quantdesk.hardware.machine import Hardware


def _open_store() -> ChatStore:
    """The stored conversations; a damaged chats.db must not block chatting, so this session's
    conversations go to a scratch file until the window's “Start a new one” replaces it."""
    from quantdesk.base.sqlite_db import DamagedDatabase

    try:
        return ChatStore()
    except DamagedDatabase:
        import tempfile

        return ChatStore(Path(tempfile.mkdtemp(prefix="quantdesk-chats-")) / "chats.db")


class ChatPage(LayoutMixin, ModelsMixin, ConversationsMixin, SettingsMixin, TurnsMixin, TranscriptMixin, ServerMixin,
               QWidget):
    """Conversations on the left; model bar, transcript, settings and the message box on the right.

    With a ``context`` (the app's), loads are planned for the context's machine as it is at each
    load — a simulated machine or a refreshed free-VRAM figure reaches Chat — and problems go to its
    error bridge. Without one, ``hardware`` is the machine and problems show in the page's own banner.
    """

    model_loaded = Signal()
    reply_ended = Signal()
    rendered = Signal()

    def __init__(self, hardware: Hardware | None = None, parent: QWidget | None = None,
                 store: ChatStore | None = None, errors: ErrorBridge | None = None,
                 context: AppContext | None = None) -> None:
        super().__init__(parent)
        if context is None and hardware is None:
            raise TypeError("ChatPage needs the machine to plan for: a hardware or a context")
        self.context = context
        self._hardware = hardware
        self.errors = errors or (context.errors if context is not None else None)  # else: our banner
        self.store = store or _open_store()
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
        self._reloading_shown = False  # the model is being loaded again after a forced Stop
        self._populating = False
        self._shut_down = False
        self._renderer = TranscriptRenderer()
        self._signature: tuple[Any, ...] | None = None
        self._conv: Conversation | None = None
        self.tokens_seen = 0
        self._build()
        if context is not None:
            context.settings_changed.connect(self.apply_settings)
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

    def theme_changed(self) -> None:
        """The transcript's colours are the scheme's: draw it again."""
        if not self._shut_down:
            self.render(force=True)

    def reopen_store(self) -> None:
        """The stored conversations again, after chats.db was replaced."""
        self.store = ChatStore()
        self.show_first_conversation()

    @property
    def hardware(self) -> Hardware:
        """The machine the next load is planned for: the context's now, else the one given."""
        if self.context is not None:
            return self.context.hardware
        assert self._hardware is not None
        return self._hardware


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
        self.server_button.setEnabled((self.engine is not None or self.serving is not None) and not busy
                                      and not loading)
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
        if self.engine is not None:  # ending the process ends the reply in flight at once
            self.engine.stop()
        self._replies.shutdown(timeout=5)
        if self._load_done is not None:
            self._load_done.wait(10)
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        self.session = None

