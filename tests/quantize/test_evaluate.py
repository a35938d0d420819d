"""--eval's quality report: KL divergence, top-1 agreement and perplexity vs the source."""

from __future__ import annotations

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.quantize.evaluate import check_eval_fits, eval_ram_needed, evaluate
from quantdesk.quantize.quantizer import QuantizeResult, quantize


def quantized(source, preset, tmp_path):
    *_, result = quantize(source, preset, tmp_path / f"tiny-{preset}.gguf")
    assert isinstance(result, QuantizeResult)
    return result.output


def test_a_model_against_itself_has_no_divergence(tiny_model):
    r = evaluate(tiny_model, tiny_model, n_tokens=64)
    assert r.tokens == 64
    assert r.kl_mean < 1e-9 and r.kl_max < 1e-9
    assert r.top1_agreement == 1.0
    assert r.ppl_reference == pytest.approx(r.ppl_quantized)


def test_fewer_bits_diverge_more(tiny_model, tmp_path):
    q8 = evaluate(tiny_model, quantized(tiny_model, "Q8_0", tmp_path), n_tokens=128)
    q2 = evaluate(tiny_model, quantized(tiny_model, "Q2_K", tmp_path), n_tokens=128)
    for r in (q8, q2):
        assert 0 <= r.kl_mean <= r.kl_p99 <= r.kl_max
        assert 0 <= r.top1_agreement <= 1
        assert r.ppl_reference > 0 and r.ppl_quantized > 0
    assert q8.kl_mean < q2.kl_mean
    assert q8.top1_agreement > q2.top1_agreement
    assert abs(q8.ppl_quantized - q8.ppl_reference) < abs(q2.ppl_quantized - q2.ppl_reference)


def test_a_model_llama_cpp_cannot_load_is_an_error(tiny_model, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(QuantDeskError, match="evaluation of broken.gguf failed"):
        evaluate(tiny_model, broken, n_tokens=16)


def test_eval_refuses_when_the_source_does_not_fit(tiny_model):
    need = eval_ram_needed(tiny_model, 256)
    assert need > tiny_model.stat().st_size
    check_eval_fits(tiny_model, need, 256)
    with pytest.raises(QuantDeskError, match="evaluation loads the full-precision source"):
        check_eval_fits(tiny_model, need - 1, 256)
