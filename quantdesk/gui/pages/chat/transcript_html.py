"""The transcript as HTML: a conversation from the store drawn as bubbles, notices and figures.

Nothing here touches a widget: :class:`TranscriptRenderer` turns a ``Conversation`` and a ``Theme``
into the HTML the page sets on its ``QTextBrowser``, remembering each finished message's HTML (a
long chat redraws at every token) and the code blocks of the last drawing (for the Copy links).
"""

from __future__ import annotations

import html
from typing import Any

from quantdesk.chat.store import Conversation, Message
from quantdesk.gui.widgets.markdown_view import Theme, markdown_to_html

ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System"}
STATUS_MARKS = {"stopped": ("■ stopped", "stopped"), "interrupted": ("⚠ interrupted", "interrupted"),
                "failed": ("⚠ failed", "interrupted"), "streaming": ("● writing…", "muted")}
CACHE_LIMIT = 2000  # finished messages' HTML kept; cleared past this


def figures_text(figures: dict[str, Any] | None) -> str:
    """One line of a reply's stored figures: tokens, TTFT, speeds, context used of n_ctx."""
    if not figures:
        return ""
    parts = []
    if figures.get("tokens") is not None:
        parts.append(f"{figures['tokens']} tokens")
    if figures.get("ttft_s"):
        parts.append(f"first token {figures['ttft_s']:.2f} s")
    if figures.get("tokens_per_s"):
        parts.append(f"{figures['tokens_per_s']:.1f} tok/s")
    if figures.get("prompt_tokens_per_s"):
        parts.append(f"prompt {figures['prompt_tokens_per_s']:,.0f} tok/s")
    if figures.get("context_used") and figures.get("n_ctx"):
        parts.append(f"context {figures['context_used']:,} of {figures['n_ctx']:,}")
    if figures.get("dropped_messages"):
        parts.append(f"{figures['dropped_messages']} oldest messages left out")
    return " · ".join(parts)


def versions_html(m: Message, theme: Theme) -> str:
    """"‹ 2 / 3 ›": a regenerated reply's answers, each a click away (links the page handles)."""
    n, i = len(m.versions), m.version
    back = (f"<a href='version:{m.id}:{i - 1}' style='color:{theme.link}; text-decoration:none'>‹</a>"
            if i > 0 else f"<span style='color:{theme.muted}'>‹</span>")
    forward = (f"<a href='version:{m.id}:{i + 1}' style='color:{theme.link}; text-decoration:none'>›</a>"
               if i < n - 1 else f"<span style='color:{theme.muted}'>›</span>")
    return f"<span style='font-size:small'>{back} answer {i + 1} of {n} {forward}</span>"


def notice_html(text: str, theme: Theme) -> str:
    return (f"<table width='100%' cellspacing='0' cellpadding='6' style='margin-top:8px; "
            f"background-color:{theme.notice_bg}; border:1px solid {theme.notice_border}'>"
            f"<tr><td><b>Note:</b> {html.escape(text)}</td></tr></table>")


def bubble(label: str, label_color: str, bg: str, border: str, mark: str, body: str, footer: str = "") -> str:
    return (f"<table width='100%' cellspacing='0' cellpadding='10' style='margin-top:10px; "
            f"background-color:{bg}; border:1px solid {border}'><tr><td>"
            f"<p style='margin:0 0 2px 0'><b style='color:{label_color}'>{label}</b>{mark}</p>"
            f"{body}{footer}</td></tr></table>")


def empty_state_html(theme: Theme, *, model_ready: bool, model_name: str | None, loading: bool,
                     has_models: bool) -> str:
    """What an empty conversation shows: how to start, for where the user is now."""
    if model_ready:
        title = "New conversation"
        text = (f"Talking to <b>{html.escape(model_name or '')}</b>. Type a message below and press "
                "<b>Ctrl+Enter</b>. The reply streams in here; <b>Esc</b> stops it.")
    elif loading:
        title = "Loading the model…"
        text = "This takes a few seconds for small models and up to a minute for large ones."
    elif has_models:
        title = "Pick a model from the library and load it"
        text = ("Choose a model in the <b>Model</b> list above and press <b>Load</b>, then type a message "
                "below and press <b>Ctrl+Enter</b>.")
    else:
        title = "Pick a model from the library and load it"
        text = ("Your library has no models yet: choose <b>Open GGUF file…</b> in the <b>Model</b> list above "
                "to chat with a file you already have, or add one with <code>quantdesk download</code> "
                "or <code>quantdesk import</code>.")
    return (f"<div align='center' style='margin-top:80px'><p style='font-size:x-large; color:{theme.text}'>"
            f"{title}</p><p style='color:{theme.muted}'>{text}</p>"
            f"<p style='color:{theme.muted}; font-size:small'>Conversations are kept on this computer and "
            "listed on the left; Ctrl+F searches them.</p></div>")


class TranscriptRenderer:
    """Conversations to HTML; ``code`` holds the code blocks of the last drawing by anchor key."""

    def __init__(self) -> None:
        self.code: dict[str, str] = {}
        self._cache: dict[tuple[Any, ...], tuple[str, dict[str, str]]] = {}

    def empty(self, theme: Theme, **state: Any) -> str:
        """The empty state (see :func:`empty_state_html`); no code blocks."""
        self.code = {}
        return empty_state_html(theme, **state)

    def conversation(self, conv: Conversation, theme: Theme, notices: list[str], streaming: bool) -> str:
        """``conv`` as bubbles; ``notices`` go before the last reply, ``streaming`` shows a reply about to come."""
        parts: list[str] = []
        code: dict[str, str] = {}
        last_assistant = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=-1)
        if conv.system_prompt:
            parts.append(f"<p style='margin:2px 0 6px 0; color:{theme.muted}'><i>System prompt: "
                         f"{html.escape(conv.system_prompt)}</i></p>")
        for i, m in enumerate(conv.messages):
            if i == last_assistant and notices:
                parts.extend(notice_html(n, theme) for n in notices)
            block, codes = self.message(m, theme)
            code.update(codes)
            parts.append(block)
        if streaming and conv.messages[-1].role == "user":
            if notices and last_assistant < len(conv.messages) - 1:
                parts.extend(notice_html(n, theme) for n in notices)
            parts.append(bubble("Assistant", theme.assistant_label, theme.assistant_bg, theme.assistant_border,
                                f" <span style='color:{theme.muted}'>● reading your message…</span>", ""))
        self.code = code
        return "".join(parts)

    def message(self, m: Message, theme: Theme) -> tuple[str, dict[str, str]]:
        """One message's bubble and its code blocks (kept once the message is finished)."""
        key = (m.id, m.status, m.content, repr(m.figures), theme.text, len(m.versions), m.version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        body, blocks = markdown_to_html(m.content, theme, anchor_prefix=f"{m.id}.")
        codes = {f"{m.id}.{k}": c for k, c in enumerate(blocks)}
        user = m.role == "user"
        mark = ""
        if m.status in STATUS_MARKS:
            text, colour = STATUS_MARKS[m.status]
            mark = f"  <span style='color:{getattr(theme, colour)}; font-size:small'>{text}</span>"
        footer = ""
        if m.role == "assistant" and m.figures:
            footer = (f"<p style='margin:6px 0 0 0; color:{theme.muted}; font-size:small'>"
                      f"{html.escape(figures_text(m.figures))}</p>")
        if m.role == "assistant" and len(m.versions) > 1 and m.status != "streaming":
            mark += "  " + versions_html(m, theme)
        if m.role == "assistant" and m.status == "streaming" and not m.content:
            body = f"<p style='margin:0; color:{theme.muted}'>…</p>"
        result = (bubble(ROLE_LABELS.get(m.role, m.role.title()),
                         theme.user_label if user else theme.assistant_label,
                         theme.user_bg if user else theme.assistant_bg,
                         theme.user_border if user else theme.assistant_border, mark, body, footer), codes)
        if m.status != "streaming":  # a streaming reply changes at every token: not worth keeping
            if len(self._cache) > CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = result
        return result
