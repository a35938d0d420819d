"""The checkpoint's tokenizer, carried into the GGUF as llama.cpp reads it.

SentencePiece (``tokenizer.model``, what Llama 2 and Mistral ship) through the ``gguf`` package's
reader; the special tokens, whether BOS is added, and the chat template from ``tokenizer_config.json``
and ``tokenizer.json`` through its ``SpecialVocab``. Hugging Face BPE tokenizers (``tokenizer.json``
alone: Llama 3, Qwen) need llama.cpp's pre-tokenizer name, which its converter identifies by hashing
the tokenizer's output on a reference text; that is not done here yet, so they are refused rather
than guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gguf import GGUFWriter, TokenType
from gguf.vocab import SentencePieceVocab, SpecialVocab

from quantdesk.convert.checkpoint import Checkpoint, CheckpointError


@dataclass
class Vocabulary:
    tokens: list[bytes]
    scores: list[float]
    types: list[int]
    special: Any  # gguf.vocab.SpecialVocab

    @property
    def size(self) -> int:
        return len(self.tokens)

    def add_to(self, w: GGUFWriter, n_vocab: int) -> None:
        """Tokens padded to the model's vocabulary size (unused rows), then the special tokens."""
        tokens, scores, types = list(self.tokens), list(self.scores), list(self.types)
        for i in range(len(tokens), n_vocab):
            tokens.append(f"[PAD{i}]".encode())
            scores.append(-1000.0)
            types.append(int(TokenType.UNUSED))
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        self.special.add_to_gguf(w, quiet=True)


def load_vocabulary(ck: Checkpoint) -> Vocabulary:
    folder = ck.folder
    if not (folder / "tokenizer.model").is_file():
        if (folder / "tokenizer.json").is_file():
            raise CheckpointError("this checkpoint's tokenizer is a Hugging Face BPE tokenizer (tokenizer.json), "
                                  "which the converter cannot carry over yet; only SentencePiece (tokenizer.model)")
        raise CheckpointError("the checkpoint has no tokenizer (tokenizer.model or tokenizer.json)")
    quiet = logging.getLogger("gguf.vocab")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        spm = SentencePieceVocab(folder)
        special = SpecialVocab(folder, load_merges=False, n_vocab=ck.get("vocab_size"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"a tokenizer file is not UTF-8 text ({exc.reason}); the checkpoint is damaged") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"the tokenizer cannot be read: {exc}") from None
    finally:
        quiet.setLevel(level)
    tokens, scores, types = [], [], []
    for text, score, kind in spm.all_tokens():
        tokens.append(text)
        scores.append(float(score))
        types.append(int(kind))
    return Vocabulary(tokens, scores, types, special)
