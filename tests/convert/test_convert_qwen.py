"""Tiny Qwen2 and Qwen3 checkpoints (byte-level BPE tokenizers), converted by the app: llama.cpp
tokenizes like the checkpoint's own tokenizer and computes what the numpy reference computes."""

from __future__ import annotations

import json

import pytest

from quantdesk.convert.bpe import PRE_TOKENIZERS, UnknownTokenizer, identify_pre_tokenizer
from quantdesk.convert.checkpoint import CheckpointError
from quantdesk.convert.convert import convert_checkpoint
from quantdesk.gguf.model_info import load_model_info
from tests.convert.test_convert_llama import assert_logits_match, run_llama
from tests.support.checkpoint_factory import QWEN_CHAT_TEMPLATE, reference_logits, write_qwen_checkpoint

# digits one by one, contractions, newlines, runs of spaces and non-Latin letters: where the split
# expressions of the families differ
TEXT = "I'll say 12345 isn't 6789,\n\n  naïve café über   Zoë's jumps!\tdone"


@pytest.mark.parametrize("model_type,tied,bf16", [("qwen2", True, False), ("qwen3", False, True)])
def test_converted_qwen_tokenizes_and_computes_like_the_checkpoint(tmp_path, model_type, tied, bf16):
    from tokenizers import Tokenizer

    folder = tmp_path / "ckpt"
    cfg, weights = write_qwen_checkpoint(folder, model_type=model_type, tie_word_embeddings=tied, bf16=bf16)
    out = tmp_path / "m.gguf"
    convert_checkpoint(folder, out)
    info = load_model_info(out)
    assert info.architecture == model_type and info.metadata["tokenizer.ggml.pre"] == "qwen2"
    assert info.metadata["tokenizer.ggml.model"] == "gpt2"
    if model_type == "qwen3":
        assert info.head_dim_k == 128

    got = run_llama(out, TEXT)
    expected = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(TEXT).ids
    assert got["tokens"] == expected  # no BOS: Qwen adds none
    assert got["eos"] == cfg["vocab_size"] - 1 and got["template"] == QWEN_CHAT_TEMPLATE

    assert_logits_match(got, reference_logits(cfg, weights, got["tokens"]))


def test_a_tokenizer_llama_cpp_would_split_differently_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    write_qwen_checkpoint(folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    assert identify_pre_tokenizer(data) == "qwen2"
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = PRE_TOKENIZERS["qwen2"].replace(r"\p{N}|", r"\p{N}{1,2}|")
    with pytest.raises(UnknownTokenizer):
        identify_pre_tokenizer(data)
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="pre-tokenizer expression matches none"):
        convert_checkpoint(folder, tmp_path / "m.gguf")
    assert not any(tmp_path.glob("m.gguf*"))
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = PRE_TOKENIZERS["llama-bpe"]
    assert identify_pre_tokenizer(data) == "llama-bpe"
    data["normalizer"] = {"type": "NFC"}  # as every published Qwen tokenizer has
    assert identify_pre_tokenizer(data) == "llama-bpe"
    data["normalizer"] = {"type": "Lowercase"}
    with pytest.raises(UnknownTokenizer, match="normalizes"):
        identify_pre_tokenizer(data)
