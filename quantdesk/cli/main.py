"""``quantdesk <verb>``: every capability of the app, headless, on the same core.

With no verb the desktop app starts. ``--json`` output follows the documented contract; errors
exit non-zero with one sentence on stderr (a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from quantdesk import __version__
from quantdesk.base.errors import QuantDeskError

Command = Callable[[argparse.Namespace], int]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hardware", metavar="FILE|PRESET",
                   help="plan for simulated hardware: a JSON file in the `hw --json` schema or a preset name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quantdesk", description="Get a local LLM running on this machine.")
    parser.add_argument("--version", action="version", version=f"quantdesk {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    from quantdesk.cli.verbs import register_all

    register_all(sub, _add_common)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"] and len(argv) >= 2:  # a frozen app's llama.cpp child (base/child_process.py)
        from quantdesk.base.child_process import run_child

        return run_child(argv[1], argv[2:])
    argv = _options_after_the_verb(argv)
    if not argv:
        return gui_main()
    if argv[0] == "gui" and not {"-h", "--help"} & set(argv[1:]):
        return gui_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except QuantDeskError as exc:
        print(f"quantdesk: error: {exc}", file=sys.stderr)
        if exc.next_step:
            print(f"quantdesk: {exc.next_step}", file=sys.stderr)
        if getattr(args, "debug", False):
            raise
        return 1
    except KeyboardInterrupt:
        print("quantdesk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends: not an error worth a message
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if getattr(args, "debug", False):
            raise
        import sqlite3

        if isinstance(exc, (OSError, sqlite3.DatabaseError, MemoryError)):  # the machine said no: say why
            from quantdesk.base.errors import explain

            told = explain(exc)
            print(f"quantdesk: error: {told.sentence}", file=sys.stderr)
            if told.next_step:
                print(f"quantdesk: {told.next_step}", file=sys.stderr)
            return 1
        print(f"quantdesk: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1


GLOBAL_OPTIONS = {"--hardware": True, "--json": False, "--debug": False}  # option: takes a value


def _options_after_the_verb(argv: list[str]) -> list[str]:
    """``quantdesk --hardware nvidia-8gb plan M`` means ``quantdesk plan M --hardware nvidia-8gb``; with no
    verb after them (``quantdesk --hardware nvidia-8gb``) the window opens planning for that machine."""
    moved: list[str] = []
    rest = list(argv)
    while rest and rest[0].split("=", 1)[0] in GLOBAL_OPTIONS:
        option = rest.pop(0)
        moved.append(option)
        if GLOBAL_OPTIONS[option.split("=", 1)[0]] and "=" not in option and rest:
            moved.append(rest.pop(0))
    if not moved:
        return argv
    if not rest:  # the window: it takes --hardware; --json and --debug mean nothing there
        return ["gui", *[m for i, m in enumerate(moved) if m.startswith("--hardware")
                         or (i and moved[i - 1] == "--hardware")]]
    return [rest[0], *rest[1:], *moved]


def gui_main(argv: list[str] | None = None) -> int:
    try:
        from quantdesk.gui.app import run_app
    except ImportError as exc:
        print(f"quantdesk: the desktop app cannot start: {exc}", file=sys.stderr)
        return 1
    return run_app(argv or [])


if __name__ == "__main__":
    raise SystemExit(main())
