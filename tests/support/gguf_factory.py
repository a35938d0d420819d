"""Makes real llama-architecture GGUF files for tests and benchmarks.

Two kinds: full models with random weights (F32/F16, SPM vocabulary, chat template) that
llama.cpp loads, quantizes and runs; and header-only files of real model shapes (a real header,
then the file extended sparsely to its full size) so planning an 8B or 70B model costs no disk.
Row sizes are multiples of 256 so every K-quant applies.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType

from quantdesk.gguf.synthetic import (  # noqa: F401 - re-exported: the suite's one model writer
    CHATML_TEMPLATE, TINY, ModelShape, spm_vocab, tensor_shapes, write_metadata, write_model)

# Small random-weight models that llama.cpp runs in seconds on 2 cores.
SMALL = ModelShape(n_vocab=2048, n_embd=512, n_layer=4, n_head=8, n_head_kv=4, n_ff=1536, n_ctx_train=4096, name="small")
MEDIUM = ModelShape(n_vocab=8192, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=2816, n_ctx_train=8192, name="medium")
WIDE = ModelShape(n_vocab=16384, n_embd=2048, n_layer=6, n_head=16, n_head_kv=8, n_ff=5632, n_ctx_train=8192, name="wide")
# Realistic shapes for header-only planning (public configs of the named models).
LLAMA3_8B = ModelShape(128256, 4096, 32, 32, 8, 14336, 8192, "Llama-3-8B-shaped")
LLAMA3_70B = ModelShape(128256, 8192, 80, 64, 8, 28672, 8192, "Llama-3-70B-shaped")
QWEN25_05B = ModelShape(151936, 896, 24, 14, 2, 4864, 32768, "Qwen2.5-0.5B-shaped")
# Qwen3-30B-A3B's published shape (config.json: 48 blocks of 128 experts, 8 used, 768 wide; head_dim 128).
QWEN3_30B_A3B = ModelShape(151936, 2048, 48, 32, 4, 6144, 40960, "Qwen3-30B-A3B-shaped", n_expert=128,
                           n_expert_used=8, n_ff_exp=768, arch="qwen3moe", key_length=128)
# Small mixture-of-experts models that llama.cpp loads and runs in seconds: Mixtral-style (llama
# architecture, experts as wide as n_ff) and Qwen3-MoE-style (Q/K norms, own expert width); both with
# 128-wide heads like the real ones. (A llama-architecture MoE with 64-wide heads and flash attention,
# split between the CPU and Mesa's software GPU, segfaults inside Mesa at the first decoded token —
# with a plain layer split too, so llama.cpp/lavapipe, not the expert override: docs/moe-placement.md.)
MOE_SMALL = ModelShape(n_vocab=2048, n_embd=512, n_layer=4, n_head=4, n_head_kv=2, n_ff=512, n_ctx_train=4096,
                       name="moe-small", n_expert=8, n_expert_used=2)
QWEN3MOE_SMALL = ModelShape(n_vocab=2048, n_embd=512, n_layer=6, n_head=8, n_head_kv=4, n_ff=1536, n_ctx_train=4096,
                            name="qwen3moe-small", n_expert=16, n_expert_used=4, n_ff_exp=256, arch="qwen3moe",
                            key_length=128)

_F16, _F32 = GGMLQuantizationType.F16, GGMLQuantizationType.F32
Q = GGMLQuantizationType

# Tensor types per preset, following llama.cpp's mixing rules closely enough for planning:
# (default, attn_v / ffn_down upgraded type, output head type)
PRESET_MIX: dict[str, tuple[Q, Q, Q]] = {
    "F16": (Q.F16, Q.F16, Q.F16), "Q8_0": (Q.Q8_0, Q.Q8_0, Q.Q8_0), "Q6_K": (Q.Q6_K, Q.Q6_K, Q.Q6_K),
    "Q5_K_M": (Q.Q5_K, Q.Q6_K, Q.Q6_K), "Q5_K_S": (Q.Q5_K, Q.Q5_K, Q.Q6_K),
    "Q4_K_M": (Q.Q4_K, Q.Q6_K, Q.Q6_K), "Q4_K_S": (Q.Q4_K, Q.Q5_K, Q.Q6_K),
    "Q3_K_M": (Q.Q3_K, Q.Q4_K, Q.Q6_K), "Q3_K_L": (Q.Q3_K, Q.Q5_K, Q.Q6_K),
    "Q2_K": (Q.Q2_K, Q.Q3_K, Q.Q6_K), "IQ4_XS": (Q.IQ4_XS, Q.IQ4_XS, Q.Q6_K), "Q4_0": (Q.Q4_0, Q.Q4_0, Q.Q6_K),
}
FILE_TYPES = {"F32": LlamaFileType.ALL_F32, "F16": LlamaFileType.MOSTLY_F16, "Q8_0": LlamaFileType.MOSTLY_Q8_0,
              "Q6_K": LlamaFileType.MOSTLY_Q6_K, "Q5_K_M": LlamaFileType.MOSTLY_Q5_K_M,
              "Q5_K_S": LlamaFileType.MOSTLY_Q5_K_S, "Q4_K_M": LlamaFileType.MOSTLY_Q4_K_M,
              "Q4_K_S": LlamaFileType.MOSTLY_Q4_K_S, "Q3_K_M": LlamaFileType.MOSTLY_Q3_K_M,
              "Q3_K_L": LlamaFileType.MOSTLY_Q3_K_L, "Q2_K": LlamaFileType.MOSTLY_Q2_K,
              "IQ4_XS": LlamaFileType.MOSTLY_IQ4_XS, "Q4_0": LlamaFileType.MOSTLY_Q4_0}


def _tensor_type(name: str, ne: tuple[int, ...], preset: str, layer_count: int) -> Q:
    if len(ne) == 1 or name.endswith("ffn_gate_inp.weight"):
        return _F32
    default, upgraded, head = PRESET_MIX[preset]
    if name == "output.weight":
        return head
    if name == "token_embd.weight":
        return default
    if name.endswith(("attn_v.weight", "ffn_down.weight", "ffn_down_exps.weight")):
        layer = int(name.split(".")[1])
        if upgraded != default and (layer < layer_count // 8 or layer >= 7 * layer_count // 8 or layer % 3 == 2):
            return upgraded
    return default


def write_split_model(folder: str | os.PathLike, stem: str, shape: ModelShape = TINY,
                      parts: int = 2) -> list[Path]:
    """A model split as llama.cpp's gguf-split writes it: ``STEM-0000K-of-0000N.gguf``, metadata in the
    first part, tensors spread over all of them (zero weights: for reading and importing, not chatting)."""
    tensors = tensor_shapes(shape)
    size = -(-len(tensors) // parts)
    paths = []
    for no in range(1, parts + 1):
        path = Path(folder) / f"{stem}-{no:05d}-of-{parts:05d}.gguf"
        w = GGUFWriter(str(path), "llama")
        if no == 1:
            write_metadata(w, shape, 1, None, False)
        w.add_uint16("split.no", no - 1)
        w.add_uint16("split.count", parts)
        w.add_int32("split.tensors.count", len(tensors))
        for name, ne in tensors[(no - 1) * size: no * size]:
            w.add_tensor(name, np.zeros(tuple(reversed(ne)), dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(path)
    return paths


def write_header_only(path: str | os.PathLike, shape: ModelShape = LLAMA3_8B, quant: str = "Q4_K_M",
                      chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """A real header of ``shape`` quantized as ``quant``; the data part is a sparse hole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(str(path), shape.arch)
    write_metadata(w, shape, FILE_TYPES[quant], chat_template, False)
    for name, ne in tensor_shapes(shape):
        qtype = _tensor_type(name, ne, quant, shape.n_layer)
        block, size = GGML_QUANT_SIZES[qtype]
        n_bytes = int(np.prod(ne)) // block * size
        byte_shape = tuple(reversed(ne[1:])) + (ne[0] // block * size,)
        w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), n_bytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    header_end = w.fout[0].tell() if isinstance(w.fout, list) else w.fout.tell()
    w.close()
    total = _aligned(header_end, 32) + sum(
        _aligned(t.nbytes, 32) for t in _infos(w))
    with open(path, "r+b") as fh:
        fh.truncate(total)
    return path


def _aligned(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _infos(w: GGUFWriter):
    tensors = w.tensors[0] if isinstance(w.tensors, list) else w.tensors
    return list(tensors.values())


def scaled(shape: ModelShape, **changes) -> ModelShape:
    return replace(shape, **changes)


def header_only_bytes(tmp_dir: str | os.PathLike, shape: ModelShape, quant: str) -> tuple[bytes, int]:
    """Just the header bytes of a ``shape`` x ``quant`` model, and the full size the model would have.

    A fake hub can serve these bytes while advertising the full size (its ``wrong_size`` switch):
    remote planning reads only the header, and no test hashes gigabytes of sparse zeros.
    """
    path = write_header_only(Path(tmp_dir) / f"{shape.name}-{quant}.gguf", shape, quant)
    full = path.stat().st_size
    from quantdesk.gguf.reader import read_header

    header = read_header(path).header_size
    with path.open("rb") as fh:  # enough for the reader's geometric growth (x4) past the header
        data = fh.read(min(full, 4 * header + (1 << 20)))
    path.unlink()
    return data, full


def add_header_only_repo(hub, repo_id: str, tmp_dir, files: dict[str, tuple[ModelShape, str]], **repo_kwargs) -> None:
    """A fake-hub repo of real-shaped models whose bodies are never served (nor hashed)."""
    content, sizes = {}, {}
    for name, (shape, quant) in files.items():
        content[name], sizes[name] = header_only_bytes(tmp_dir, shape, quant)
    hub.add_repo(repo_id, content, **repo_kwargs)
    for name, size in sizes.items():
        hub.set_fault(repo_id, name, wrong_size=size)


def write_never_text_model(path: str | os.PathLike, shape: ModelShape = TINY, byte: int = 0xE2,
                           chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """A loadable model that only ever writes the byte ``byte`` (default 0xE2, the first byte of a
    three-byte UTF-8 character), so its reply never forms text: every token embeds to the same
    vector, the blocks add nothing, and the output head scores only that byte's token."""
    path = Path(path)
    w = GGUFWriter(str(path), "llama")
    write_metadata(w, shape, LlamaFileType.ALL_F32, chat_template, False)
    byte_token = 3 + byte  # spm_vocab: <unk>, <s>, </s>, then <0x00>…<0xFF>
    for name, ne in tensor_shapes(shape):
        np_shape = tuple(reversed(ne))
        if len(ne) == 1:
            data = np.ones(np_shape, dtype=np.float32)
        elif name == "token_embd.weight":
            data = np.ones(np_shape, dtype=np.float32)
        elif name == "output.weight":
            data = np.zeros(np_shape, dtype=np.float32)
            data[byte_token, :] = 1.0
        else:
            data = np.zeros(np_shape, dtype=np.float32)
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
