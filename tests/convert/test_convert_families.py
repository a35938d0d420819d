"""Phi-3 (fused Q/K/V and gate/up, partial rotary, added tokens) and Gemma 2/3 (norms as 1 + weight,
scaled embeddings, soft-capping, GELU, Q/K norms, local and global RoPE bases), converted by the app:
llama.cpp tokenizes like the checkpoint's tokenizer and computes what the numpy reference computes."""

from __future__ import annotations

import pytest

from quantdesk.convert.checkpoint import SUPPORTED
from quantdesk.convert.convert import convert_checkpoint
from quantdesk.gguf.model_info import load_model_info
from tests.convert.test_convert_llama import TEXT, assert_logits_match, run_llama
from tests.support.checkpoint_factory import GEMMA2, GEMMA3, PHI3, family_reference_logits, write_spm_checkpoint


@pytest.mark.parametrize("config,added", [(PHI3, ["<|user|>", "<|assistant|>", "<|end|>"]), (GEMMA2, []),
                                          (GEMMA3, ["<start_of_turn>", "<end_of_turn>"])],
                         ids=["phi3", "gemma2", "gemma3"])
def test_converted_family_tokenizes_and_computes_like_the_checkpoint(tmp_path, config, added):
    import sentencepiece as spm

    folder = tmp_path / "ckpt"
    cfg, weights = write_spm_checkpoint(folder, config, added_tokens=added, pad_vocab_to=512)
    convert_checkpoint(folder, tmp_path / "m.gguf")
    info = load_model_info(tmp_path / "m.gguf")
    arch = SUPPORTED[cfg["architectures"][0]]  # llama.cpp's name (Gemma 3 text: "gemma3", not gemma3_text)
    assert info.architecture == arch and info.n_vocab == cfg["vocab_size"] == 512

    got = run_llama(tmp_path / "m.gguf")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert got["tokens"] == [1] + sp.encode(TEXT)
    assert_logits_match(got, family_reference_logits(cfg, weights, got["tokens"]))
    # the added tokens sit at their ids as control tokens, the rest of the padded vocabulary unused
    from gguf import GGUFReader, TokenType

    reader = GGUFReader(tmp_path / "m.gguf")
    field = reader.fields["tokenizer.ggml.tokens"]
    names = [bytes(field.parts[i]).decode() for i in field.data]
    kinds = [int(reader.fields["tokenizer.ggml.token_type"].parts[i][0])
             for i in reader.fields["tokenizer.ggml.token_type"].data]
    base = sp.vocab_size()
    assert names[base:base + len(added)] == added
    assert all(k == TokenType.CONTROL for k in kinds[base:base + len(added)])
    assert all(k == TokenType.UNUSED for k in kinds[base + len(added):]) and len(names) == 512
