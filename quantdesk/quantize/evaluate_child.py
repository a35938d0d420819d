"""Scores a quantized model against its source: ``python -m quantdesk.quantize.evaluate_child JOB``.

Both models read the same tokens of a bundled text, one after the other (only one is loaded at a
time); the reference's next-token log-probabilities are kept and compared row by row with the
candidate's. Prints one JSON line: KL divergence (mean, p99, max), top-1 agreement and the
perplexity of each model on the text.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _logprobs(path: str, tokens: list[int] | None, text: str, n_tokens: int, threads: int
              ) -> tuple[list[int], np.ndarray]:
    """Evaluate ``tokens`` (or the first ``n_tokens`` of ``text``) and return per-position log-probs."""
    import llama_cpp  # lazy: importing this module stays cheap

    from quantdesk.hardware.ggml_devices import load_backends

    load_backends()  # a portable build registers its CPU variant only when asked

    n_ctx = max(64, n_tokens + 8)
    llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_batch=min(512, n_ctx), logits_all=True, verbose=False,
                          n_threads=threads, n_threads_batch=threads, n_gpu_layers=0)
    try:
        if tokens is None:
            tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)[:n_tokens]
        if len(tokens) < 2:
            raise ValueError("the evaluation text gave fewer than 2 tokens")
        llm.eval(tokens)
        return tokens, log_softmax(np.array(llm.scores[:len(tokens)], dtype=np.float32)).astype(np.float32)
    finally:
        llm.close()


def compare(ref: np.ndarray, cand: np.ndarray, tokens: list[int]) -> dict[str, float]:
    """KL(ref || cand) per position, top-1 agreement, and each model's perplexity on the text."""
    kl = np.zeros(len(ref))
    for i in range(len(ref)):  # row by row: two float64 copies of the whole matrix could be gigabytes
        r, c = ref[i].astype(np.float64), cand[i].astype(np.float64)
        kl[i] = max(0.0, float(np.sum(np.exp(r) * (r - c))))
    agree = float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))
    nxt = np.array(tokens[1:])
    rows = np.arange(len(nxt))
    nll_ref = -ref[rows, nxt].astype(np.float64)
    nll_cand = -cand[rows, nxt].astype(np.float64)
    return {"kl_mean": float(kl.mean()), "kl_p99": float(np.percentile(kl, 99)), "kl_max": float(kl.max()),
            "top1_agreement": agree, "ppl_reference": float(np.exp(nll_ref.mean())),
            "ppl_quantized": float(np.exp(nll_cand.mean()))}


def run(job: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    with open(job["text_file"], encoding="utf-8") as fh:
        text = fh.read()
    threads = int(job.get("threads") or os.cpu_count() or 1)
    tokens, ref = _logprobs(job["reference"], None, text, int(job["n_tokens"]), threads)
    _, cand = _logprobs(job["quantized"], tokens, text, len(tokens), threads)
    report = compare(ref, cand, tokens)
    return {"tokens": len(tokens), **report, "seconds": time.perf_counter() - t0}


def main(argv: list[str]) -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # llama.cpp's prints go to stderr
    try:
        result = run(json.loads(argv[0]))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a sentence
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
