"""Good/bad status text in colours that read on light and dark themes alike."""

from __future__ import annotations

OK, BAD = "#3fb950", "#e5534b"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def colored(text: str, ok: bool) -> str:
    """``text`` as rich text, green when ``ok``, red otherwise."""
    return f"<span style='color:{OK if ok else BAD}'>{_escape(text)}</span>"


def mark(ok: bool) -> str:
    """A green ✓ or a red ✗."""
    return colored("✓" if ok else "✗", ok)


def breakable(name: str) -> str:
    """``name`` escaped as rich text, with break opportunities after ``- _ . /``: a long model or file
    name in a word-wrapped label then wraps instead of setting the window's minimum width."""
    out = _escape(name)
    for sep in ("-", "_", ".", "/"):
        out = out.replace(sep, sep + "&#8203;")
    return out
