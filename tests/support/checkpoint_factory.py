"""Tiny Hugging Face checkpoints made locally: config.json, safetensors shards, a SentencePiece
tokenizer trained on the spot, tokenizer_config.json with a chat template — and a numpy reference
forward pass of the same model, the yardstick for what llama.cpp computes from the converted file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

CORPUS_WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly boxing "
                "numbers like 12345 and 2026 meet punctuation, quotes \"here\" and accents: café, naïve, "
                "über; plus emoji-free symbols # $ % & * ( ) [ ] { } < > / \\ | ~ ` ^ = + - _").split()
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<s>[' + m['role'] + '] ' + m['content'] + '</s>' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<s>[assistant] ' }}{% endif %}")


def train_sentencepiece(folder: Path, vocab_size: int = 400, seed: int = 0, space_prefix: bool = True) -> Path:
    """A byte-fallback BPE SentencePiece model like Llama 2's (``space_prefix`` False: like Gemma's,
    no space added before the text), trained on a generated corpus."""
    import sentencepiece as spm

    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(CORPUS_WORDS, size=12)) for _ in range(2000)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(folder / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, minloglevel=2, num_threads=1, add_dummy_prefix=space_prefix)
    (folder / "tokenizer.vocab").unlink(missing_ok=True)
    return folder / "tokenizer.model"


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], bf16: bool = False) -> None:
    """float32 arrays written as F32/F16 as given, or as BF16 (rounded to nearest even) with ``bf16``."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        if bf16 and array.dtype == np.float32:
            bits = array.astype(np.float32).view(np.uint32)
            data = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
            dtype = "BF16"
        else:
            dtype = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[array.dtype]
            data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def llama_weights(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    e, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or e // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(e)).astype(np.float32)

    out = {"model.embed_tokens.weight": rng.standard_normal((v, e)).astype(np.float32)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {p + "input_layernorm.weight": norm(), p + "self_attn.q_proj.weight": mat(q, e),
                p + "self_attn.k_proj.weight": mat(kv, e), p + "self_attn.v_proj.weight": mat(kv, e),
                p + "self_attn.o_proj.weight": mat(e, q), p + "post_attention_layernorm.weight": norm(),
                p + "mlp.gate_proj.weight": mat(ff, e), p + "mlp.up_proj.weight": mat(ff, e),
                p + "mlp.down_proj.weight": mat(e, ff)}
        if cfg.get("model_type") == "phi3":  # fused Q/K/V and gate/up, as Phi-3 stores them
            out[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [out.pop(p + f"self_attn.{x}_proj.weight") for x in ("q", "k", "v")])
            out[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                [out.pop(p + "mlp.gate_proj.weight"), out.pop(p + "mlp.up_proj.weight")])
        if str(cfg.get("model_type", "")).startswith("gemma"):  # norms around attention and FFN both
            out |= {p + "pre_feedforward_layernorm.weight": 0.1 * norm(),
                    p + "post_feedforward_layernorm.weight": 0.1 * norm()}
            for key in ("input_layernorm.weight", "post_attention_layernorm.weight"):
                out[p + key] = 0.1 * out[p + key]  # Gemma stores weight - 1: the scale is (1 + weight)
        if cfg.get("model_type") == "qwen2":  # Q, K and V carry biases
            out |= {p + f"self_attn.{x}_proj.bias": (0.1 * rng.standard_normal(n)).astype(np.float32)
                    for x, n in (("q", q), ("k", kv), ("v", kv))}
        if cfg.get("model_type") in ("qwen3", "gemma3_text"):  # Q and K are RMS-normed per head
            out |= {p + f"self_attn.{x}_norm.weight": (1.0 + 0.1 * rng.standard_normal(hd)).astype(np.float32)
                    for x in ("q", "k")}
    out["model.norm.weight"] = norm()
    if str(cfg.get("model_type", "")).startswith("gemma"):
        out["model.norm.weight"] = 0.1 * out["model.norm.weight"]
        for key in [k for k in out if k.endswith(("q_norm.weight", "k_norm.weight"))]:
            out[key] = 0.1 * out[key]
    if not cfg.get("tie_word_embeddings", str(cfg.get("model_type", "")).startswith("gemma")):
        out["lm_head.weight"] = mat(v, e)
    return out


def write_llama_checkpoint(folder: Path, *, shards: int = 1, bf16: bool = False, seed: int = 0,
                           tie_word_embeddings: bool = False, architecture: str = "LlamaForCausalLM",
                           rope_scaling: dict | None = None, **shape: int) -> tuple[dict, dict[str, np.ndarray]]:
    """A loadable tiny llama checkpoint in ``folder`` (``shape``: config.json values to override, e.g. a
    bigger one for benchmarks); returns its config and its float32 weights (BF16-rounded when ``bf16``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_sentencepiece(folder)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer)).vocab_size()
    cfg = {"architectures": [architecture], "model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
           "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": tie_word_embeddings, "bos_token_id": 1, "eos_token_id": 2,
           "torch_dtype": "bfloat16" if bf16 else "float32"}
    if rope_scaling:
        cfg["rope_scaling"] = rope_scaling
    cfg.update(shape)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "chat_template": CHAT_TEMPLATE, "tokenizer_class": "LlamaTokenizer"}))
    weights = llama_weights(cfg, seed)
    names = list(weights)
    if shards == 1:
        write_safetensors(folder / "model.safetensors", weights, bf16)
    else:
        per = -(-len(names) // shards)
        weight_map = {}
        for no in range(shards):
            part = f"model-{no + 1:05d}-of-{shards:05d}.safetensors"
            chunk = {n: weights[n] for n in names[no * per:(no + 1) * per]}
            write_safetensors(folder / part, chunk, bf16)
            weight_map |= {n: part for n in chunk}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if bf16:
        weights = {n: _bf16_round(w) for n, w in weights.items()}
    return cfg, weights


def _project(f: dict[str, np.ndarray], p: str, x: str, h: np.ndarray, heads: int, n: int, hd: int) -> np.ndarray:
    """One of Q, K, V for every position, by head: (heads, n, hd); with its bias where it has one."""
    y = h @ f[p + f"self_attn.{x}_proj.weight"].T + f.get(p + f"self_attn.{x}_proj.bias", 0.0)
    return y.reshape(n, heads, hd).transpose(1, 0, 2)


def _bf16_round(a: np.ndarray) -> np.ndarray:
    bits = a.astype(np.float32).view(np.uint32)
    return (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def reference_logits(cfg: dict, w: dict[str, np.ndarray], tokens: list[int]) -> np.ndarray:
    """Hugging Face's Llama forward pass in numpy (float64): the logits of every position."""
    e, n_head, n_kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or e // n_head
    eps, theta, n = cfg["rms_norm_eps"], cfg["rope_theta"], len(tokens)

    def rms(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g

    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.outer(np.arange(n, dtype=np.float64), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x: np.ndarray) -> np.ndarray:  # (heads, n, hd), rotate-half as transformers does
        half = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], -1)
        return x * cos + half * sin

    f = {k: v.astype(np.float64) for k, v in w.items()}
    x = f["model.embed_tokens.weight"][tokens]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, f[p + "input_layernorm.weight"])
        q, k, v = (_project(f, p, x, h, heads, n, hd) for x, heads in (("q", n_head), ("k", n_kv), ("v", n_kv)))
        if p + "self_attn.q_norm.weight" in f:
            q, k = rms(q, f[p + "self_attn.q_norm.weight"]), rms(k, f[p + "self_attn.k_norm.weight"])
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, n_head // n_kv, 0), np.repeat(v, n_head // n_kv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(n, n_head * hd)
        x = x + o @ f[p + "self_attn.o_proj.weight"].T
        h = rms(x, f[p + "post_attention_layernorm.weight"])
        g = h @ f[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ f[p + "mlp.up_proj.weight"].T)) @ f[p + "mlp.down_proj.weight"].T
    x = rms(x, f["model.norm.weight"])
    head = f.get("lm_head.weight", f["model.embed_tokens.weight"])
    return x @ head.T


QWEN_CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def train_bpe_tokenizer(folder: Path, pattern: str, vocab_size: int = 600, seed: int = 0) -> Path:
    """A byte-level BPE tokenizer.json like Qwen's or Llama 3's (``pattern``: its split expression),
    trained on the generated corpus, with Qwen's special tokens added after the vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(CORPUS_WORDS, size=12)) for _ in range(2000)]
    from tokenizers import normalizers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()  # as Qwen's published tokenizers have
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def write_qwen_checkpoint(folder: Path, *, model_type: str = "qwen2", tie_word_embeddings: bool = True,
                          bf16: bool = False, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """A tiny Qwen2 or Qwen3 checkpoint with a byte-level BPE tokenizer (Qwen's split expression)."""
    from quantdesk.convert.bpe import PRE_TOKENIZERS
    from tokenizers import Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = Tokenizer.from_file(str(train_bpe_tokenizer(folder, PRE_TOKENIZERS["qwen2"]))).get_vocab_size()
    cfg = {"architectures": ["Qwen2ForCausalLM" if model_type == "qwen2" else "Qwen3ForCausalLM"],
           "model_type": model_type, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": tie_word_embeddings,
           "eos_token_id": vocab - 1, "torch_dtype": "bfloat16" if bf16 else "float32"}
    if model_type == "qwen3":
        cfg["head_dim"] = 128  # wider than hidden_size / heads, as Qwen3's are
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "chat_template": QWEN_CHAT_TEMPLATE}))
    weights = llama_weights(cfg, seed)
    write_safetensors(folder / "model.safetensors", weights, bf16)
    if bf16:
        weights = {n: _bf16_round(w) for n, w in weights.items()}
    return cfg, weights


def write_spm_checkpoint(folder: Path, cfg: dict, *, added_tokens: list[str] = (), pad_vocab_to: int = 0,
                         seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """Any architecture with a SentencePiece tokenizer: ``cfg`` without vocab_size (taken from the
    tokenizer, plus ``added_tokens`` after it, padded up to ``pad_vocab_to``)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    gemma = str(cfg.get("model_type")).startswith("gemma")
    sp_size = spm.SentencePieceProcessor(model_file=str(train_sentencepiece(folder, space_prefix=not gemma))).vocab_size()
    added = [{"id": sp_size + i, "content": t, "special": True, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False} for i, t in enumerate(added_tokens)]
    cfg = dict(cfg, vocab_size=max(sp_size + len(added), pad_vocab_to))
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "chat_template": CHAT_TEMPLATE,
        "tokenizer_class": "GemmaTokenizer" if str(cfg.get("model_type")).startswith("gemma") else "LlamaTokenizer",
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added}}))
    weights = llama_weights(cfg, seed)
    write_safetensors(folder / "model.safetensors", weights)
    return cfg, weights


PHI3 = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 256, "intermediate_size": 512,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
        "eos_token_id": 2, "partial_rotary_factor": 0.75}
GEMMA2 = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 256, "intermediate_size": 512,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 128,
          "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "query_pre_attn_scalar": 128,
          "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096,
          "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 1, "eos_token_id": 2}
GEMMA3 = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 256, "intermediate_size": 512,
          "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 128,
          "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
          "rope_local_base_freq": 100.0,  # unusual on purpose: the test sees whether it reaches llama.cpp
          "query_pre_attn_scalar": 128, "sliding_window": 512,
          "sliding_window_pattern": 6, "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 1, "eos_token_id": 2}


def family_reference_logits(cfg: dict, w: dict[str, np.ndarray], tokens: list[int]) -> np.ndarray:
    """Phi-3 and Gemma 2/3 forward passes in numpy (float64), as transformers computes them."""
    kind = cfg["model_type"]
    e, n_head, n_kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or e // n_head
    eps, n = cfg["rms_norm_eps"], len(tokens)
    gemma = kind.startswith("gemma")
    rot = int(hd * cfg.get("partial_rotary_factor", 1.0)) // 2 * 2
    f = {k: v.astype(np.float64) for k, v in w.items()}

    def rms(x: np.ndarray, g: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * ((1.0 + g) if gemma else g)

    def rope(x: np.ndarray, theta: float) -> np.ndarray:
        inv = 1.0 / theta ** (np.arange(0, rot, 2, dtype=np.float64) / rot)
        ang = np.outer(np.arange(n, dtype=np.float64), inv)
        cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
        r, rest = x[..., :rot], x[..., rot:]
        half = np.concatenate([-r[..., rot // 2:], r[..., :rot // 2]], -1)
        return np.concatenate([r * cos + half * sin, rest], -1)

    def act(g: np.ndarray) -> np.ndarray:
        if gemma:  # GELU, tanh approximation
            return 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
        return g / (1 + np.exp(-g))

    x = f["model.embed_tokens.weight"][tokens] * (np.sqrt(e) if gemma else 1.0)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    scale = cfg.get("query_pre_attn_scalar", hd) ** -0.5
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, f[p + "input_layernorm.weight"])
        if kind == "phi3":
            qkv = h @ f[p + "self_attn.qkv_proj.weight"].T
            q, k, v = np.split(qkv, [n_head * hd, (n_head + n_kv) * hd], axis=-1)
        else:
            q, k, v = (h @ f[p + f"self_attn.{x_}_proj.weight"].T for x_ in ("q", "k", "v"))
        q = q.reshape(n, n_head, hd).transpose(1, 0, 2)
        k = k.reshape(n, n_kv, hd).transpose(1, 0, 2)
        v = v.reshape(n, n_kv, hd).transpose(1, 0, 2)
        if kind == "gemma3_text":
            q, k = rms(q, f[p + "self_attn.q_norm.weight"]), rms(k, f[p + "self_attn.k_norm.weight"])
        sliding = kind == "gemma3_text" and (i + 1) % cfg.get("sliding_window_pattern", 6) != 0
        theta = cfg["rope_local_base_freq"] if sliding else cfg["rope_theta"]
        q, k = rope(q, theta), rope(k, theta)
        k, v = np.repeat(k, n_head // n_kv, 0), np.repeat(v, n_head // n_kv, 0)
        s = q @ k.transpose(0, 2, 1) * (scale if gemma else hd ** -0.5)
        if cfg.get("attn_logit_softcapping"):
            cap = cfg["attn_logit_softcapping"]
            s = np.tanh(s / cap) * cap
        s = s + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(n, n_head * hd) @ f[p + "self_attn.o_proj.weight"].T
        if gemma:
            x = x + rms(o, f[p + "post_attention_layernorm.weight"])
            h = rms(x, f[p + "pre_feedforward_layernorm.weight"])
        else:
            x = x + o
            h = rms(x, f[p + "post_attention_layernorm.weight"])
        if kind == "phi3":
            gate, up = np.split(h @ f[p + "mlp.gate_up_proj.weight"].T, 2, axis=-1)
        else:
            gate, up = h @ f[p + "mlp.gate_proj.weight"].T, h @ f[p + "mlp.up_proj.weight"].T
        y = (act(gate) * up) @ f[p + "mlp.down_proj.weight"].T
        x = x + (rms(y, f[p + "post_feedforward_layernorm.weight"]) if gemma else y)
    x = rms(x, f["model.norm.weight"])
    logits = x @ f.get("lm_head.weight", f["model.embed_tokens.weight"]).T
    if cfg.get("final_logit_softcapping"):
        cap = cfg["final_logit_softcapping"]
        logits = np.tanh(logits / cap) * cap
    return logits
