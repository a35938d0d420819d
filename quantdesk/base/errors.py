"""The one exception type the CLI and GUI turn into a sentence for the user, and how any failure
becomes that sentence plus the next step to take."""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass


class QuantDeskError(Exception):
    """An expected failure with a message fit to show a person as-is.

    ``next_step`` says what to do about it, when the raiser knows better than the generic advice.
    """

    next_step: str | None = None

    def __init__(self, message: str = "", next_step: str | None = None) -> None:
        super().__init__(message)
        if next_step is not None:
            self.next_step = next_step


@dataclass(frozen=True)
class Explained:
    sentence: str
    next_step: str

    def text(self) -> str:
        return f"{self.sentence} — {self.next_step}" if self.next_step else self.sentence


def _sentence(text: str) -> str:
    text = text.strip() or "something went wrong"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


_GENERIC_STEPS = {
    "HubUnreachable": "Check the network connection or set a hub mirror in Settings; the bundled catalog works offline.",
    "GGUFError": "The file is not a usable GGUF model: download it again or pick another file.",
    "EngineError": "Try a smaller quant, a shorter context or fewer GPU layers, then load again.",
    "Cancelled": "Resume it from the Downloads page when you are ready.",
    "QuantizeCancelled": "Start it again from the Quantize page when you are ready.",
}


def explain(error: BaseException | str, next_step: str | None = None) -> Explained:
    """Any failure as one sentence and a next step — never a traceback for the user."""
    if isinstance(error, str):
        return Explained(_sentence(error), next_step or "")
    if isinstance(error, QuantDeskError):
        step = next_step or error.next_step
        if step is None:
            step = next((s for cls in type(error).__mro__ if (s := _GENERIC_STEPS.get(cls.__name__))), "")
        return Explained(_sentence(str(error)), step)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return Explained("The disk is full.", next_step or "Free some space, or move the models folder to a bigger "
                         "disk in Settings, then retry.")
    if isinstance(error, PermissionError):
        where = f" ({error.filename})" if error.filename else ""
        return Explained(f"QuantDesk is not allowed to write there{where}.",
                         next_step or "Choose a folder you own in Settings, or fix its permissions.")
    if isinstance(error, FileNotFoundError):
        where = error.filename or str(error)
        return Explained(f"File not found: {where}.", next_step or "Check the path; the file may have been moved.")
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        return Explained("QuantDesk's data is busy in another QuantDesk window or command.",
                         next_step or "Retry in a moment; if it stays busy, close the other QuantDesk.")
    if isinstance(error, sqlite3.OperationalError) and ("disk" in str(error) or "open" in str(error)
                                                        or "readonly" in str(error)):
        return Explained(_sentence(f"QuantDesk's data could not be read or written ({error}); the disk may be "
                                   "full, or the data folder read-only or on a network share"),
                         next_step or "Free some space or fix the folder's permissions, then retry; "
                                      "nothing already saved is lost.")
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
        return Explained(_sentence(f"One of QuantDesk's data files is damaged ({error})"),
                         next_step or "Run `quantdesk repair`: it finds the damaged file, keeps it aside and starts a "
                                      "new one; the other data is not touched.")
    if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
        name = str(error.filename or "")
        shown = f" ({name[:40]}…)" if len(name) > 40 else f" ({name})" if name else ""
        return Explained(f"The file name is too long for this file system{shown}.",
                         next_step or "Use a shorter file name or a shorter folder path.")
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return Explained(_sentence(f"{error.strerror}{where}"),
                         next_step or "Check the path, the free space and the permissions, then retry.")
    if isinstance(error, MemoryError):
        return Explained("The system ran out of memory.", next_step or "Close other programs or pick a smaller quant.")
    return Explained(_sentence(f"Unexpected error: {type(error).__name__}: {error}"),
                     next_step or "This is a bug in QuantDesk; the details are in the log — please report it.")
