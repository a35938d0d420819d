"""Where each quant's memory goes: a stacked bar on the GPU and one in RAM per quant, each against
what this machine has free for a model, so the trade between quants is seen rather than read."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QHelpEvent, QMouseEvent, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from quantdesk.base.units import fmt_bytes
from quantdesk.planning.fit import Budget, PlanOption
from quantdesk.planning.memory_model import Memory
from quantdesk.planning.plan import Plan

# (key, legend label, colour); the order is the stacking order, weights first
KINDS = (("weights", "Weights", "#4C78A8"), ("experts", "Experts kept in RAM", "#72B7B2"),
         ("repack", "CPU repack copy", "#9ECAE9"),
         ("kv", "KV cache", "#F58518"), ("compute", "Compute buffers", "#54A24B"),
         ("runtime", "Runtime", "#B0A8A4"))
COLORS = {key: color for key, _, color in KINDS}
LABELS = {key: label for key, label, _ in KINDS}
LIMIT_COLOR = "#D62728"
ROW_H, BAR_H, PAD, GAP = 19, 11, 8, 18


def gpu_parts(m: Memory) -> dict[str, int]:
    return {"weights": m.weights_gpu, "kv": m.kv_gpu, "compute": m.compute_gpu, "runtime": m.overhead_gpu}


def ram_parts(m: Memory, with_gpu: bool = False) -> dict[str, int]:
    """With unified memory what the GPU holds comes out of the same RAM, so it counts here too."""
    gpu = gpu_parts(m) if with_gpu else {}
    return {key: n + gpu.get(key, 0) for key, n in (("weights", m.weights_cpu - m.experts_cpu),
                                                    ("experts", m.experts_cpu), ("repack", m.repack_cpu),
                                                    ("kv", m.kv_cpu), ("compute", m.compute_cpu),
                                                    ("runtime", m.overhead_cpu))}


@dataclass(frozen=True)
class Panel:
    title: str
    limit: int  # what the planner lets a model use here
    rows: list[list[tuple[str, int]]]  # per option: (kind, bytes) in stacking order

    @property
    def top(self) -> int:
        return max([self.limit, *(sum(b for _, b in r) for r in self.rows)], default=1) or 1


def ticks(top: float, count: int = 4) -> list[float]:
    """Gridline positions in bytes at round GiB (or MiB) steps, about ``count`` of them up to ``top``."""
    unit = float(1 << 30) if top >= 1 << 30 else float(1 << 20)
    raw = top / unit / count
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw) * unit
    return [i * step for i in range(int(top // step) + 1)]


def tick_label(n: float) -> str:
    if n == 0:
        return "0"
    gib = n / (1 << 30)
    if gib >= 1:
        return f"{gib:g} GiB"
    return f"{n / (1 << 20):g} MiB"


class MemoryChart(QWidget):
    row_clicked = Signal(int)  # the option's index in the plan

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Memory chart")
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.options: list[PlanOption] = []
        self.panels: list[Panel] = []
        self.selected = -1
        self._update_description()

    # --- data ------------------------------------------------------------------------------
    def set_plan(self, plan: Plan | None) -> None:
        self.options = list(plan.options) if plan else []
        self.panels = []
        if plan is not None:
            budget = Budget.of(plan.hardware)
            if budget.vendor is not None:
                self.panels.append(Panel("GPU working set" if budget.unified else "VRAM", budget.vram,
                                         [list(gpu_parts(o.memory).items()) for o in self.options]))
            ram_rows = [list(ram_parts(o.memory, with_gpu=budget.unified).items()) for o in self.options]
            self.panels.append(Panel("Unified memory" if budget.unified else "System RAM", budget.ram, ram_rows))
        self.selected = min(self.selected, len(self.options) - 1)
        self._update_description()
        self.updateGeometry()
        self.update()

    def set_selected(self, row: int) -> None:
        if row != self.selected:
            self.selected = row
            self.update()

    def describe(self, row: int) -> str:
        """One option's figures in words: the tooltip and the accessible description."""
        o = self.options[row]
        parts = []
        for panel in self.panels:
            total = sum(b for _, b in panel.rows[row])
            items = ", ".join(f"{LABELS[key]} {fmt_bytes(b)}" for key, b in panel.rows[row] if b)
            verdict = "over the limit" if total > panel.limit else "fits"
            parts.append(f"{panel.title}: {fmt_bytes(total)} of {fmt_bytes(panel.limit)} free ({verdict})"
                         + (f" — {items}" if items else ""))
        return f"{o.quant}{' (recommended)' if o.recommended else ''}: " + "; ".join(parts)

    def _update_description(self) -> None:
        if not self.options:
            self.setAccessibleDescription("No plan yet.")
            return
        self.setAccessibleDescription(" ".join(self.describe(i) + "." for i in range(len(self.options))))

    # --- geometry ----------------------------------------------------------------------------
    def _label_width(self) -> int:
        fm = QFontMetrics(self._bold_font())
        return max([fm.horizontalAdvance(f"★ {o.quant}") for o in self.options] + [40]) + 10

    def _bold_font(self) -> QFont:
        font = QFont(self.font())
        font.setBold(True)
        return font

    def _legend(self) -> list[tuple[float, int, str, str | None]]:
        """(x, line, label, colour; None for the limit line) of each legend entry, wrapped to the width."""
        fm = self.fontMetrics()
        used = {k for panel in self.panels for row in panel.rows for k, b in row if b}
        entries = [(label, color) for key, label, color in KINDS if key in used]
        entries.append(("free for a model here", None))
        out, x, line = [], PAD + 2.0, 0
        for label, color in entries:
            width = 15 + fm.horizontalAdvance(label) + 16
            if x > PAD + 2 and x + width - 16 > self.width() - PAD:
                x, line = PAD + 2.0, line + 1
            out.append((x, line, label, color))
            x += width
        return out

    def _header_h(self) -> int:
        """The legend's lines, then the panel titles."""
        lines = 1 + max((line for _, line, _, _ in self._legend()), default=0)
        return (lines + 1) * (self.fontMetrics().height() + 4) + 4

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if self.sizeHint().height() != self.height():  # the legend wrapped or unwrapped
            self.updateGeometry()
        super().resizeEvent(event)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        rows = max(1, len(self.options))
        return QSize(640, PAD + self._header_h() + rows * ROW_H + self.fontMetrics().height() + 2 * PAD)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        return QSize(360, self.sizeHint().height())

    def _panel_rects(self) -> list[QRectF]:
        left = PAD + self._label_width()
        width = self.width() - left - PAD
        n = len(self.panels)
        each = (width - GAP * (n - 1)) / max(1, n)
        top = PAD + self._header_h()
        height = len(self.options) * ROW_H
        return [QRectF(left + i * (each + GAP), top, each, height) for i in range(n)]

    def _row_at(self, y: float) -> int:
        top = PAD + self._header_h()
        row = int((y - top) // ROW_H)
        return row if y >= top and 0 <= row < len(self.options) else -1

    # --- painting ----------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt naming
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text, mid = pal.color(QPalette.ColorRole.WindowText), pal.color(QPalette.ColorRole.Mid)
        p.fillRect(self.rect(), pal.color(QPalette.ColorRole.Base))
        p.setPen(mid)
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        if not self.options:
            p.setPen(text)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Plan a model to see where its memory goes.")
            return
        self._paint_legend(p, text)
        rects = self._panel_rects()
        self._paint_rows(p, rects[0].left() if rects else PAD, text, pal)
        for panel, rect in zip(self.panels, rects):
            self._paint_panel(p, panel, rect, text, mid)

    def _paint_legend(self, p: QPainter, text: QColor) -> None:
        fm = self.fontMetrics()
        for x, line, label, color in self._legend():
            y = PAD + line * (fm.height() + 4) + fm.ascent()
            if color is None:
                p.setPen(QPen(QColor(LIMIT_COLOR), 1.5, Qt.PenStyle.DashLine))
                p.drawLine(QPointF(x, y - 4), QPointF(x + 11, y - 4))
            else:
                p.fillRect(QRectF(x, y - 9, 11, 11), QColor(color))
            p.setPen(text)
            p.drawText(QPointF(x + 15, y), label)

    def _paint_rows(self, p: QPainter, bars_left: float, text: QColor, pal: QPalette) -> None:
        top = PAD + self._header_h()
        highlight = QColor(pal.color(QPalette.ColorRole.Highlight))
        highlight.setAlpha(45)
        for i, o in enumerate(self.options):
            y = top + i * ROW_H
            if i == self.selected:
                p.fillRect(QRectF(1, y, self.width() - 2, ROW_H), highlight)
            p.setFont(self._bold_font() if o.recommended else self.font())
            p.setPen(text)
            p.drawText(QRectF(PAD, y, bars_left - PAD - 6, ROW_H),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                       f"★ {o.quant}" if o.recommended else f"   {o.quant}")
        p.setFont(self.font())

    def _paint_panel(self, p: QPainter, panel: Panel, rect: QRectF, text: QColor, mid: QColor) -> None:
        fm = self.fontMetrics()
        value_w = fm.horizontalAdvance("000.0 MiB") + 6
        scale = max(1.0, rect.width() - value_w) / panel.top
        # title over the panel, then gridlines with their labels under it
        p.setPen(text)
        title_y = PAD + self._header_h() - 4 - (fm.height() + 4) + fm.ascent()
        p.drawText(QPointF(rect.left(), title_y), f"{panel.title} — {fmt_bytes(panel.limit)} free")
        grid = QColor(mid)
        grid.setAlpha(90)
        free_x = rect.left()  # labels never overlap: each starts past the end of the one before
        for tick in ticks(panel.top):
            x = rect.left() + tick * scale
            p.setPen(QPen(grid, 1))
            p.drawLine(QPointF(x, rect.top() - 2), QPointF(x, rect.bottom() + 2))
            label = tick_label(tick)
            width = fm.horizontalAdvance(label)
            start = x if tick == 0 else x - width / 2
            if start >= free_x and start + width <= rect.right():
                p.setPen(text)
                p.drawText(QPointF(start, rect.bottom() + fm.ascent() + 4), label)
                free_x = start + width + 8
        bar_ends = []
        for i, row in enumerate(panel.rows):
            y = rect.top() + i * ROW_H + (ROW_H - BAR_H) / 2
            x = rect.left()
            for key, n_bytes in row:
                if n_bytes > 0:
                    p.fillRect(QRectF(x, y, max(n_bytes * scale, 1.0), BAR_H), QColor(COLORS[key]))
                    x += n_bytes * scale
            bar_ends.append(x)
        limit_x = rect.left() + panel.limit * scale
        p.setPen(QPen(QColor(LIMIT_COLOR), 1.5, Qt.PenStyle.DashLine))
        p.drawLine(QPointF(limit_x, rect.top() - 4), QPointF(limit_x, rect.bottom() + 2))
        base = self.palette().color(QPalette.ColorRole.Base)
        for i, (row, x) in enumerate(zip(panel.rows, bar_ends)):
            total = sum(b for _, b in row)
            label = fmt_bytes(total) if total else "–"
            box = QRectF(x + 3, rect.top() + i * ROW_H + 2, fm.horizontalAdvance(label) + 4, ROW_H - 4)
            p.fillRect(box, base)  # the figure stays readable where it crosses the limit line
            p.setPen(QColor(LIMIT_COLOR) if total > panel.limit else text)
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, label)

    # --- interaction -------------------------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            row = self._row_at(event.pos().y())
            if row >= 0:
                QToolTip.showText(event.globalPos(), self.describe(row), self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt naming
        row = self._row_at(event.position().y())
        if row >= 0:
            self.row_clicked.emit(row)
        super().mousePressEvent(event)
