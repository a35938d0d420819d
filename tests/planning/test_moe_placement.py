"""Mixture-of-experts placement: experts of the first N blocks in RAM, everything else on the GPU.

Header-only files of Qwen3-30B-A3B's real shape, planned for the preset cards; the search is
checked against a brute force over every (GPU layers, blocks with experts in RAM) pair.
"""

from __future__ import annotations

import re

import pytest

from quantdesk.chat.expert_override import EXPERT_SUFFIX, expert_pattern
from quantdesk.gguf.model_info import EXPERT_TENSOR_RE, is_expert_tensor, load_model_info
from quantdesk.hardware.llama_log import load_report_from_log
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.fit import (
    Budget, best_gpu_layers, best_placement, normalized_cpu_moe, plan_model, settings_for, tokens_per_second)
from quantdesk.planning.memory_model import placement_memory
from quantdesk.planning.plan import plan_catalog_repo
from tests.support import gguf_factory as factory

GiB = 2**30


@pytest.fixture(scope="module")
def a3b(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moe")
    return {q: load_model_info(factory.write_header_only(folder / f"a3b-{q}.gguf", factory.QWEN3_30B_A3B, q))
            for q in ("Q4_K_M", "Q8_0", "Q2_K")}


def test_the_header_says_which_tensors_are_experts(a3b):
    info = a3b["Q4_K_M"]
    assert info.is_moe and info.n_expert == 128 and info.n_expert_used == 8 and info.n_ff_exp == 768
    assert info.moe_layers() == list(range(48))
    assert info.active_expert_share == 8 / 128
    experts = [t for t in info.tensors if is_expert_tensor(t.name)]
    assert len(experts) == 3 * 48 and all(len(t.shape) == 3 for t in experts)
    # the router and (elsewhere) shared experts are not routed experts
    assert not is_expert_tensor("blk.0.ffn_gate_inp.weight") and not is_expert_tensor("blk.0.ffn_up_shexp.weight")
    assert is_expert_tensor("blk.3.ffn_gate_up_exps.weight") and is_expert_tensor("blk.3.ffn_down_chexps.weight")


def test_the_override_pattern_is_llama_cpps_and_names_exactly_the_first_n_blocks():
    assert EXPERT_SUFFIX == EXPERT_TENSOR_RE.pattern
    pattern = re.compile(expert_pattern(3))
    assert pattern.pattern == r"blk\.(0|1|2)\.ffn_(up|down|gate|gate_up)_(ch|)exps"
    hits = {f"blk.{i}.ffn_{kind}_exps.weight" for i in range(12) for kind in ("up", "down", "gate")
            if pattern.search(f"blk.{i}.ffn_{kind}_exps.weight")}
    assert hits == {f"blk.{i}.ffn_{kind}_exps.weight" for i in range(3) for kind in ("up", "down", "gate")}
    for name in ("blk.10.ffn_up_exps.weight", "blk.1.ffn_gate_inp.weight", "blk.0.attn_q.weight",
                 "blk.2.ffn_up_shexp.weight"):
        assert not pattern.search(name)
    with pytest.raises(ValueError):
        expert_pattern(0)


def test_experts_in_ram_move_weight_from_vram_to_ram_block_by_block(a3b):
    info = a3b["Q4_K_M"]
    s = settings_for(info, 4096, "f16", repack=False)
    full = info.n_layer + 1
    previous = None
    for n in range(0, 49, 6):
        m = placement_memory(info, s, full, "cuda", None, n)
        expert_bytes = sum(t.n_bytes for t in info.tensors if is_expert_tensor(t.name) and int(t.name.split(".")[1]) < n)
        assert m.experts_cpu == expert_bytes
        assert m.kv_gpu == placement_memory(info, s, full, "cuda").kv_gpu  # the whole KV cache stays on the GPU
        if previous is not None:
            assert m.vram < previous.vram and m.ram > previous.ram
            # what leaves the GPU is exactly those blocks' experts (the buffers beside them may grow a little)
            assert m.weights_gpu == previous.weights_gpu - (m.experts_cpu - previous.experts_cpu)
        previous = m


def test_a_12_gb_card_runs_every_layer_on_the_gpu_with_some_experts_in_ram(a3b):
    hw = load_hardware_spec("nvidia-12gb")
    option = plan_model(a3b["Q4_K_M"], hw, 4096, "f16")
    budget = Budget.of(hw)
    assert option.verdict == "partial" and option.all_layers_on_gpu
    assert 0 < option.cpu_moe_layers < 48
    assert option.vram <= budget.vram and option.ram <= budget.ram
    assert option.summary() == f"all layers on GPU, experts of {option.cpu_moe_layers} of 48 layers in RAM"
    data = option.to_json()
    assert data["cpu_moe_layers"] == data["load_args"]["cpu_moe_layers"] == option.cpu_moe_layers
    assert data["load_args"]["n_gpu_layers"] == 49
    assert data["memory"]["experts_cpu"] > 10 * GiB // 2
    # one block fewer in RAM would not fit the card
    s = settings_for(a3b["Q4_K_M"], 4096, "f16", repack=False, n_threads=hw.cpu.cores)
    tighter = placement_memory(a3b["Q4_K_M"], s, 49, budget.gpu_runtime, budget.process_ram, option.cpu_moe_layers - 1)
    assert tighter.vram > budget.vram


def test_the_hybrid_beats_the_best_plain_layer_split(a3b):
    for preset in ("nvidia-8gb", "nvidia-12gb", "nvidia-16gb"):
        hw = load_hardware_spec(preset)
        budget = Budget.of(hw)
        for quant in ("Q4_K_M", "Q2_K"):
            info = a3b[quant]
            s = settings_for(info, 4096, "f16", repack=False, n_threads=hw.cpu.cores)
            chosen = best_placement(info, s, budget)
            plain = best_gpu_layers(info, s, budget)
            if plain is None:
                assert chosen is None or chosen.cpu_moe_layers > 0
                continue
            k, m = plain
            assert chosen.tokens_per_s >= tokens_per_second(info, m, budget, k, 0), (preset, quant)
            if quant == "Q4_K_M":  # the attention and KV cache a plain split sends to the CPU cost more
                assert chosen.cpu_moe_layers > 0 and chosen.gpu_layers == 49, preset
                assert chosen.tokens_per_s > 1.1 * tokens_per_second(info, m, budget, k, 0), preset


UNIFIED_TIGHT = Budget(vram=16 * GiB, ram=int(19.2 * GiB), vendor="apple", unified=True, gpu_bandwidth=400e9,
                       ram_bandwidth=400e9, cpu_cores=8, backend="metal")


@pytest.mark.parametrize("preset", ["nvidia-8gb", "nvidia-12gb", "nvidia-16gb", "nvidia-24gb", "unified-tight"])
def test_the_search_finds_the_fastest_placement_a_brute_force_finds(a3b, preset):
    if preset == "unified-tight":  # one pool: GPU buffers and RAM together may not exceed it
        budget, cores = UNIFIED_TIGHT, 8
    else:
        hw = load_hardware_spec(preset)
        budget, cores = Budget.of(hw), hw.cpu.cores
    for quant, info in a3b.items():
        s = settings_for(info, 4096, "f16", repack=False, n_threads=cores)
        best = None
        for k in range(0, 50):  # every split, every expert count: 2,401 placements
            for n in range(0, 49):
                m = placement_memory(info, s, k, budget.gpu_runtime, budget.process_ram, n)
                if budget.fits(m):
                    speed = tokens_per_second(info, m, budget, k, normalized_cpu_moe(info, k, n))
                    best = max(best or 0.0, speed)
        found = best_placement(info, s, budget)
        if best is None:
            assert found is None, (preset, quant)
            continue
        assert found is not None, (preset, quant)
        assert budget.fits(found.memory)
        assert found.tokens_per_s >= best * 0.999, (preset, quant, found, best)


def test_a_card_that_holds_it_all_gets_full_gpu_and_dense_models_never_split_experts(a3b, llama8b_q4):
    option = plan_model(a3b["Q2_K"], load_hardware_spec("nvidia-24gb"), 4096, "f16")
    assert option.verdict == "full_gpu" and option.cpu_moe_layers == 0 and option.summary() == "full GPU"
    for preset in ("nvidia-6gb", "nvidia-8gb", "cpu-16gb-laptop"):
        dense = plan_model(load_model_info(llama8b_q4), load_hardware_spec(preset), 8192, "f16")
        assert dense.cpu_moe_layers == 0 and "cpu_moe_layers" not in dense.load_args  # Llama kwargs only
        assert dense.memory.experts_cpu == 0
    cpu = plan_model(a3b["Q4_K_M"], load_hardware_spec("cpu-16gb-laptop"), 4096, "f16")
    assert cpu.cpu_moe_layers == 0  # without a GPU everything is in RAM anyway


def test_an_n_that_changes_nothing_is_reported_as_none(a3b):
    info = a3b["Q4_K_M"]
    assert normalized_cpu_moe(info, 49, 0) == 0
    assert normalized_cpu_moe(info, 49, 60) == 48
    assert normalized_cpu_moe(info, 49, 7) == 7
    # with 30 layers on the GPU, blocks 0..18 run on the CPU: their experts are in RAM anyway
    assert normalized_cpu_moe(info, 30, 19) == 0
    assert normalized_cpu_moe(info, 30, 20) == 20


def test_the_catalog_plans_qwen3_30b_a3b_offline_with_experts_in_ram():
    plan = plan_catalog_repo("bartowski/Qwen_Qwen3-30B-A3B-GGUF", load_hardware_spec("nvidia-12gb"),
                             suggest_quantize=False)
    [option] = plan.options
    assert option.model.is_moe and option.model.n_ff_exp == 768
    assert option.verdict == "partial" and option.all_layers_on_gpu and option.cpu_moe_layers > 0
    assert option.recommended and "experts of" in option.reason


def test_the_load_log_names_the_tensors_an_override_moved():
    lines = ["llama_model_loader: tensor overrides to CPU are used with mmap enabled - consider using --load-mode none",
             "tensor blk.0.ffn_gate_exps.weight (1 MiB f16) buffer type overridden to CPU",
             "tensor blk.1.ffn_up_exps.weight (1 MiB f16) buffer type overridden to CPU",
             "load_tensors: offloaded 5/5 layers to GPU",
             "load_tensors:   CPU_Mapped model buffer size =     7.00 MiB"]
    report = load_report_from_log(lines)
    assert report["overridden"] == {"blk.0.ffn_gate_exps.weight": "CPU", "blk.1.ffn_up_exps.weight": "CPU"}
    assert report["gpu_layers"] == 5 and report["buffers"]["CPU_Mapped model"] == 7 * 2**20


def test_forced_expert_counts_and_splits_still_fit_the_machine(a3b, tmp_path):
    from quantdesk.base.errors import QuantDeskError
    from quantdesk.chat.engine import plan_load

    path = tmp_path / "a3b-Q4_K_M.gguf"
    factory.write_header_only(path, factory.QWEN3_30B_A3B, "Q4_K_M")
    hw = load_hardware_spec("nvidia-12gb")
    budget = Budget.of(hw)
    info = load_model_info(path)
    s = settings_for(info, 4096, "f16", repack=False, n_threads=hw.cpu.cores)
    # too few experts in RAM for every layer on the GPU: fewer layers go there instead
    few = plan_load(path, hw, cpu_moe=5)
    k = few.settings.n_gpu_layers
    assert few.settings.cpu_moe_layers == 5 and 0 < k < 49
    assert placement_memory(info, s, k, budget.gpu_runtime, budget.process_ram, 5).vram <= budget.vram
    assert any(f"{k} of 49 layers go on the GPU" in n and "--cpu-moe 5 changes nothing" in n for n in few.notes)
    more = plan_load(path, hw, cpu_moe=30)  # enough experts in RAM: every layer on the GPU
    assert more.settings.n_gpu_layers == 49 and more.settings.cpu_moe_layers == 30
    assert any("every layer runs on the GPU; the routed experts of blocks 0–29 stay in RAM" in n for n in more.notes)
    # a split forced by hand gets the fewest experts in RAM that make it fit
    split = plan_load(path, hw, gpu_layers=30)
    assert split.settings.n_gpu_layers == 30 and split.settings.cpu_moe_layers > 19
    assert placement_memory(info, s, 30, budget.gpu_runtime, budget.process_ram,
                            split.settings.cpu_moe_layers).vram <= budget.vram
    none = plan_load(path, hw, cpu_moe=0, gpu_layers=20)
    assert none.settings.cpu_moe_layers == 0
    with pytest.raises(QuantDeskError, match="does not fit"):
        plan_load(path, load_hardware_spec("nvidia-8gb"), cpu_moe=10)


def test_expert_tensors_without_an_expert_count_are_not_planned_as_moe(tmp_path):
    import dataclasses

    info = load_model_info(factory.write_header_only(tmp_path / "m.gguf", factory.QWEN3_30B_A3B, "Q2_K"))
    broken = dataclasses.replace(info, n_expert=0, n_expert_used=0)
    assert not broken.is_moe and broken.moe_layers() == []
    unused = dataclasses.replace(info, n_expert_used=0)
    assert not unused.is_moe and unused.moe_layers() == []


def test_a_split_model_keeps_each_parts_mapped_span_in_ram(tmp_path):
    parts = factory.write_split_model(tmp_path, "moe", factory.MOE_SMALL, parts=2)
    info = load_model_info(parts[0])
    assert len(info.files) == 2 and set(info.tensor_files) == {0, 1}
    s = settings_for(info, 1024, "f16", repack=False)
    m = placement_memory(info, s, info.n_layer + 1, "vulkan", None, info.n_layer)
    cpu_tensors = sum(t.n_bytes for t in info.tensors if is_expert_tensor(t.name) or t.name == "token_embd.weight")
    # the attention weights between the experts stay mapped in each part, as llama.cpp leaves them
    assert m.weights_cpu > cpu_tensors
    assert m.weights_cpu <= sum(p.stat().st_size for p in parts)


def test_picks_count_a_hybrid_as_the_fast_kind_of_fit_and_moe_by_its_dense_equivalent(a3b):
    from quantdesk.planning.picks import capability_params, fit_tier

    option = plan_model(a3b["Q4_K_M"], load_hardware_spec("nvidia-12gb"), 4096, "f16")
    assert option.cpu_moe_layers and fit_tier(option) == 0
    # Qwen3-30B-A3B: 30.5B total, 3.3B active -> about a 10B dense model
    assert 9e9 < capability_params(option, 30_500_000_000) < 11e9
