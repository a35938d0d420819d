"""Makes real llama-architecture GGUF files for tests and benchmarks.

Two kinds: full models with random weights (F32/F16, SPM vocabulary, chat template) that
llama.cpp loads, quantizes and runs; and header-only files of real model shapes (a real header,
then the file extended sparsely to its full size) so planning an 8B or 70B model costs no disk.
Row sizes are multiples of 256 so every K-quant applies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ModelShape:
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx_train: int = 4096
    name: str = "test-model"

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# Small random-weight models that llama.cpp runs in seconds on 2 cores.
TINY = ModelShape(n_vocab=512, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_ctx_train=2048, name="tiny")
SMALL = ModelShape(n_vocab=2048, n_embd=512, n_layer=4, n_head=8, n_head_kv=4, n_ff=1536, n_ctx_train=4096, name="small")
MEDIUM = ModelShape(n_vocab=8192, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=2816, n_ctx_train=8192, name="medium")
WIDE = ModelShape(n_vocab=16384, n_embd=2048, n_layer=6, n_head=16, n_head_kv=8, n_ff=5632, n_ctx_train=8192, name="wide")
# Realistic shapes for header-only planning (public configs of the named models).
LLAMA3_8B = ModelShape(128256, 4096, 32, 32, 8, 14336, 8192, "Llama-3-8B-shaped")
LLAMA3_70B = ModelShape(128256, 8192, 80, 64, 8, 28672, 8192, "Llama-3-70B-shaped")
QWEN25_05B = ModelShape(151936, 896, 24, 14, 2, 4864, 32768, "Qwen2.5-0.5B-shaped")

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


def tensor_shapes(shape: ModelShape) -> list[tuple[str, tuple[int, ...]]]:
    """(name, ggml shape ne0-first) of every tensor of a llama model, in llama.cpp's order."""
    e, kv = shape.n_embd, shape.head_dim * shape.n_head_kv
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (e, shape.n_vocab))]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,)), (p + "attn_q.weight", (e, e)), (p + "attn_k.weight", (e, kv)),
                (p + "attn_v.weight", (e, kv)), (p + "attn_output.weight", (e, e)), (p + "ffn_norm.weight", (e,)),
                (p + "ffn_gate.weight", (e, shape.n_ff)), (p + "ffn_up.weight", (e, shape.n_ff)),
                (p + "ffn_down.weight", (shape.n_ff, e))]
    out += [("output_norm.weight", (e,)), ("output.weight", (e, shape.n_vocab))]
    return out


def _tensor_type(name: str, ne: tuple[int, ...], preset: str, layer_count: int) -> Q:
    if len(ne) == 1:
        return _F32
    default, upgraded, head = PRESET_MIX[preset]
    if name == "output.weight":
        return head
    if name == "token_embd.weight":
        return default
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        layer = int(name.split(".")[1])
        if upgraded != default and (layer < layer_count // 8 or layer >= 7 * layer_count // 8 or layer % 3 == 2):
            return upgraded
    return default


def _write_metadata(w: GGUFWriter, shape: ModelShape, file_type: int, chat_template: str | None,
                    duplicate_token: bool) -> None:
    w.add_name(shape.name)
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(int(file_type))
    w.add_vocab_size(shape.n_vocab)
    tokens, scores, types = _spm_vocab(shape.n_vocab, duplicate_token)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    if chat_template:
        w.add_chat_template(chat_template)


def _spm_vocab(n_vocab: int, duplicate_token: bool) -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < n_vocab:
        word, n = "", i
        while True:
            word += letters[n % 26]
            n //= 26
            if n == 0:
                break
        tokens.append("\u2581" + word if i % 2 == 0 else word)
        types.append(TokenType.NORMAL)
        i += 1
    if duplicate_token:  # llama.cpp aborts the whole process on such a vocabulary
        tokens[-1] = tokens[-2]
    scores = [0.0] * 3 + [0.0] * 256 + [-float(k) for k in range(n_vocab - 259)]
    return tokens, scores, [int(t) for t in types]


def write_model(path: str | os.PathLike, shape: ModelShape = TINY, dtype: str = "F16", seed: int = 0,
                chat_template: str | None = CHATML_TEMPLATE, duplicate_token: bool = False) -> Path:
    """A loadable llama model with random weights; ``dtype`` is F16 or F32 (norms stay F32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np_type = {"F16": np.float16, "F32": np.float32}[dtype]
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    _write_metadata(w, shape, FILE_TYPES.get(dtype, LlamaFileType.ALL_F32), chat_template, duplicate_token)
    for name, ne in tensor_shapes(shape):
        np_shape = tuple(reversed(ne))
        if len(ne) == 1:
            w.add_tensor(name, np.ones(np_shape, dtype=np.float32))
        else:
            data = rng.standard_normal(np_shape, dtype=np.float32) * (1.0 / np.sqrt(ne[0]))
            w.add_tensor(name, data.astype(np_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


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
            _write_metadata(w, shape, 1, None, False)
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
    w = GGUFWriter(str(path), "llama")
    _write_metadata(w, shape, FILE_TYPES[quant], chat_template, False)
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
