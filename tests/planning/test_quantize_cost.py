"""The planner offers quantizing locally when a full-precision file is there but nothing fits well."""

from __future__ import annotations

import pytest

from quantdesk.gguf.quants import quality
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.planning.plan import plan_local, plan_repo
from tests.support import gguf_factory as factory

OFFER_KEYS = {"type", "source_file", "size", "ram", "disk", "seconds", "download", "verdict", "tokens_per_s"}


@pytest.fixture(scope="module")
def llama8b_f16(tmp_path_factory):
    return factory.write_header_only(tmp_path_factory.mktemp("f16") / "L8B-F16.gguf", factory.LLAMA3_8B, "F16")


@pytest.mark.parametrize("preset,verdict", [("cpu-16gb-laptop", "cpu_only"), ("nvidia-8gb", "full_gpu")])
def test_f16_that_runs_badly_gets_an_offer(llama8b_f16, preset, verdict):
    hw = load_hardware_spec(preset)
    plan = plan_local(llama8b_f16, hw)
    f16 = plan.options[0]
    assert f16.verdict in ("no_fit", "partial", "cpu_only") and not (f16.tokens_per_s or 0) >= 5
    offer = plan.quantize_option
    assert offer is not None and offer.type not in ("F16", "BF16", "F32")
    assert offer.plan.verdict == verdict and offer.plan.tokens_per_s >= 5
    assert offer.size < f16.size / 2 and offer.disk >= offer.size and offer.download == 0
    assert 0 < offer.ram < f16.size / 4  # the quantizer streams tensors; it never holds the model
    assert offer.ram <= hw.ram_available and offer.seconds > 0
    data = plan.to_json()["quantize_option"]
    assert OFFER_KEYS <= set(data) and data["type"] == offer.type
    assert any(f"quantize locally to {offer.type}" in n for n in plan.notes)


def test_no_offer_when_the_full_precision_file_runs_well(small_model):
    plan = plan_local(small_model, load_hardware_spec("nvidia-24gb"))
    assert plan.options[0].verdict == "full_gpu"
    assert plan.quantize_option is None and plan.to_json()["quantize_option"] is None


def test_no_offer_without_a_full_precision_file(llama8b_q4):
    plan = plan_local(llama8b_q4, load_hardware_spec("cpu-4gb"))
    assert plan.recommended is None and plan.quantize_option is None


def test_repo_offer_counts_the_download_and_beats_the_small_quant(fake_hub, tmp_path):
    repo = "org/L8B-GGUF"
    factory.add_header_only_repo(fake_hub, repo, tmp_path, {
        "L8B-F16.gguf": (factory.LLAMA3_8B, "F16"), "L8B-Q2_K.gguf": (factory.LLAMA3_8B, "Q2_K")})
    plan = plan_repo(repo, load_hardware_spec("nvidia-12gb"))
    assert plan.recommended.quant == "Q2_K" and plan.recommended.verdict == "full_gpu"
    offer = plan.quantize_option
    f16 = next(o for o in plan.options if o.quant == "F16")
    assert offer is not None and offer.plan.verdict == "full_gpu"
    assert quality(offer.type).kld < quality("Q2_K").kld  # same fit, better quality
    assert offer.download == f16.size and offer.disk > f16.size
    assert offer.source_file == "L8B-F16.gguf" and repo in offer.command
