"""One plan on screen: the model's title with its publisher and where the figures come from, its
quants as rows (size, fit badge, speed, quality loss), the memory chart, and the planner's notes."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from quantdesk.base.units import fmt_bytes
from quantdesk.gguf.quants import quality_words
from quantdesk.gui.theme import MUTED, dark_now, themed_style, tone
from quantdesk.gui.widgets.discover_results import BADGE_COLORS
from quantdesk.gui.widgets.memory_chart import MemoryChart
from quantdesk.hub.client import publisher_kind
from quantdesk.planning.fit import PlanOption
from quantdesk.planning.plan import Plan, kind_of

COLUMNS = ["", "Quant", "Size", "Fit here", "Speed", "Quality loss"]
QUALITY_COLUMN = 5
FIT_COLUMN = 3
# fit badge: (background, text), light then dark scheme
FIT_COLORS = {"full_gpu": ("#DFF2E1", "#1B5E20"), "partial": ("#FFF1CC", "#6D4C00"),
              "cpu_only": ("#E6E9F7", "#283593"), "no_fit": ("#FBE3E3", "#B71C1C")}
FIT_COLORS_DARK = {"full_gpu": ("#1f3d26", "#8fd19e"), "partial": ("#3d3415", "#f0c96a"),
                   "cpu_only": ("#262b45", "#a9b4f5"), "no_fit": ("#45201f", "#ff9a94")}
SOURCE_TAGS = {"hub": "planned from the files' own headers on the hub",
               "catalog": "offline estimate from the bundled catalog's published shape",
               "file": "local file"}


def quality_tip(quant: str, kld: float | None) -> str:
    if kld is None:
        return f"No published quality figure for {quant}; it is ranked by its bits per weight."
    return (f"{quant}: {quality_words(kld)} loss — KL divergence {kld:.4f} from the full-precision model "
            "(llama.cpp's perplexity scoreboard, Llama-3-8B). Near-lossless below 0.007, small below 0.05, "
            "noticeable below 0.15, large above.")


def fit_badge(o: PlanOption) -> str:
    if o.verdict == "partial" and o.cpu_moe_layers:  # the row's tooltip says it in full
        experts = f"experts {o.cpu_moe_layers}/{o.n_layers} in RAM"
        return (f"full GPU but {experts}" if o.all_layers_on_gpu
                else f"partial {o.gpu_layers} of {o.n_layers + 1}, {experts}")
    return {"full_gpu": "full GPU", "partial": f"partial {o.gpu_layers} of {o.n_layers + 1}",
            "cpu_only": "CPU only", "no_fit": "won't fit"}[o.verdict]


def size_text(o: PlanOption) -> str:
    """The file's size; ~ where the catalog listed none and it is estimated from the parameter count."""
    estimated = bool(o.model and o.model.metadata.get("quantdesk.size_estimated"))
    return ("~" if estimated else "") + fmt_bytes(o.size)


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class PlanTitle(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Pick a model on the left, or type what you are looking for above.", parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setAccessibleName("Model")

    def show_ref(self, ref: str, plan: Plan | None) -> None:
        publisher = publisher_kind(ref) if kind_of(ref) == "repo" else None
        pill = (f" <span style='background:{BADGE_COLORS[publisher]}; color:white'>"
                f"&nbsp;{publisher.replace(' ', '&nbsp;')}&nbsp;</span>" if publisher else "")
        source = f"<br><span style='color:{tone(*MUTED)}'>{SOURCE_TAGS[plan.source]}</span>" if plan else ""
        self.setText(f"<span style='font-size:13pt; font-weight:600'>{esc(ref)}</span>{pill}{source}")
        self.setAccessibleDescription(", ".join(x for x in (ref, publisher, SOURCE_TAGS[plan.source] if plan else "")
                                                if x))


class PlanView(QScrollArea):
    """The quants at their natural height, one scrollbar for all of it when a repo has many."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Plan")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.table.setAccessibleName("Quants")
        themed_style(self.table, lambda: "QTableWidget::item:selected { background: %s; color: %s; }"
                     % (tone("#CFE2F7", "#2f4d7a"), tone("black", "white")))
        self._plan: Plan | None = None
        self.chart = MemoryChart()
        self.table.currentCellChanged.connect(lambda row, *_: self.chart.set_selected(row))
        self.table.horizontalScrollBar().rangeChanged.connect(lambda *_: self._fit_table())
        self.chart.row_clicked.connect(self.table.selectRow)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes.setAccessibleName("Plan notes")
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.chart)
        layout.addWidget(self.notes)
        layout.addStretch(1)
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self._fit_table()

    def theme_changed(self) -> None:
        """The fit badges' colours are the scheme's: paint them again."""
        if self._plan is not None:
            self.show_plan(self._plan)

    def show_plan(self, plan: Plan | None) -> None:
        self._plan = plan
        self.chart.set_plan(plan)
        options = plan.options if plan else []
        self.table.setRowCount(len(options))
        for row, o in enumerate(options):
            self._fill_row(row, o)
        rec = plan.recommended if plan else None
        if rec is not None:
            self.table.selectRow(options.index(rec))
        self._fit_table()
        if plan is None:
            self.notes.setText("")
            return
        text = esc(rec.reason) if rec else "<b>Nothing here runs on this machine at this context.</b>"
        if rec and rec.max_ctx_full_gpu:
            text += f" Largest context fully on the GPU: {rec.max_ctx_full_gpu:,} tokens."
        self.notes.setText(text + "".join(f"<br>• {esc(n)}" for n in plan.notes))

    def _fill_row(self, row: int, o: PlanOption) -> None:
        cells = ["★" if o.recommended else "", o.quant, size_text(o), fit_badge(o),
                 f"~{o.tokens_per_s:.1f} tok/s" if o.tokens_per_s else "–",
                 quality_words(o.quality_loss)]
        tip = f"{o.file}\n{o.reason}" + (f"\n{o.experts_sentence()}" if o.cpu_moe_layers else "")
        repack = o.memory.repack_cpu if o.memory else 0
        if repack > 0.1 * o.size:  # why a smaller file can need more RAM than a larger one
            tip += (f"\nIts RAM figure includes {repack / 2**30:.1f} GiB for a repacked copy of its Q4_0/Q4_K/IQ4_NL "
                    "weights, which llama.cpp keeps on x86 CPUs for faster matrix work (the chart's light blue).")
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            if col == QUALITY_COLUMN:
                item.setToolTip(quality_tip(o.quant, o.quality_loss))
            if col == FIT_COLUMN:
                background, foreground = (FIT_COLORS_DARK if dark_now() else FIT_COLORS)[o.verdict]
                item.setBackground(QColor(background))
                item.setForeground(QColor(foreground))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            if o.recommended:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.table.setItem(row, col, item)

    def _fit_table(self) -> None:
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        header = self.table.horizontalHeader().sizeHint().height()
        # a narrow window scrolls the columns sideways: keep room for that scrollbar below the last row
        bar = self.table.horizontalScrollBar()
        scrollbar = bar.sizeHint().height() if bar.maximum() > 0 else 0
        self.table.setFixedHeight(header + rows + scrollbar + 2 * self.table.frameWidth())

    def cells(self, col: int) -> list[str]:
        return [self.table.item(r, col).text() for r in range(self.table.rowCount())]
