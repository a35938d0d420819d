"""How much did quantizing cost? KL divergence, top-1 agreement and perplexity vs the source.

The comparison runs in a child (``quant_eval_child``) so a model llama.cpp cannot load is an
error message, not a crash, and cancel stops it at once. The text is ``resources/eval/sample.txt``
(written for QuantDesk, public domain); a few hundred tokens keep it to seconds on a small model.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from quantdesk.base.child_process import death_reason, kill_tree, spawn_module
from quantdesk.base.errors import QuantDeskError
from quantdesk.base.paths import resources_dir
from quantdesk.base.settings import configured_threads
from quantdesk.base.units import fmt_bytes
from quantdesk.gguf.model_info import ModelInfo, load_model_info
from quantdesk.planning.quantize_cost import default_threads

DEFAULT_TOKENS = 256
# Beyond the two mapped files (read one after the other): logits of every position for both
# models (float32) and the process itself.
EVAL_BASE_RAM = 200 << 20


@dataclass(frozen=True)
class QualityReport:
    reference: str
    quantized: str
    tokens: int
    kl_mean: float
    kl_p99: float
    kl_max: float
    top1_agreement: float
    ppl_reference: float
    ppl_quantized: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)



class EvaluationCancelled(QuantDeskError):
    """The quality evaluation was stopped (the quantized model itself is kept)."""

def sample_text() -> Path:
    return resources_dir() / "eval" / "sample.txt"


def eval_ram_needed(reference: str | Path | ModelInfo, n_tokens: int = DEFAULT_TOKENS) -> int:
    """RAM the evaluation needs at its peak: the larger (source) model resident plus two logit tables.

    ``reference`` may be a header read from the hub: the figure is known before the download.
    """
    info = reference if isinstance(reference, ModelInfo) else load_model_info(reference)
    return info.file_size + 2 * 4 * (n_tokens + 8) * max(1, info.n_vocab) + EVAL_BASE_RAM


def eval_problem(need: int, ram_available: int) -> str | None:
    """Why the evaluation cannot run here, or None when it fits."""
    if need <= ram_available:
        return None
    return (f"the quality evaluation loads the full-precision source ({fmt_bytes(need)} with its logits) but only "
            f"{fmt_bytes(ram_available)} of RAM is available; quantize without evaluating")


def check_eval_fits(reference: str | Path, ram_available: int, n_tokens: int = DEFAULT_TOKENS) -> None:
    problem = eval_problem(eval_ram_needed(reference, n_tokens), ram_available)
    if problem:
        raise QuantDeskError(problem)


def evaluate(reference: str | Path, quantized: str | Path, *, n_tokens: int = DEFAULT_TOKENS,
             threads: int | None = None, cancel: threading.Event | None = None) -> QualityReport:
    """Compare ``quantized`` with ``reference`` on the bundled text, in a child process."""
    if n_tokens < 2:
        raise QuantDeskError("--eval-tokens must be at least 2")
    info = load_model_info(reference)
    if info.n_ctx_train:
        n_tokens = min(n_tokens, info.n_ctx_train)
    job = {"reference": str(reference), "quantized": str(quantized), "text_file": str(sample_text()),
           "n_tokens": n_tokens, "threads": threads or configured_threads() or default_threads()}
    proc = spawn_module("quantdesk.quantize.evaluate_child", job)
    out = err = ""
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise EvaluationCancelled("the evaluation was cancelled")
            try:
                out, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        kill_tree(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    if proc.returncode != 0 or "error" in result or not result:
        why = result.get("error") or (err.strip().splitlines() or [""])[-1][-300:]
        raise QuantDeskError(f"the quality evaluation of {Path(quantized).name} failed: the child "
                             f"{death_reason(proc.returncode)}" + (f" ({why})" if why else ""))
    return QualityReport(reference=str(reference), quantized=str(quantized), tokens=int(result["tokens"]),
                         kl_mean=result["kl_mean"], kl_p99=result["kl_p99"], kl_max=result["kl_max"],
                         top1_agreement=result["top1_agreement"], ppl_reference=result["ppl_reference"],
                         ppl_quantized=result["ppl_quantized"], seconds=result["seconds"])
