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


@pytest.mark.parametrize("preset", ["nvidia-8gb", "nvidia-12gb", "nvidia-16gb", "nvidia-24gb"])
def test_the_search_finds_the_fastest_placement_a_brute_force_finds(a3b, preset):
    hw = load_hardware_spec(preset)
    budget = Budget.of(hw)
    for quant, info in a3b.items():
        s = settings_for(info, 4096, "f16", repack=False, n_threads=hw.cpu.cores)
        best = None
        for k in range(0, 50, 2):  # every other split, every expert count: 1,225 placements
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
