"""The memory chart's figures are the planner's, split by device, against the planner's own limits."""

from __future__ import annotations

from quantdesk.gui.widgets.memory_chart import MemoryChart, ticks
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.fit import Budget
from quantdesk.planning.plan import plan_catalog_repo

REPO = "unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF"  # eight quants in the bundled catalog, F16 to Q2_K


def _chart(qtbot, preset: str, ctx: int = 8192) -> tuple[MemoryChart, object]:
    plan = plan_catalog_repo(REPO, load_hardware_spec(preset), ctx)
    chart = MemoryChart()
    qtbot.addWidget(chart)
    chart.set_plan(plan)
    chart.resize(700, chart.sizeHint().height())
    return chart, plan


def test_gpu_machine_splits_each_quant_into_vram_and_ram(qtbot):
    chart, plan = _chart(qtbot, "nvidia-8gb")
    budget = Budget.of(plan.hardware)
    vram, ram = chart.panels
    assert (vram.title, vram.limit, ram.title, ram.limit) == ("VRAM", budget.vram, "System RAM", budget.ram)
    for o, v, r in zip(plan.options, vram.rows, ram.rows):
        assert sum(b for _, b in v) == o.vram and sum(b for _, b in r) == o.ram
    rec = plan.options.index(plan.recommended)
    assert chart.describe(rec).startswith(f"{plan.recommended.quant} (recommended): VRAM: ")
    assert "KV cache" in chart.describe(rec) and "(fits)" in chart.describe(rec)
    f16 = chart.describe(0)
    assert f16.startswith("F16") and "over the limit" not in f16.split(";")[0]  # split to fit the card
    assert chart.accessibleDescription().count("(fits)") >= len(plan.options)
    assert chart.grab().width() == 700


def test_cpu_machine_has_one_panel_and_marks_what_does_not_fit(qtbot):
    chart, plan = _chart(qtbot, "cpu-8gb-laptop")
    (ram,) = chart.panels
    assert ram.title == "System RAM"
    over = [o.quant for o, r in zip(plan.options, ram.rows) if sum(b for _, b in r) > ram.limit]
    assert "F16" in over and all(o.verdict == "no_fit" for o in plan.options if o.quant in over)
    assert "F16: System RAM: " in chart.accessibleDescription() and "over the limit" in chart.describe(0)


def test_unified_memory_counts_gpu_buffers_in_ram(qtbot):
    chart, plan = _chart(qtbot, "apple-16gb")
    gpu, unified = chart.panels
    assert gpu.title == "GPU working set" and unified.title == "Unified memory"
    for o, r in zip(plan.options, unified.rows):
        assert sum(b for _, b in r) == o.vram + o.ram


def test_gridlines_fall_on_round_figures():
    assert [t / 2**30 for t in ticks(7.3 * 2**30)] == [0, 2, 4, 6]
    assert [t / 2**30 for t in ticks(16.3 * 2**30)] == [0, 5, 10, 15]
    assert [t / 2**20 for t in ticks(700 * 2**20)] == [0, 200, 400, 600]
