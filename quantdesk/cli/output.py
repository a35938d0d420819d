"""What every verb prints the same way: JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def emit_json(data: Any) -> None:
    """``data`` as indented JSON on stdout: the documented ``--json`` contract."""
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- argument types: a number that cannot work is refused by argparse with the reason ---------

MIN_CONTEXT = 256       # llama.cpp pads the context up to a multiple of 256: a smaller one is 256 anyway
MAX_CONTEXT = 1 << 27   # far past any model's training context


def context_length(text: str) -> int:
    value = _integer(text, "--ctx")
    if value < MIN_CONTEXT:
        raise argparse.ArgumentTypeError(f"{value} is too small: llama.cpp's smallest context is {MIN_CONTEXT} "
                                         "tokens (it rounds smaller ones up)")
    if value > MAX_CONTEXT:
        raise argparse.ArgumentTypeError(f"{value:,} tokens is more than any model can take")
    return value


def positive(text: str) -> int:
    value = _integer(text, "the value")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def count(text: str) -> int:
    value = _integer(text, "the value")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def port(text: str) -> int:
    value = _integer(text, "the port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0–65535; 0 picks a free one)")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), *range(0x7f, 0xa0)]}


def printable(text: str) -> str:
    """``text`` from elsewhere (hub file names, repo ids) safe to print on a terminal: control
    characters, escape sequences included, are shown as ``\\xNN`` instead of acting."""
    return text.translate(_CONTROL)
