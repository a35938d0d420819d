"""Renders chat templates for its parent: one JSON request per line in, one JSON answer per line out.

A chat template is code from the model file. Jinja's immutable sandbox keeps it away from Python
objects, but not from loops that never end, strings of gigabytes or unbounded recursion. So it runs
here, in a process of its own with capped memory, under budgets: the parent kills this process when
a render runs over its time (``template.TemplateRenderer``), and here string repetition and powers
are bounded and the output stops at ``max_chars``.

Request: ``{"template": str, "context": {...}, "max_chars": int}``.
Answer: ``{"ok": true, "text": str}`` or ``{"ok": false, "kind": "error|too_large|memory|recursion",
"message": str}``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import sys
from typing import Any

MEMORY_LIMIT = 1 << 30  # address space of this process; a template that needs more is hostile


class TooLarge(Exception):
    pass


class RaisedByTemplate(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise RaisedByTemplate(message)


def _strftime_now(fmt: str) -> str:
    return _dt.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=8)
def _environment(max_chars: int):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BudgetSandbox(ImmutableSandboxedEnvironment):
        """The immutable sandbox, with ``*`` and ``**`` unable to make values past the output budget."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > max_chars:
                        raise TooLarge(f"a repetition makes {len(seq) * n:,} items, more than the budget")
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
                raise TooLarge(f"a power of {right} is out of bounds")
            return super().call_binop(context, operator, left, right)

    env = BudgetSandbox(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return env


@functools.lru_cache(maxsize=16)
def _compile(text: str, max_chars: int):
    return _environment(max_chars).from_string(text)


def render(text: str, context: dict[str, Any], max_chars: int) -> str:
    pieces, size = [], 0
    for piece in _compile(text, max_chars).generate(**context):
        size += len(piece)
        if size > max_chars:
            raise TooLarge(f"the output passed {max_chars:,} characters")
        pieces.append(piece)
    return "".join(pieces)


def answer(request: dict[str, Any]) -> dict[str, Any]:
    from jinja2 import TemplateError

    try:
        return {"ok": True, "text": render(request["template"], request.get("context", {}),
                                           int(request.get("max_chars", 1 << 20)))}
    except TooLarge as exc:
        return {"ok": False, "kind": "too_large", "message": str(exc)}
    except MemoryError:
        return {"ok": False, "kind": "memory", "message": "it needed more than "
                                                          f"{MEMORY_LIMIT >> 20} MiB of memory"}
    except RecursionError:
        return {"ok": False, "kind": "recursion", "message": "it recursed without end"}
    except (TemplateError, RaisedByTemplate, TypeError, ValueError, KeyError, AttributeError,
            IndexError, ZeroDivisionError, OverflowError) as exc:
        return {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {exc}"}


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):  # Windows has no rlimits: the time budget still holds
        pass


def main() -> int:
    import jinja2  # noqa: F401 - imported before the cap, so the cap only bounds the render

    _limit_memory()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")  # started: renders are timed from here on
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except (ValueError, KeyError) as exc:
            reply = {"ok": False, "kind": "error", "message": f"bad request: {exc}"}
        except MemoryError:
            reply = {"ok": False, "kind": "memory", "message": "it needed too much memory"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
