"""Which model to pick for a machine: usable speed, full GPU, the most capable, then the least loss."""

from __future__ import annotations

import pytest

from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.picks import HEAVY_LOSS_KLD, machine_picks, model_key, rank_search_rows, runs_well


def test_an_8gb_gpu_gets_8b_models_fully_on_the_gpu_not_a_crushed_14b_or_a_tiny_one():
    from quantdesk.catalog.offline import load_catalog
    from quantdesk.planning.picks import capability_params, fit_tier

    picks = machine_picks(load_hardware_spec("nvidia-8gb"), ctx=4096, limit=3)
    assert len(picks) == 3
    # fully on the GPU — or, for a mixture of experts, every layer on it with some experts in RAM
    assert all(fit_tier(p.option) == 0 for p in picks)
    assert all(p.option.verdict == "full_gpu" or p.option.cpu_moe_layers for p in picks)
    sizes = [capability_params(p.option, load_catalog().find(p.repo).params) for p in picks]
    assert all(7e9 <= n <= 10e9 for n in sizes), [(p.repo, n) for p, n in zip(picks, sizes)]
    assert all(p.option.quality_loss is None or p.option.quality_loss <= HEAVY_LOSS_KLD for p in picks)


def test_one_pick_per_model_whoever_quantized_it():
    picks = machine_picks(load_hardware_spec("nvidia-24gb"), limit=8)
    keys = [p.base_model for p in picks]
    assert len(keys) == len(set(keys)) == 8
    assert picks[0].option.model.n_params > 20e9  # 24 GB holds a ~30B model at Q4


def test_a_cpu_machine_gets_models_that_run_at_a_usable_speed():
    hw = load_hardware_spec("cpu-8gb-laptop")
    picks = machine_picks(hw, limit=3)
    assert picks and all(p.option.verdict == "cpu_only" and runs_well(p.option) for p in picks)
    assert "on the CPU" in picks[0].summary() and "tokens/s" in picks[0].summary()
    # the biggest that still runs well comes first
    assert picks[0].option.model.n_params >= max(p.option.model.n_params for p in picks)


def test_a_machine_too_small_for_anything_gets_no_picks():
    from dataclasses import replace

    tiny = replace(load_hardware_spec("cpu-4gb"), ram_total=256 * 2**20, ram_available=128 * 2**20)
    assert machine_picks(tiny) == []


@pytest.mark.parametrize("repo, base, key", [
    ("bartowski/Llama-3.2-3B-Instruct-GGUF", None, "llama-3.2-3b-instruct"),
    ("hugging-quants/Llama-3.2-1B-Instruct-Q4_K_M-GGUF", None, "llama-3.2-1b-instruct"),
    ("someone/Model-IQ4_XS-GGUF", None, "model"),
    ("Qwen/Qwen2.5-7B-Instruct-GGUF", "Qwen/Qwen2.5-7B-Instruct", "qwen/qwen2.5-7b-instruct"),
])
def test_model_key(repo, base, key):
    assert model_key(repo, base) == key


def test_search_rows_rank_runnable_models_first_and_keep_errors():
    rows = [{"repo": r, "downloads": 0, "source": "catalog"} for r in
            ("bartowski/Qwen2.5-0.5B-Instruct-GGUF", "nobody/not-in-the-catalog", "bartowski/Qwen2.5-14B-Instruct-GGUF")]
    rank_search_rows(rows, load_hardware_spec("nvidia-12gb"), ctx=4096)
    assert [r["repo"] for r in rows] == ["bartowski/Qwen2.5-14B-Instruct-GGUF", "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
                                         "nobody/not-in-the-catalog"]
    assert rows[0]["best"]["runs_well"] is True and rows[0]["best"]["params"] > 14e9
    assert rows[2]["best"] is None and "not in the offline catalog" in rows[2]["error"]


def test_gemma_headers_tie_their_embeddings_so_parameters_match_the_published_count():
    from quantdesk.catalog.offline import load_catalog, model_info_for

    gemmas = [m for m in load_catalog().models if str(m.arch.get("architecture", "")).startswith("gemma")]
    assert gemmas
    for m in gemmas:
        n = model_info_for(m, m.files[0]).n_params
        assert n < m.params * 1.03, (m.repo, n, m.params)  # a second output matrix had added up to 30%
        if m.arch["architecture"] == "gemma2":  # text-only (Gemma 3's published count includes its vision tower)
            assert abs(n / m.params - 1) < 0.03, (m.repo, n, m.params)


def test_a_quant_without_a_cited_quality_figure_is_not_ranked_as_crushed():
    from quantdesk.planning.picks import estimated_loss
    from quantdesk.planning.plan import plan_catalog_repo

    hw = load_hardware_spec("nvidia-24gb")
    rec = plan_catalog_repo("ggml-org/gemma-3-27b-it-qat-GGUF", hw).recommended
    assert rec.quant == "Q4_0" and rec.quality_loss is None
    assert 0 < estimated_loss(rec) < HEAVY_LOSS_KLD
    rows = [{"repo": r, "downloads": 0, "source": "catalog"} for r in
            ("ggml-org/gemma-3-27b-it-qat-GGUF", "bartowski/Qwen2.5-0.5B-Instruct-GGUF")]
    rank_search_rows(rows, hw)
    assert rows[0]["repo"] == "ggml-org/gemma-3-27b-it-qat-GGUF"
