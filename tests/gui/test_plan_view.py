"""Discover's plan table in words a person can weigh: quality loss as "small" or "large", the KL
divergence behind it in the tooltip."""

from __future__ import annotations

from quantdesk.gguf.quants import quality_words
from quantdesk.gui.widgets.plan_view import QUALITY_COLUMN, PlanView
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.plan import plan_named


def test_quality_words_follow_the_scoreboard():
    assert [quality_words(k) for k in (0.0014, 0.0057, 0.0111, 0.032, 0.1038, 0.2364, 0.4573, None)] == [
        "near-lossless", "near-lossless", "very small", "small", "noticeable", "large", "large", "not measured"]


def test_the_table_says_the_loss_in_words_with_the_figure_in_the_tooltip(qtbot, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the bundled catalog
    plan = plan_named("unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", load_hardware_spec("nvidia-8gb"), offline=True)
    view = PlanView()
    qtbot.addWidget(view)
    view.show_plan(plan)
    words = dict(zip(view.cells(1), view.cells(QUALITY_COLUMN)))
    assert words["Q8_0"] == "near-lossless" and words["Q4_K_M"] == "small" and words["Q2_K"] == "large"
    row = view.cells(1).index("Q4_K_M")
    assert "0.0320" in view.table.item(row, QUALITY_COLUMN).toolTip()
