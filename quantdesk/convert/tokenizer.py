"""The checkpoint's tokenizer, carried into the GGUF as llama.cpp reads it.

SentencePiece (``tokenizer.model``, what Llama 2 and Mistral ship) through the ``gguf`` package's
reader; byte-level BPE (``tokenizer.json`` alone: Llama 3, Qwen 2/3) with llama.cpp's pre-tokenizer
identified from its split expression (``convert.bpe``), merges included. The special tokens, whether
BOS is added, and the chat template come from ``tokenizer_config.json`` and ``tokenizer.json``
through the ``gguf`` package's ``SpecialVocab``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gguf import GGUFWriter, TokenType
from gguf.vocab import SentencePieceVocab, SpecialVocab

from quantdesk.convert.checkpoint import Checkpoint, CheckpointError


PAD_SCORE = -10000.0  # rows of the embedding no token uses (llama.cpp's converter scores them so)


@dataclass
class Vocabulary:
    tokens: list[bytes] | list[str]
    scores: list[float]
    types: list[int]
    special: Any  # gguf.vocab.SpecialVocab
    model: str = "llama"  # llama.cpp's tokenizer model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str = "default"
    space_prefix: bool = True  # SentencePiece's add_dummy_prefix (llama.cpp's default when unwritten: true)

    @property
    def size(self) -> int:
        return len(self.tokens)

    def add_to(self, w: GGUFWriter, n_vocab: int) -> None:
        """Tokens padded to the model's vocabulary size (unused rows), then the special tokens."""
        tokens, scores, types = list(self.tokens), list(self.scores), list(self.types)
        for i in range(len(tokens), n_vocab):
            tokens.append(f"[PAD{i}]".encode())
            scores.append(PAD_SCORE)
            types.append(int(TokenType.UNUSED))
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(tokens)
        if self.model == "llama":
            w.add_token_scores(scores)
        w.add_token_types(types)
        if not self.space_prefix:
            w.add_add_space_prefix(False)
        self.special.add_to_gguf(w, quiet=True)


@contextlib.contextmanager
def _quiet_gguf() -> Iterator[None]:
    """gguf's vocabulary readers log every special token at INFO; only their errors matter here."""
    log = logging.getLogger("gguf.vocab")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def load_vocabulary(ck: Checkpoint) -> Vocabulary:
    folder = ck.folder
    if not (folder / "tokenizer.model").is_file():
        if (folder / "tokenizer.json").is_file():
            return _bpe_vocabulary(ck)
        raise CheckpointError("the checkpoint has no tokenizer (tokenizer.model or tokenizer.json)")
    try:
        with _quiet_gguf():
            spm = SentencePieceVocab(folder)
            special = SpecialVocab(folder, load_merges=False, n_vocab=ck.get("vocab_size"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"a tokenizer file is not UTF-8 text ({exc.reason}); the checkpoint is damaged") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"the tokenizer cannot be read: {exc}") from None
    tokens, scores, types = [], [], []
    for text, score, kind in spm.all_tokens():
        tokens.append(text)
        scores.append(float(score))
        types.append(int(kind))
    _added_tokens(ck, tokens, scores, types)
    # whether the model adds a space before the text (Llama 2 does, Gemma does not): as it encodes "a"
    pieces = spm.sentencepiece_tokenizer.EncodeAsPieces("a")
    prefix = bool(pieces) and pieces[0].startswith("\u2581")
    return Vocabulary(tokens, scores, types, special, space_prefix=prefix)


def _added_tokens(ck: Checkpoint, tokens: list, scores: list[float], types: list[int]) -> None:
    """Tokens added on top of a SentencePiece model (Phi-3's ``<|user|>``…), from tokenizer_config.json's
    ``added_tokens_decoder`` and tokenizer.json's ``added_tokens``: put at their ids (gaps unused),
    special ones as control tokens, as llama.cpp's converter does."""
    import json

    added: dict[int, tuple[str, bool]] = {}
    for name, read in (("tokenizer.json", lambda d: {int(a["id"]): (a["content"], bool(a.get("special")))
                                                    for a in d.get("added_tokens") or []}),
                       ("tokenizer_config.json", lambda d: {int(i): (a["content"], bool(a.get("special")))
                                                           for i, a in (d.get("added_tokens_decoder") or {}).items()})):
        path = ck.folder / name
        if path.is_file():
            try:
                added |= read(json.loads(path.read_bytes().decode("utf-8")))
            except UnicodeDecodeError as exc:
                raise CheckpointError(f"{name} is not UTF-8 text ({exc.reason}); the checkpoint is damaged") from None
            except (ValueError, KeyError, TypeError, AttributeError):
                raise CheckpointError(f"{name}'s added tokens cannot be read") from None
    limit = int(ck.get("vocab_size", default=len(tokens)))
    for token_id, (content, is_special) in sorted(added.items()):
        if token_id >= limit:
            continue
        while len(tokens) <= token_id:
            tokens.append(f"[PAD{len(tokens)}]".encode())
            scores.append(PAD_SCORE)
            types.append(int(TokenType.UNUSED))
        if token_id >= len(tokens) or types[token_id] in (int(TokenType.UNUSED), int(TokenType.NORMAL)) \
                or tokens[token_id] != content.encode():
            tokens[token_id] = content.encode()
            scores[token_id] = -1000.0
            types[token_id] = int(TokenType.CONTROL if is_special else TokenType.USER_DEFINED)


def _bpe_vocabulary(ck: Checkpoint) -> Vocabulary:
    from quantdesk.convert.bpe import UnknownTokenizer, read_bpe

    try:
        with _quiet_gguf():
            bpe = read_bpe(ck.folder / "tokenizer.json")
            special = SpecialVocab(ck.folder, load_merges=True, n_vocab=ck.get("vocab_size"))
    except UnknownTokenizer as exc:
        raise CheckpointError(f"the tokenizer cannot be carried over: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"a tokenizer file is not UTF-8 text ({exc.reason}); the checkpoint is damaged") from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(f"tokenizer.json cannot be read: {exc}") from None
    if not special.merges:
        raise CheckpointError("tokenizer.json has no BPE merges; the checkpoint's tokenizer is damaged")
    return Vocabulary(bpe.tokens, [0.0] * len(bpe.tokens), bpe.types, special, "gpt2", bpe.pre)
