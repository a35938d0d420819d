"""Our converter against llama.cpp's own (``convert_hf_to_gguf.py`` of the bundled llama.cpp, which
needs PyTorch and transformers): for each SentencePiece family, the same tensors bit for bit and the
same architecture and tokenizer metadata.

It runs where ``QUANTDESK_REFERENCE_PYTHON`` names a Python with torch, transformers, sentencepiece
and safetensors (``.ci/run`` makes one) and the llama-cpp-python source is unpacked where
``installer/build_llama.py`` puts it; ``QUANTDESK_REQUIRE_REFERENCE=1`` (CI) turns the skip into a
failure. Byte-level BPE checkpoints are not compared: llama.cpp's converter names their pre-tokenizer
by hashing the output of known published tokenizers, which a generated one never matches.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from quantdesk.convert.convert import convert_checkpoint
from tests.support.checkpoint_factory import GEMMA2, GEMMA3, PHI3, write_llama_checkpoint, write_spm_checkpoint


def _reference() -> tuple[str, Path]:
    python = os.environ.get("QUANTDESK_REFERENCE_PYTHON")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quantdesk-build"
    scripts = sorted(cache.glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    reason = None
    if not python or not Path(python).exists():
        reason = "QUANTDESK_REFERENCE_PYTHON names no Python with torch and transformers"
    elif not scripts:
        reason = f"no llama-cpp-python source under {cache} (installer/build_llama.py unpacks it)"
    if reason:
        if os.environ.get("QUANTDESK_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"the reference converter is required (QUANTDESK_REQUIRE_REFERENCE=1) but {reason}")
        pytest.skip(reason)
    return python, scripts[-1]


def _fields(path: Path) -> tuple[dict, dict]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    meta = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    tensors = {t.name: t for t in reader.tensors}
    return meta, tensors


@pytest.mark.parametrize("family", ["llama", "mistral", "phi3", "gemma2", "gemma3"])
def test_the_same_tensors_and_metadata_as_llama_cpps_converter(tmp_path, family):
    python, script = _reference()
    folder = tmp_path / "ckpt"
    if family in ("llama", "mistral"):
        write_llama_checkpoint(folder, shards=2, architecture="MistralForCausalLM" if family == "mistral"
                               else "LlamaForCausalLM")
    else:
        write_spm_checkpoint(folder, {"phi3": PHI3, "gemma2": GEMMA2, "gemma3": GEMMA3}[family],
                             added_tokens=["<|end|>"] if family == "phi3" else [], pad_vocab_to=512)
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    convert_checkpoint(folder, ours)
    run = subprocess.run([python, str(script), str(folder), "--outfile", str(theirs), "--outtype", "f16"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    our_meta, our_tensors = _fields(ours)
    ref_meta, ref_tensors = _fields(theirs)
    assert set(our_tensors) == set(ref_tensors), (set(our_tensors) ^ set(ref_tensors))
    for name, ref in ref_tensors.items():
        mine = our_tensors[name]
        assert (mine.tensor_type, list(mine.shape)) == (ref.tensor_type, list(ref.shape)), name
        assert np.array_equal(np.asarray(mine.data), np.asarray(ref.data)), name
    arch = ref_meta["general.architecture"]
    compared = [k for k in ref_meta if k.startswith((f"{arch}.", "tokenizer.ggml.", "tokenizer.chat_template"))]
    differ = {k: (our_meta.get(k), ref_meta[k]) for k in compared if _norm(our_meta.get(k)) != _norm(ref_meta[k])}
    assert not differ, {k: (str(a)[:80], str(b)[:80]) for k, (a, b) in differ.items()}


def _norm(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value
