import pytest

from quantdesk.gguf.model_info import load_model_info
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.fit import PlanOption, recommend
from quantdesk.planning.memory_model import (
    RunSettings,
    compute_buffer,
    gpu_blocks,
    kv_cache_per_layer,
    placement_memory,
)
from quantdesk.planning.plan import plan_local
from tests.support import gguf_factory as factory

GiB, MiB = 2**30, 2**20


@pytest.fixture(scope="module")
def llama8b(tmp_path_factory):
    path = factory.write_header_only(tmp_path_factory.mktemp("h") / "l8b-Q4_K_M.gguf", factory.LLAMA3_8B, "Q4_K_M")
    return load_model_info(path)


@pytest.mark.parametrize("preset,verdict", [
    ("nvidia-12gb", "full_gpu"), ("nvidia-6gb", "partial"), ("cpu-16gb-laptop", "cpu_only"), ("cpu-4gb", "no_fit"),
])
def test_8b_q4_k_m_at_8k_context(llama8b_q4, preset, verdict):
    option = plan_local(llama8b_q4, load_hardware_spec(preset), ctx=8192).options[0]
    assert option.verdict == verdict
    if verdict == "partial":
        assert 0 < option.gpu_layers < option.n_layers + 1
        assert option.vram <= load_hardware_spec(preset).gpus[0].vram_free
    if verdict == "full_gpu":
        assert option.gpu_layers == 33 and option.load_args["n_gpu_layers"] == 33
        assert option.max_ctx_full_gpu >= 8192


def test_kv_cache_is_exact(llama8b):
    # 32 layers x 8 KV heads x 128 x (K + V) x 2 bytes x 8192 cells = 1 GiB
    assert sum(kv_cache_per_layer(llama8b, RunSettings(8192))) == GiB
    # q8_0 costs 34 bytes per 32 elements
    assert sum(kv_cache_per_layer(llama8b, RunSettings(8192, kv_type="q8_0"))) == GiB * 34 // 64
    # the context is padded up to a multiple of 256 cells
    assert sum(kv_cache_per_layer(llama8b, RunSettings(1000))) == sum(kv_cache_per_layer(llama8b, RunSettings(1024)))


def test_layer_placement_follows_llama_cpp(llama8b):
    assert gpu_blocks(32, 0) == (32, False)
    assert gpu_blocks(32, 1) == (32, True)  # k = 1 offloads only the output head
    assert gpu_blocks(32, 33) == (0, True)
    s = RunSettings(4096)
    cpu = placement_memory(llama8b, s, 0, "nvidia")
    full = placement_memory(llama8b, s, 33, "nvidia")
    assert cpu.weights_gpu == 0 and cpu.kv_gpu == 0
    embd = llama8b.tensor_bytes("token_embd.weight")
    assert full.weights_gpu == llama8b.weight_bytes - embd  # token_embd stays on the CPU
    assert full.kv_cpu == 0
    previous = -1
    for k in range(34):  # VRAM grows with every offloaded layer
        vram = placement_memory(llama8b, s, k, "nvidia").vram
        assert vram > previous
        previous = vram


def test_flash_attention_shrinks_the_compute_buffer_at_long_context(llama8b):
    on = compute_buffer(llama8b, RunSettings(32768, flash_attn=True))
    off = compute_buffer(llama8b, RunSettings(32768, flash_attn=False))
    assert off > 4 * on
    assert off >= 4 * 512 * 32768 * 32  # the f32 attention scores of all heads


def test_more_vram_never_gives_a_worse_verdict(llama8b_q4):
    order = {"no_fit": 0, "cpu_only": 1, "partial": 2, "full_gpu": 3}
    verdicts = [plan_local(llama8b_q4, load_hardware_spec(p), ctx=8192).options[0].verdict
                for p in ("nvidia-4gb", "nvidia-6gb", "nvidia-8gb", "nvidia-12gb", "nvidia-24gb")]
    ranks = [order[v] for v in verdicts]
    assert ranks == sorted(ranks)


def test_longer_context_needs_more_memory(llama8b_q4):
    hw = load_hardware_spec("nvidia-24gb")
    a, b = (plan_local(llama8b_q4, hw, ctx=c).options[0] for c in (4096, 16384))
    assert b.vram > a.vram and b.memory.kv_cache == 4 * a.memory.kv_cache


def test_max_context_fully_on_gpu_is_the_boundary(llama8b_q4):
    hw = load_hardware_spec("nvidia-8gb")
    option = plan_local(llama8b_q4, hw, ctx=2048).options[0]
    limit = option.max_ctx_full_gpu
    assert limit and limit % 256 == 0
    if limit < llama8b_q4_ctx_train():
        beyond = plan_local(llama8b_q4, hw, ctx=limit + 256).options[0]
        assert beyond.verdict != "full_gpu"
    assert plan_local(llama8b_q4, hw, ctx=limit).options[0].verdict == "full_gpu"


def llama8b_q4_ctx_train():
    return factory.LLAMA3_8B.n_ctx_train


def test_recommendation_prefers_quality_on_gpu_then_speed(tmp_path):
    hw = load_hardware_spec("nvidia-8gb")
    options = []
    for quant in ("Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M"):
        path = factory.write_header_only(tmp_path / f"m-{quant}.gguf", factory.LLAMA3_8B, quant)
        options.append(plan_local(path, hw, ctx=4096).options[0])
    pick = recommend(options, 4096)
    full = [o for o in options if o.verdict == "full_gpu"]
    assert full, [o.verdict for o in options]
    # the best-quality quant among those that fit fully (Q8_0 does not fit 8 GB)
    assert pick.quant == "Q6_K" if any(o.quant == "Q6_K" for o in full) else pick.quant == "Q4_K_M"
    assert sum(o.recommended for o in options) == 1
    assert "fully on the GPU" in pick.reason


def test_cpu_only_recommendation_uses_usable_speed(tmp_path):
    hw = load_hardware_spec("cpu-16gb-laptop")
    options = [plan_local(factory.write_header_only(tmp_path / f"x-{q}.gguf", factory.LLAMA3_8B, q), hw,
                          ctx=4096).options[0] for q in ("Q8_0", "Q4_K_M")]
    pick = recommend(options, 4096)
    assert pick is not None and pick.verdict == "cpu_only"
    assert all(o.verdict in ("cpu_only", "no_fit") for o in options)


def test_load_args_are_llama_kwargs(llama8b_q4):
    import inspect

    import llama_cpp

    option: PlanOption = plan_local(llama8b_q4, load_hardware_spec("nvidia-12gb"), ctx=4096, kv_type="q8_0").options[0]
    accepted = set(inspect.signature(llama_cpp.Llama.__init__).parameters)
    assert set(option.load_args) <= accepted  # a dense model's: exactly Llama's (MoE adds cpu_moe_layers)
    assert option.load_args["type_k"] == option.load_args["type_v"] == 8
    assert option.load_args["flash_attn"] is True  # a quantized V cache needs flash attention


def test_context_beyond_training_is_noted(llama8b_q4):
    result = plan_local(llama8b_q4, load_hardware_spec("nvidia-24gb"), ctx=32768)
    assert any("trained for" in n for n in result.notes)
    assert not plan_local(llama8b_q4, load_hardware_spec("nvidia-24gb"), ctx=8192).notes


def two_core_cpu(tmp_path):
    """A CPU-only machine with 2 cores and 24 GB, as a hardware file (like this development machine)."""
    import json

    from quantdesk.hardware.machine import load_hardware_spec

    spec = {"gpus": [], "ram_total": 24 * 2**30, "ram_available": 22 * 2**30, "swap_total": 0,
            "cpu": {"name": "2-core test CPU", "cores": 2, "threads": 2, "features": ["AVX", "AVX2", "FMA", "F16C"]},
            "disk_free": 100 * 2**30, "gpu_offload_supported": False}
    path = tmp_path / "two-core-cpu.json"
    path.write_text(json.dumps(spec))
    return load_hardware_spec(str(path))


def test_cpu_only_advice_ranks_quants_by_their_measured_speed_and_says_why(tmp_path, monkeypatch):
    """Issue 16.6: on a 2-core CPU every 8B quant showed ~2.0 tok/s and Q8_0 was "the fastest option".
    Each type now multiplies at its own measured rate, nothing usable means the best quality near the
    fastest speed (not a crushed 2-bit file, not the biggest download), and the repack copy is explained."""
    from quantdesk.planning.plan import plan_named

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    plan = plan_named("unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", two_core_cpu(tmp_path), offline=True)
    speed = {o.quant: o.tokens_per_s for o in plan.options if o.tokens_per_s}
    assert speed["Q4_K_M"] > speed["Q8_0"] and speed["Q2_K"] > speed["Q8_0"] > speed["F16"]
    assert len({round(v, 1) for v in speed.values()}) >= 4  # not one figure for every quant
    rec = plan.recommended
    assert rec.quant not in ("Q8_0", "F16", "Q2_K") and rec.quality_loss is not None and rec.quality_loss < 0.05
    assert "within 15% of the fastest" in rec.reason and "download" in rec.reason
    assert any("repacked copy" in n and "Q4_K_M" in n for n in plan.notes)


def test_no_quantize_offer_slower_than_the_near_fastest_pick_on_a_slow_cpu(tmp_path, monkeypatch):
    """With nothing usable, the pick is the best quality near the fastest speed; a local quantize to a
    better-quality but slower preset (Q5_K_S at ~1.6 tok/s here) is no better fit and is not offered."""
    from quantdesk.planning.plan import plan_named

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    plan = plan_named("unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", two_core_cpu(tmp_path), offline=True)
    top = max(o.tokens_per_s or 0 for o in plan.options)
    offer = plan.quantize_option
    assert offer is None or (offer.plan.tokens_per_s or 0) >= 0.85 * top
