"""Run llama.cpp on a model in a child process and report its real memory use.

The child loads with given ``llama_cpp.Llama`` keyword arguments, fills the context with a prompt
(so the KV cache and compute buffer are really used), generates a few tokens and prints JSON with
its /proc/self/status memory figures and speeds. Optional arguments: ``verbose`` (1: llama.cpp logs
its buffer sizes to stderr) and ``hold`` (1: keep the memory until a line arrives on stdin, so a
parent can read GPU counters while it is held).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, random, sys, time
import llama_cpp
path, args, n_gen = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
verbose, hold = (sys.argv[4:6] + ["0", "0"])[:2]
t0 = time.perf_counter()
llm = llama_cpp.Llama(path, verbose=verbose == "1", **args)
load_s = time.perf_counter() - t0
random.seed(0)
n_fill = args["n_ctx"] - n_gen - 1
tokens = [llm.token_bos()] + [random.randrange(300, llm.n_vocab()) for _ in range(n_fill)]
t0 = time.perf_counter()
llm.eval(tokens)
prompt_s = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(n_gen):
    llm.eval([llm.sample(temp=0.0)])
gen_s = time.perf_counter() - t0
status = {l.split(":")[0]: int(l.split()[1]) * 1024 for l in open("/proc/self/status")
          if l.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile"))}
print(json.dumps({"status": status, "load_s": load_s, "prompt_tps": n_fill / prompt_s, "gen_tps": n_gen / gen_s}),
      flush=True)
if hold == "1":
    sys.stdin.readline()
"""


def measure(path: str | Path, load_args: dict, n_gen: int = 8, timeout: float = 600) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), json.dumps(load_args), str(n_gen)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"llama.cpp child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
