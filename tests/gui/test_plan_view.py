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


def test_on_a_few_core_cpu_discover_shows_faster_small_quants_and_explains_the_repack(qtbot, tmp_path, monkeypatch):
    """Issue 16.6 in the window: every 8B quant showed ~2.0 tok/s and Q8_0 was 'the fastest option'."""
    from quantdesk.gui.app import MainWindow
    from tests.planning.test_fit import two_core_cpu

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    window = MainWindow(two_core_cpu(tmp_path))
    qtbot.addWidget(window)
    page = window.discover_page
    page.open_ref("unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF")
    qtbot.waitUntil(lambda: page.plan is not None, timeout=30_000)
    speeds = dict(zip(page.view.cells(1), page.view.cells(4)))
    tok_s = {q: float(t.strip("~ tok/s")) for q, t in speeds.items() if "tok/s" in t}
    assert tok_s["Q4_K_M"] > tok_s["Q8_0"] and len(set(tok_s.values())) >= 4
    rec = page.plan.recommended
    assert rec.quant not in ("Q8_0", "Q2_K", "F16") and "fastest" in rec.reason and "download" in rec.reason
    row = page.view.cells(1).index("Q4_K_M")
    assert "repacked copy" in page.view.table.item(row, 2).toolTip()
    assert "repacked copy" in page.view.notes.text()


def test_a_moe_model_on_a_small_card_shows_every_layer_on_the_gpu_and_experts_in_ram(qtbot):
    from quantdesk.gui.widgets.plan_view import FIT_COLUMN
    from quantdesk.planning.plan import plan_catalog_repo

    plan = plan_catalog_repo("bartowski/Qwen_Qwen3-30B-A3B-GGUF", load_hardware_spec("nvidia-12gb"),
                             suggest_quantize=False)
    [option] = plan.options
    view = PlanView()
    qtbot.addWidget(view)
    view.resize(540, 420)
    view.show_plan(plan)
    view.show()
    qtbot.waitExposed(view)
    n = option.cpu_moe_layers
    assert view.cells(FIT_COLUMN) == [f"full GPU but experts {n}/48 in RAM"]
    assert f"routed experts of the first {n} of 48 layers stay in RAM" in view.table.item(0, FIT_COLUMN).toolTip()
    assert f"experts of {n} of 48 layers in RAM" in view.notes.text()
    # the chart shows the experts as their own part of the RAM bar, the legend names them
    vram, ram = view.chart.panels
    assert dict(ram.rows[0])["experts"] == option.memory.experts_cpu > 0
    assert "Experts kept in RAM" in view.chart.describe(0)
    # a narrow pane scrolls the columns sideways without hiding the row under the scrollbar
    table = view.table
    if table.horizontalScrollBar().isVisible():
        assert table.height() >= (table.horizontalHeader().height() + table.rowHeight(0)
                                  + table.horizontalScrollBar().height())
