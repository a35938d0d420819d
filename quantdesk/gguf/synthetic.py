"""Small loadable llama-architecture GGUF models with random weights, written by the app itself.

``quantdesk selftest`` needs a model that exists on every machine, network or not, to prove that
llama.cpp loads, offloads and generates here; the test suite makes its models the same way.
Row sizes are multiples of 256 so every K-quant applies. The text such a model writes is noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType, TokenType

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
    # Mixture of experts: routed experts per block, how many a token uses, each expert's FFN width.
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    arch: str = "llama"  # "llama" (Mixtral-style experts) or "qwen3moe" (Q/K norms, own expert width key)
    key_length: int | None = None  # head width where it is not n_embd / n_head (Qwen3: 128)

    @property
    def head_dim(self) -> int:
        return self.key_length or self.n_embd // self.n_head

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0


# The smallest model llama.cpp runs in well under a second on 2 cores.
TINY = ModelShape(n_vocab=512, n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_ctx_train=2048, name="tiny")
FILE_TYPES_FLOAT = {"F32": LlamaFileType.ALL_F32, "F16": LlamaFileType.MOSTLY_F16}


def tensor_shapes(shape: ModelShape) -> list[tuple[str, tuple[int, ...]]]:
    """(name, ggml shape ne0-first) of every tensor of a llama model, in llama.cpp's order."""
    e, kv, q = shape.n_embd, shape.head_dim * shape.n_head_kv, shape.head_dim * shape.n_head
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (e, shape.n_vocab))]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,)), (p + "attn_q.weight", (e, q)), (p + "attn_k.weight", (e, kv)),
                (p + "attn_v.weight", (e, kv)), (p + "attn_output.weight", (q, e))]
        if shape.arch == "qwen3moe":
            out += [(p + "attn_k_norm.weight", (shape.head_dim,)), (p + "attn_q_norm.weight", (shape.head_dim,))]
        out.append((p + "ffn_norm.weight", (e,)))
        if shape.is_moe:
            f, x = shape.n_ff_exp or shape.n_ff, shape.n_expert
            out += [(p + "ffn_gate_inp.weight", (e, x)), (p + "ffn_gate_exps.weight", (e, f, x)),
                    (p + "ffn_down_exps.weight", (f, e, x)), (p + "ffn_up_exps.weight", (e, f, x))]
        else:
            out += [(p + "ffn_gate.weight", (e, shape.n_ff)), (p + "ffn_up.weight", (e, shape.n_ff)),
                    (p + "ffn_down.weight", (shape.n_ff, e))]
    out += [("output_norm.weight", (e,)), ("output.weight", (e, shape.n_vocab))]
    return out


def write_metadata(w: GGUFWriter, shape: ModelShape, file_type: int, chat_template: str | None,
                    duplicate_token: bool) -> None:
    w.add_name(shape.name)
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.head_dim)
    if shape.key_length:
        w.add_key_length(shape.key_length)
        w.add_value_length(shape.key_length)
    if shape.is_moe:
        w.add_expert_count(shape.n_expert)
        w.add_expert_used_count(shape.n_expert_used)
        if shape.arch != "llama":
            w.add_expert_feed_forward_length(shape.n_ff_exp or shape.n_ff)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(int(file_type))
    w.add_vocab_size(shape.n_vocab)
    tokens, scores, types = spm_vocab(shape.n_vocab, duplicate_token)
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


def spm_vocab(n_vocab: int, duplicate_token: bool) -> tuple[list[str], list[float], list[int]]:
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
    w = GGUFWriter(str(path), shape.arch)
    write_metadata(w, shape, FILE_TYPES_FLOAT[dtype], chat_template, duplicate_token)
    for name, ne in tensor_shapes(shape):
        np_shape = tuple(reversed(ne))
        if len(ne) == 1:
            w.add_tensor(name, np.ones(np_shape, dtype=np.float32))
        elif name.endswith("ffn_gate_inp.weight"):  # the router stays F32, as llama.cpp's quantizer keeps it
            w.add_tensor(name, rng.standard_normal(np_shape, dtype=np.float32))
        else:
            data = rng.standard_normal(np_shape, dtype=np.float32) * (1.0 / np.sqrt(ne[0]))
            w.add_tensor(name, data.astype(np_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
