"""A tiny llama checkpoint, converted by the app: llama.cpp tokenizes like the checkpoint's own
tokenizer and computes what a numpy reference forward pass of the checkpoint computes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from quantdesk.convert.checkpoint import CheckpointError
from quantdesk.convert.convert import convert_checkpoint
from quantdesk.gguf.model_info import load_model_info
from tests.support.checkpoint_factory import CHAT_TEMPLATE, reference_logits, write_llama_checkpoint

TEXT = "The quick brown fox jumps over 12345 lazy dogs, café über naïve!"
# llama.cpp in a child (a portable build registers its backends there), as the app runs it
CHILD = r"""
import json, sys
from quantdesk.hardware.ggml_devices import load_backends
load_backends()
import llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=256, logits_all=True, verbose=False, n_threads=2, n_gpu_layers=0)
text = sys.argv[2]
tokens = llm.tokenize(text.encode(), add_bos=True)
llm.eval(tokens)
print(json.dumps({"tokens": tokens, "logits": [list(map(float, row)) for row in llm.scores[:len(tokens)]],
                  "bos": llm.token_bos(), "eos": llm.token_eos(),
                  "template": llm.metadata.get("tokenizer.chat_template")}))
"""


def run_llama(path, text: str = TEXT) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), text], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_logits_match(got: dict, reference: np.ndarray) -> None:
    """llama.cpp's logits against the reference forward pass at every position: cosine >= 0.999 and
    the same top token."""
    logits = np.array(got["logits"])
    for pos in range(len(got["tokens"])):
        cos = float(logits[pos] @ reference[pos] / np.linalg.norm(logits[pos]) / np.linalg.norm(reference[pos]))
        assert cos >= 0.999, (pos, cos)
        assert int(np.argmax(logits[pos])) == int(np.argmax(reference[pos])), pos


@pytest.mark.parametrize("variant", ["f32", "bf16-sharded", "tied", "mistral"])
def test_converted_llama_tokenizes_and_computes_like_the_checkpoint(tmp_path, variant):
    import sentencepiece as spm

    folder = tmp_path / "ckpt"
    cfg, weights = write_llama_checkpoint(folder, shards=3 if variant == "bf16-sharded" else 1,
                                          bf16=variant == "bf16-sharded", tie_word_embeddings=variant == "tied",
                                          architecture="MistralForCausalLM" if variant == "mistral" else
                                          "LlamaForCausalLM")
    out = tmp_path / "model.gguf"
    result = convert_checkpoint(folder, out)
    assert result.output == out and out.is_file() and not (tmp_path / "model.gguf.partial").exists()
    assert result.file_type == ("BF16" if variant == "bf16-sharded" else "F16")
    info = load_model_info(out)
    assert info.architecture == "llama" and info.n_layer == 2 and info.n_vocab == cfg["vocab_size"]
    assert ("output.weight" in {t.name for t in info.tensors}) == (variant != "tied")

    got = run_llama(out)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert got["tokens"] == [1] + sp.encode(TEXT)  # BOS, then the checkpoint tokenizer's own pieces
    assert got["bos"] == 1 and got["eos"] == 2 and got["template"] == CHAT_TEMPLATE

    assert_logits_match(got, reference_logits(cfg, weights, got["tokens"]))


def test_llama3_rope_scaling_is_carried_as_llama_cpp_expects(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    write_llama_checkpoint(tmp_path / "ckpt", rope_scaling=scaling)
    convert_checkpoint(tmp_path / "ckpt", tmp_path / "m.gguf")
    info = load_model_info(tmp_path / "m.gguf")
    freqs = next(t for t in info.tensors if t.name == "rope_freqs.weight")
    assert freqs.shape[0] == 32  # head_dim / 2
    assert run_llama(tmp_path / "m.gguf")["tokens"][0] == 1  # llama.cpp loads and runs it


def _refused(tmp_path, message: str) -> None:
    out = tmp_path / "out.gguf"
    with pytest.raises(CheckpointError, match=message):
        convert_checkpoint(tmp_path / "ckpt", out)
    assert not out.exists() and not (tmp_path / "out.gguf.partial").exists()


def test_bad_checkpoints_are_refused_in_one_sentence_and_leave_nothing(tmp_path):
    folder = tmp_path / "ckpt"
    write_llama_checkpoint(folder, shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / sorted(set(index["weight_map"].values()))[1]
    data = shard.read_bytes()

    shard.unlink()
    _refused(tmp_path, "incomplete: 1 of 2 shards are missing")
    shard.write_bytes(data[: len(data) // 2])
    _refused(tmp_path, "truncated")
    shard.write_bytes(data)

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "architectures"}))
    _refused(tmp_path, "names no architecture")
    (folder / "config.json").write_text(json.dumps(config | {"architectures": ["GPTNeoXForCausalLM"]}))
    _refused(tmp_path, "GPTNeoXForCausalLM checkpoints cannot be converted yet; supported: Gemma2ForCausalLM, .*LlamaForCausalLM")
    (folder / "config.json").write_text(json.dumps(config | {"intermediate_size": 768}))
    _refused(tmp_path, "does not belong together|config.json implies")
    (folder / "config.json").write_text(json.dumps(config))

    good = (folder / "tokenizer_config.json").read_bytes()
    (folder / "tokenizer_config.json").write_bytes(b"\xff\xfe" + good)
    _refused(tmp_path, "not UTF-8")
    (folder / "tokenizer_config.json").write_bytes(good)
    (folder / "tokenizer.model").rename(folder / "tokenizer.bak")
    (folder / "tokenizer.json").write_text("{}")
    _refused(tmp_path, "BPE tokenizer")
    (folder / "tokenizer.bak").rename(folder / "tokenizer.model")
    convert_checkpoint(folder, tmp_path / "out.gguf")  # restored: it converts
    assert (tmp_path / "out.gguf").is_file()


def test_cancel_stops_between_tensors_and_removes_the_partial_file(tmp_path):
    import threading

    write_llama_checkpoint(tmp_path / "ckpt")
    cancel = threading.Event()
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 3:
            cancel.set()

    with pytest.raises(CheckpointError, match="cancelled"):
        convert_checkpoint(tmp_path / "ckpt", tmp_path / "m.gguf", cancel=cancel, progress=progress)
    assert len(seen) == 3 and not any(tmp_path.glob("m.gguf*"))
