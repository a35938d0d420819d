"""Chat's background work: streaming a reply on the page's reply thread.

The page runs :func:`stream_reply` as a task on one long-lived thread (a ``SerialWorker``): a reply
is a long iteration the GUI must be able to stop mid-way, and the chat store keeps one SQLite
connection per thread — one thread means one connection, not one more per reply. The work only
iterates the core's generator; each event reaches the page as the task's progress.
"""

from __future__ import annotations

from collections.abc import Iterator

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.engine import Finished, Token
from quantdesk.chat.session import Notice

ReplyEvent = Token | Notice | Finished


def stream_reply(events: Iterator[ReplyEvent]) -> Iterator[ReplyEvent]:
    """The reply's events, one by one; a reply left mid-way still stores what came, marked stopped."""
    try:
        yield from events
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def reply_failure_sentence(error: Exception) -> str:
    if isinstance(error, QuantDeskError):
        return sentence(str(error))
    return f"Unexpected error while generating: {type(error).__name__}: {error}."


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "Something went wrong while generating."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
