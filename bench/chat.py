"""Chat speed through our engine (child process, llama_cpp.server, HTTP streaming) vs in-process llama-cpp-python.

Same generated model (≥1B parameters, Q4_K_M), same load settings and sampling, same run, alternating
rounds. Prints load time, time to first token and generation tokens/s of each, and the ratio.

    .venv/bin/python bench/chat.py [--rounds 3] [--tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import ROOT, quantized_model

from tests.support.gguf_factory import ModelShape

# TinyLlama-1.1B's published shape: 1.1 B parameters, Q4_K_M ≈ 0.65 GB.
SHAPE = ModelShape(n_vocab=32000, n_embd=2048, n_layer=22, n_head=32, n_head_kv=4, n_ff=5632, n_ctx_train=2048,
                   name="tinyllama-1.1b-shaped")
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle. " * 4
# Random weights emit noise: ban end-of-sequence and raw-byte tokens on both sides, so both generate the
# same number of whole-word tokens.
BIAS = {str(i): -100.0 for i in [2, *range(3, 259)]}

IN_PROCESS = r"""
import json, sys, time
import llama_cpp
path, args, n, rounds = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
prompt, bias = sys.argv[5], {int(k): v for k, v in json.loads(sys.argv[6]).items()}
t0 = time.perf_counter()
llm = llama_cpp.Llama(path, verbose=False, **args)
load_s = time.perf_counter() - t0
runs = []
for r in range(rounds):
    llm.reset()
    t0 = time.perf_counter(); first = last = None; k = 0
    for chunk in llm.create_completion(prompt, max_tokens=n, stream=True, temperature=0.8, seed=r,
                                       logit_bias=bias):
        if chunk["choices"][0]["text"]:
            now = time.perf_counter(); first = first or now; last = now; k += 1
    runs.append({"ttft": first - t0, "tps": (k - 1) / (last - first), "tokens": k})
print(json.dumps({"load_s": load_s, "runs": runs}))
"""


def in_process(path: str, args: dict, n: int, rounds: int) -> dict:
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, path, json.dumps(args), str(n), str(rounds), PROMPT,
                          json.dumps(BIAS)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(path: str, args: dict, n: int, rounds: int) -> dict:
    from quantdesk.chat.engine import Engine, Finished, LoadSettings
    from quantdesk.chat.sampling import Sampling

    t0 = time.perf_counter()
    engine = Engine(path, LoadSettings(**args))
    engine.start()
    load_s = time.perf_counter() - t0
    runs = []
    with engine:
        for r in range(rounds):
            engine.status()
            done = [e for e in engine.complete(PROMPT, Sampling(max_tokens=n, temperature=0.8, seed=r,
                                                                logit_bias=BIAS))
                    if isinstance(e, Finished)][-1]
            runs.append({"ttft": done.ttft_s, "tps": done.tokens_per_s, "tokens": done.tokens})
            _reset(engine)
    return {"load_s": load_s, "report_load_s": engine.report.load_s, "runs": runs}


def _reset(engine) -> None:
    """Evaluate an unrelated prompt so the next round cannot reuse the KV cache (the in-process side resets)."""
    from quantdesk.chat.sampling import Sampling

    for _ in engine.complete("zq " * 3, Sampling(max_tokens=1)):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    path = str(quantized_model(SHAPE, "Q4_K_M"))
    args = {"n_ctx": 1024, "n_batch": 512, "n_ubatch": 512, "flash_attn": True, "n_threads": a.threads,
            "n_gpu_layers": 0}
    results = {"ours": [], "in-process": []}
    for _ in range(2):  # alternate so drift on a shared machine hits both sides
        results["in-process"].append(in_process(path, args, a.tokens, a.rounds))
        results["ours"].append(ours(path, args, a.tokens, a.rounds))

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for res in results[side] for r in res["runs"])

    def load(side: str) -> float:
        return statistics.median(res["load_s"] for res in results[side])

    size = os.path.getsize(path)
    print(f"model: {os.path.basename(path)} ({size / 2**30:.2f} GiB, {SHAPE.n_layer} layers), "
          f"{a.tokens} tokens x {a.rounds} rounds x 2, {a.threads} threads, prompt ~{len(PROMPT.split())} words")
    print(f"{'':22}{'ours (child+HTTP)':>20}{'in-process':>14}{'ratio':>9}")
    rows = [("generation tok/s", med("ours", "tps"), med("in-process", "tps"), True),
            ("time to first token s", med("ours", "ttft"), med("in-process", "ttft"), False),
            ("load s (to ready)", load("ours"), load("in-process"), False)]
    for name, o, i, higher_better in rows:
        ratio = o / i if higher_better else i / o
        print(f"{name:22}{o:20.3f}{i:14.3f}{ratio:9.3f}")
    print("ratio: ours relative to in-process, higher is better (1.0 = equal).")
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
