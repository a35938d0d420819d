"""The Chat page's transcript pane: drawn from the store, following the reply, with Copy links.

What the pane shows is built by ``transcript_html.TranscriptRenderer``; this side decides when to
redraw (only when something changed, and less often when drawing gets slow), keeps the view on the
newest text while the user stays at the bottom, and answers the links in it.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.store import Conversation
from quantdesk.gui.pages.chat.models import OPEN_FILE
from quantdesk.gui.theme import dark_now
from quantdesk.gui.widgets.markdown_view import DARK, LIGHT, Theme


class TranscriptMixin:
    """Redraw the open conversation into ``self.transcript`` with ``self._renderer``."""

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
        return DARK if dark_now() else LIGHT  # the app's palette: a page's own may not have followed a switch yet

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
            body = self._renderer.empty(theme, model_ready=self.model_ready, model_name=self.model_name,
                                        loading=self.loading, has_models=self._has_models())
        else:
            notices = self._notices if self._notice_conversation == conv.id else []
            streaming_here = self._streaming and self._stream_conversation == conv.id
            body = self._renderer.conversation(conv, theme, notices, streaming_here)
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

    def _has_models(self) -> bool:
        return any(self.model_combo.itemData(i) not in (OPEN_FILE, None) for i in range(self.model_combo.count()))

    def _user_scrolled(self, _action: int) -> None:
        """Follow the reply while the user keeps the view at the bottom; stay put once they scroll up."""
        bar = self.transcript.verticalScrollBar()
        self._stick_to_bottom = bar.sliderPosition() >= bar.maximum() - 8

    def _follow(self, *_: Any) -> None:
        """Qt moves the view itself on relayout and resize; keep it on the newest text."""
        bar = self.transcript.verticalScrollBar()
        if self._stick_to_bottom and not self._setting_html and bar.value() != bar.maximum():
            bar.setValue(bar.maximum())

    def code_block(self, key: str) -> str | None:
        return self._renderer.code.get(key)

    def code_keys(self) -> list[str]:
        return list(self._renderer.code)

    def _show_version(self, target: str) -> None:
        """Flip a regenerated reply to another of its answers (not while a reply is being written)."""
        if self._streaming:
            self.status_label.setText("Wait for the reply to end (or stop it) to flip between answers.")
            return
        try:
            _, message_id, index = target.split(":")
            self.store.show_version(int(message_id), int(index))
        except (ValueError, QuantDeskError) as exc:
            self.status_label.setText(f"That answer could not be shown ({exc}).")
            return
        self.render(force=True)

    def _anchor_clicked(self, url: QUrl) -> None:
        target = url.toString()
        if target.startswith("version:"):
            self._show_version(target)
        elif target.startswith("copy:"):
            code = self._renderer.code.get(target[5:])
            if code is not None:
                QGuiApplication.clipboard().setText(code)
                lines = code.count("\n") + 1
                self.status_label.setText(f"Copied {lines} line{'s' if lines != 1 else ''} of code.")
        elif url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)
