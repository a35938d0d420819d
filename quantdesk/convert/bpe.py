"""Hugging Face byte-level BPE tokenizers (``tokenizer.json``: Llama 3, Qwen 2/3) for llama.cpp.

llama.cpp splits text before BPE with a regular expression of its own per "pre-tokenizer" type,
named in the GGUF (``tokenizer.ggml.pre``); the name must be the one whose expression matches the
checkpoint's, or llama.cpp tokenizes differently from the model's own tokenizer. llama.cpp's source
records, for each type, the original expression from the model family's tokenizer.json
(src/llama-vocab.cpp); a checkpoint is identified by finding its own expression among those, with
the byte-level settings the family uses. Anything else — another expression, a normalizer, a
prefix space — is refused with a sentence, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import TokenType

# llama.cpp pre-tokenizer name -> the Split expression of that family's tokenizer.json
# (as llama.cpp's src/llama-vocab.cpp records it beside its adapted version)
PRE_TOKENIZERS = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


class UnknownTokenizer(ValueError):
    """The tokenizer cannot be matched to a llama.cpp pre-tokenizer; the message says what differs."""


@dataclass
class BpeTokens:
    pre: str
    tokens: list[str]
    types: list[int]


def _split_pattern(pre: Any) -> tuple[str | None, bool]:
    """(the Split expression, whether a ByteLevel step without its own regex follows it)."""
    steps = pre.get("pretokenizers", []) if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    pattern, byte_level = None, False
    for step in steps:
        if not isinstance(step, dict):
            continue
        if step.get("type") == "Split":
            p = step.get("pattern") or {}
            pattern = p.get("Regex") if isinstance(p, dict) else None
            if step.get("behavior") not in (None, "Isolated") or step.get("invert"):
                return None, False
        elif step.get("type") == "ByteLevel":
            byte_level = not step.get("add_prefix_space", False) and not step.get("use_regex", True)
        else:
            return None, False
    return pattern, byte_level


def identify_pre_tokenizer(tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for this tokenizer.json's pre-tokenizer; :class:`UnknownTokenizer` otherwise."""
    normalizer = tokenizer.get("normalizer")
    if normalizer and normalizer.get("type") != "NFC":  # Qwen's is NFC, which llama.cpp's converter accepts too
        raise UnknownTokenizer("its tokenizer normalizes text first, which no supported llama.cpp pre-tokenizer does")
    pattern, byte_level = _split_pattern(tokenizer.get("pre_tokenizer"))
    if pattern is None or not byte_level:
        raise UnknownTokenizer("its pre-tokenizer is not a single split expression followed by byte-level "
                               "encoding, as the supported families (Llama 3, Qwen 2/3) use")
    for name, known in PRE_TOKENIZERS.items():
        if pattern == known:
            return name
    raise UnknownTokenizer("its pre-tokenizer expression matches none that llama.cpp knows for the supported "
                           f"families ({', '.join(PRE_TOKENIZERS)}), so its tokens would differ")


def read_bpe(path: Path) -> BpeTokens:
    """Tokens by id (gaps filled as unused) with llama.cpp's token types, and the pre-tokenizer name."""
    tokenizer = json.loads(path.read_bytes().decode("utf-8"))
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (tokenizer.get("decoder") or {}).get("type") != "ByteLevel":
        raise UnknownTokenizer("tokenizer.json is not a byte-level BPE tokenizer")
    pre = identify_pre_tokenizer(tokenizer)
    by_id: dict[int, tuple[str, int]] = {int(i): (t, int(TokenType.NORMAL)) for t, i in model.get("vocab", {}).items()}
    for added in tokenizer.get("added_tokens") or []:
        kind = TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
        by_id[int(added["id"])] = (str(added["content"]), int(kind))
    size = max(by_id) + 1 if by_id else 0
    tokens = [by_id.get(i, (f"[PAD{i}]", int(TokenType.UNUSED)))[0] for i in range(size)]
    types = [by_id.get(i, (f"[PAD{i}]", int(TokenType.UNUSED)))[1] for i in range(size)]
    return BpeTokens(pre, tokens, types)
