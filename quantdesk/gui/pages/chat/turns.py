"""The Chat page's turns: send, regenerate, edit the last message, stop — and the reply as it streams.

A turn is the ``ChatSession``'s generator, iterated on the page's reply thread (``workers.stream_reply``);
each token, notice and the end arrive here as the task's progress, and the pane redraws from the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.engine import Finished, Token
from quantdesk.chat.session import ChatSession, Notice
from quantdesk.gui.pages.chat.transcript_html import figures_text
from quantdesk.gui.widgets.status_text import breakable
from quantdesk.gui.pages.chat.workers import reply_failure_sentence, sentence, stream_reply
from quantdesk.gui.tasks import run_task


class TurnsMixin:
    """Send, regenerate, edit and stop; the streamed reply's events."""

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
        self._first_token_at = self._status_at = time.monotonic()
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
        now = time.monotonic()
        if self.tokens_seen == 1:
            self._first_token_at = now
            self.refresh_conversations()  # the first message has named the conversation by now
        elif now - self._status_at >= 0.25 and not self.session_stopping:
            self._status_at = now
            rate = (self.tokens_seen - 1) / (now - self._first_token_at) if now > self._first_token_at else 0.0
            self.status_label.setText(f"Writing… {self.tokens_seen:,} tokens · {rate:.1f} tok/s (Esc stops)")
        self._schedule_render()

    @property
    def session_stopping(self) -> bool:
        return self.status_label.text().startswith("Stopping")

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
            self.report_label.setText(f"{breakable(self.model_name or 'The model')} is not running.")
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
        if self.engine is not None and self.engine.restarting.is_set() and not self._reloading_shown:
            self._reloading_shown = True  # the health check restores the controls once it is back
            self.report_label.setText("Loading the model again: it did not stop in time, so its process was ended…")
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

