"""A small Markdown-to-HTML renderer for the chat transcript (Qt's rich-text subset).

Why our own rather than ``QTextDocument.setMarkdown``: every code block needs its own Copy link
and a boxed, monospaced look, and a reply that is still streaming (an unclosed ``` fence, half a
table) must render sensibly at every token. It covers what chat models write: fenced code,
headings, lists (nested by indent), quotes, rules, pipe tables, and inline code, bold, italic,
strike-through and links. Everything else is shown as text, HTML-escaped — a model's output is
never trusted as markup.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

_FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


@dataclass
class Theme:
    """Colours of the transcript; light and dark follow the window palette."""
    text: str = "#1f2328"
    muted: str = "#59636e"
    link: str = "#0969da"
    code_bg: str = "#f6f8fa"
    code_border: str = "#d0d7de"
    code_header_bg: str = "#eaeef2"
    inline_code_bg: str = "#eff1f3"
    quote: str = "#59636e"
    user_bg: str = "#eef4ff"
    user_border: str = "#c8d8f5"
    assistant_bg: str = "#ffffff"
    assistant_border: str = "#e1e4e8"
    user_label: str = "#1b4fa3"
    assistant_label: str = "#1a7f37"
    stopped: str = "#9a6700"
    interrupted: str = "#cf222e"
    notice_bg: str = "#fff8c5"
    notice_border: str = "#e9d66b"


LIGHT = Theme()
DARK = Theme(text="#e6edf3", muted="#9198a1", link="#4493f8", code_bg="#161b22", code_border="#3d444d",
             code_header_bg="#21262d", inline_code_bg="#2d333b", quote="#9198a1", user_bg="#172a45",
             user_border="#2f4d7a", assistant_bg="#0d1117", assistant_border="#30363d", user_label="#79b8ff",
             assistant_label="#56d364", stopped="#d29922", interrupted="#f85149", notice_bg="#3b2e00",
             notice_border="#7d6608")

MONO = "monospace"  # Qt maps the generic family to the platform's fixed-pitch font


class MarkdownRenderer:
    """Renders one message; the code of each block is kept so its Copy link can find it."""

    def __init__(self, theme: Theme = LIGHT, anchor_prefix: str = "") -> None:
        self.theme = theme
        self.anchor_prefix = anchor_prefix
        self.code_blocks: list[str] = []

    def render(self, text: str) -> str:
        return self._blocks(text.replace("\r\n", "\n").split("\n"))

    # --- blocks ----------------------------------------------------------------------------
    def _blocks(self, lines: list[str]) -> str:
        out: list[str] = []
        para: list[str] = []
        i = 0

        def flush() -> None:
            if para:
                out.append(f"<p style='margin:4px 0'>{'<br>'.join(self.inline(p.strip()) for p in para)}</p>")
                para.clear()

        while i < len(lines):
            line = lines[i]
            fence = _FENCE.match(line)
            if fence:
                flush()
                marker, lang = fence.group(2), fence.group(3)
                body: list[str] = []
                i += 1
                while i < len(lines) and not (lines[i].strip().startswith(marker[0] * len(marker))
                                              and not lines[i].strip().strip(marker[0])):
                    body.append(lines[i])
                    i += 1
                i += 1  # the closing fence (or the end of a reply still streaming)
                out.append(self.code_block("\n".join(body), lang))
                continue
            if not line.strip():
                flush()
                i += 1
                continue
            heading = _HEADING.match(line)
            if heading:
                flush()
                level = min(len(heading.group(1)) + 2, 6)  # h1 in a reply is a section, not a page title
                out.append(f"<h{level} style='margin:8px 0 4px 0'>{self.inline(heading.group(2))}</h{level}>")
                i += 1
                continue
            if _RULE.match(line) and not para:
                flush()
                out.append("<hr>")
                i += 1
                continue
            if _QUOTE.match(line):
                flush()
                inner = []
                while i < len(lines) and (m := _QUOTE.match(lines[i])):
                    inner.append(m.group(1))
                    i += 1
                out.append(f"<blockquote style='color:{self.theme.quote}; margin:4px 0 4px 12px'>"
                           f"{self._blocks(inner)}</blockquote>")
                continue
            if _ITEM.match(line):
                flush()
                start = i
                i += 1
                while i < len(lines) and (_ITEM.match(lines[i]) or (lines[i].startswith((" ", "\t"))
                                                                   and lines[i].strip())):
                    if _starts_other_list(lines[start], lines[i]):
                        break
                    i += 1
                out.append(self._list(lines[start:i]))
                continue
            if "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
                flush()
                rows = [line]
                i += 2
                while i < len(lines) and "|" in lines[i] and lines[i].strip():
                    rows.append(lines[i])
                    i += 1
                out.append(self._table(rows))
                continue
            para.append(line)
            i += 1
        flush()
        return "".join(out)

    def code_block(self, code: str, lang: str = "") -> str:
        t = self.theme
        index = len(self.code_blocks)
        self.code_blocks.append(code)
        label = html.escape(lang) if lang else "code"
        return (f"<table width='100%' cellspacing='0' cellpadding='6' border='0' style='margin:6px 0; "
                f"background-color:{t.code_bg}'>"
                f"<tr><td style='background-color:{t.code_header_bg}; color:{t.muted}; font-size:small'>{label}</td>"
                f"<td align='right' style='background-color:{t.code_header_bg}; font-size:small'>"
                f"<a href='copy:{self.anchor_prefix}{index}' style='color:{t.link}; text-decoration:none'>"
                f"Copy</a></td></tr>"
                f"<tr><td colspan='2'><pre style='margin:0; font-family:{MONO}; color:{t.text}'>"
                f"{html.escape(code)}</pre></td></tr></table>")

    def _list(self, lines: list[str]) -> str:
        """Items by indent: deeper items become a nested list of the item above them."""
        first = _ITEM.match(lines[0])
        assert first is not None
        base = len(first.group(1).expandtabs(4))
        ordered = first.group(2)[0].isdigit()
        items: list[tuple[str, list[str]]] = []
        for line in lines:
            m = _ITEM.match(line)
            if m and len(m.group(1).expandtabs(4)) <= base + 1:
                items.append((m.group(3), []))
            elif items:
                items[-1][1].append(line)
        parts = []
        for text, rest in items:
            inner = self.inline(text)
            if rest:
                sub = [r for r in rest if r.strip()]
                if sub and _ITEM.match(sub[0]):
                    inner += self._list(sub)
                else:
                    inner += "<br>" + "<br>".join(self.inline(r.strip()) for r in sub)
            parts.append(f"<li>{inner}</li>")
        tag = "ol" if ordered else "ul"
        start = ""
        if ordered:
            number = re.match(r"\d+", first.group(2))
            if number and int(number.group()) != 1:
                start = f" start='{int(number.group())}'"
        return f"<{tag}{start} style='margin:4px 0'>{''.join(parts)}</{tag}>"

    def _table(self, rows: list[str]) -> str:
        t = self.theme

        def cells(row: str) -> list[str]:
            row = row.strip()
            if row.startswith("|"):
                row = row[1:]
            if row.endswith("|"):
                row = row[:-1]
            return [c.strip() for c in row.split("|")]

        head, *body = rows
        out = [f"<table cellspacing='0' cellpadding='4' style='margin:6px 0; border:1px solid {t.code_border}; "
               "border-collapse:collapse'>", "<tr>"]
        out += [f"<th style='background-color:{t.code_header_bg}'>{self.inline(c)}</th>" for c in cells(head)]
        out.append("</tr>")
        for row in body:
            out.append("<tr>" + "".join(f"<td>{self.inline(c)}</td>" for c in cells(row)) + "</tr>")
        out.append("</table>")
        return "".join(out)

    # --- inline ----------------------------------------------------------------------------
    def inline(self, text: str) -> str:
        """Code spans first (their content is literal), then emphasis and links on the rest."""
        parts = re.split(r"(`+)(.+?)\1", text)
        out = []
        for k in range(0, len(parts), 3):
            out.append(self._emphasis(html.escape(parts[k], quote=False)))
            if k + 2 < len(parts):
                out.append(f"<code style='font-family:{MONO}; background-color:{self.theme.inline_code_bg}'>"
                           f"{html.escape(parts[k + 2].strip(), quote=False)}</code>")
        return "".join(out)

    def _emphasis(self, s: str) -> str:
        link = self.theme.link
        s = re.sub(r"\[([^\]]+)\]\((https?://[^)\s'\"<>]+)\)",
                   lambda m: f"<a href='{m.group(2)}' style='color:{link}'>{m.group(1)}</a>", s)
        s = re.sub(r"(?<!['\"=>])\b(https?://[^\s<'\"]+[^\s<.,;:!?)\]'\"])",
                   lambda m: f"<a href='{m.group(1)}' style='color:{link}'>{m.group(1)}</a>", s)
        s = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"(?<![\w])__(?=\S)(.+?)(?<=\S)__(?![\w])", r"<b>\1</b>", s)
        s = re.sub(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])", r"<i>\1</i>", s)
        s = re.sub(r"(?<![\w])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w])", r"<i>\1</i>", s)
        s = re.sub(r"~~(?=\S)(.+?)(?<=\S)~~", r"<s>\1</s>", s)
        return s


def _starts_other_list(first: str, line: str) -> bool:
    """A top-level item of the other kind (bullets after numbers, or back) begins a new list."""
    a, b = _ITEM.match(first), _ITEM.match(line)
    if a is None or b is None or len(b.group(1).expandtabs(4)) > len(a.group(1).expandtabs(4)) + 1:
        return False
    return a.group(2)[0].isdigit() != b.group(2)[0].isdigit()


def markdown_to_html(text: str, theme: Theme = LIGHT, anchor_prefix: str = "") -> tuple[str, list[str]]:
    """HTML for a message and the code of its blocks, in order (``copy:<prefix><index>`` links)."""
    renderer = MarkdownRenderer(theme, anchor_prefix)
    return renderer.render(text), renderer.code_blocks
