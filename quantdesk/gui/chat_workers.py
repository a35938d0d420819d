"""The chat page's background work: one long-lived thread that streams replies.

Why one thread for the page's life rather than a pool job per reply: a reply is a long iteration
that the GUI must be able to stop mid-way, and the chat store keeps one SQLite connection per
thread — one thread means one connection, not one more per reply. The worker only iterates the
core's generator and turns each event into a queued Qt signal; it never touches a widget.
"""

from __future__ import annotations

from typing import Iterator

from PySide6.QtCore import QObject, QThread, Signal, Slot

from quantdesk.core.chat_session import Notice
from quantdesk.core.engine import Finished, Token
from quantdesk.core.errors import QuantDeskError


class ReplyWorker(QObject):
    """Lives on the reply thread; ``start_reply`` (a queued signal) hands it an event iterator."""

    token = Signal(str)
    notice = Signal(str)
    finished = Signal(object)   # the core's Finished
    failed = Signal(str)        # a sentence for the user
    ended = Signal()            # after finished/failed: the thread is free again
    start_reply = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.start_reply.connect(self._run)

    @Slot(object)
    def _run(self, events: Iterator[Token | Notice | Finished]) -> None:
        try:
            for event in events:
                if isinstance(event, Token):
                    self.token.emit(event.text)
                elif isinstance(event, Notice):
                    self.notice.emit(event.text)
                elif isinstance(event, Finished):
                    self.finished.emit(event)
        except QuantDeskError as exc:
            self.failed.emit(_sentence(str(exc)))
        except Exception as exc:  # noqa: BLE001 - reaches the user as a sentence, not a crash
            self.failed.emit(f"Unexpected error while generating: {type(exc).__name__}: {exc}.")
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a generator left mid-way stores what came, marked stopped
            self.ended.emit()


class ReplyThread:
    """Owns the thread and its worker; ``shutdown`` waits for the reply in flight to end."""

    def __init__(self) -> None:
        self.thread = QThread()
        self.thread.setObjectName("quantdesk-chat-reply")
        self.worker = ReplyWorker()
        self.worker.moveToThread(self.thread)

    def run(self, events: Iterator[Token | Notice | Finished]) -> None:
        if not self.thread.isRunning():
            self.thread.start()  # started at the first reply: a page nobody chats on holds no thread
        self.worker.start_reply.emit(events)

    def shutdown(self, timeout_ms: int = 15_000) -> bool:
        if not self.thread.isRunning():
            return True
        self.thread.quit()
        return self.thread.wait(timeout_ms)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "Something went wrong while generating."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
