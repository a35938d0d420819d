"""``quantdesk quantize INPUT --type TYPE``: local quantization with pre-flight, progress and --eval."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.units import fmt_bytes
from quantdesk.cli.output import emit_json, positive


class QuantizeProgress:
    """One line per update on a terminal (redrawn), a line every few seconds otherwise; on stderr."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.open_line = False

    def update(self, ev) -> None:
        now = time.monotonic()
        last_tensor = ev.finished and ev.index == ev.total
        if now - self.last < (0.1 if self.tty else 2.0) and not last_tensor:
            return
        self.last = now
        frac = ev.done_bytes / ev.total_bytes if ev.total_bytes else 1.0
        sizes = (f"{fmt_bytes(ev.bytes_in)} -> {fmt_bytes(ev.bytes_out)}" if ev.finished
                 else f"{fmt_bytes(ev.bytes_in)} {ev.src_type}")
        eta = f" ETA {ev.eta:.0f}s" if ev.eta is not None and not last_tensor else ""
        text = (f"[{'#' * int(30 * frac):30}] {frac:6.1%} {ev.index:>4}/{ev.total} {ev.name[:36]:36} "
                f"{sizes}{eta}")
        sys.stderr.write(("\r" + text.ljust(118)) if self.tty else text + "\n")
        self.open_line = self.tty
        if last_tensor:
            self.close()
        sys.stderr.flush()

    def converting(self, ev) -> None:
        """A checkpoint being converted to GGUF first: bytes written of the total."""
        now = time.monotonic()
        done = ev.done >= ev.total
        if now - self.last < (0.1 if self.tty else 2.0) and not done:
            return
        self.last = now
        frac = ev.done / ev.total if ev.total else 1.0
        text = f"[{'#' * int(30 * frac):30}] {frac:6.1%} converting to GGUF: {fmt_bytes(ev.done)} of {fmt_bytes(ev.total)}"
        sys.stderr.write(("\r" + text.ljust(118)) if self.tty else text + "\n")
        self.open_line = self.tty
        if done:
            self.close()
        sys.stderr.flush()

    def close(self) -> None:
        """End a redrawn line, so what follows (an error, say) starts on a line of its own."""
        if self.open_line:
            sys.stderr.write("\n")
            self.open_line = False


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the child is killed and the partial file removed."""
    def handler(_signum, _frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_preflight(check) -> None:
    print(f"Quantizing {check.input.name} ({fmt_bytes(check.input_bytes)}) to {check.preset} with "
          f"{check.threads} threads", file=sys.stderr)
    print(f"  needs ~{fmt_bytes(check.ram_needed)} RAM ({fmt_bytes(check.ram_available)} available), "
          f"~{fmt_bytes(check.disk_needed)} disk ({fmt_bytes(check.disk_free)} free), about {check.seconds:.0f} s "
          f"[{check.source}]", file=sys.stderr)


def print_report(report, preset: str) -> None:
    print(f"Quality vs {Path(report.reference).name} on {report.tokens} tokens of the bundled sample text:")
    print(f"  {'KL divergence':18} mean {report.kl_mean:.5f}   p99 {report.kl_p99:.5f}   max {report.kl_max:.5f}")
    print(f"  {'top-1 agreement':18} {report.top1_agreement:.1%}")
    print(f"  {'perplexity':18} {report.ppl_reference:.3f} (source) -> {report.ppl_quantized:.3f} ({preset})")


def cmd_quantize(args: argparse.Namespace) -> int:
    from quantdesk.cli.library import ProgressBar
    from quantdesk.hardware.detect import resolve_hardware
    from quantdesk.library.download import DownloadEvent
    from quantdesk.planning.quantize_cost import Preflight
    from quantdesk.quantize.evaluate import QualityReport
    from quantdesk.quantize.job import Registered, SourceReady, run_job
    from quantdesk.quantize.quantizer import TensorProgress
    from quantdesk.quantize.source import Converting

    from quantdesk.quantize import journal

    for fixed in journal.recover():  # what an earlier, killed job left
        print(f"quantdesk: note: {fixed.sentence()}", file=sys.stderr)
    hardware = resolve_hardware(args.hardware) if args.hardware else None
    download_bar, bar = ProgressBar(), QuantizeProgress()
    registered = report = None
    cancel = threading.Event()
    job = run_job(args.input, args.type, args.output, overwrite=args.force, evaluate_quality=args.eval,
                  eval_tokens=args.eval_tokens, threads=args.threads, hardware=hardware, revision=args.revision,
                  cancel=cancel)
    with _sigterm_as_interrupt():
        try:
            for ev in job:
                if isinstance(ev, DownloadEvent):
                    download_bar.update(ev)
                elif isinstance(ev, Converting):
                    bar.converting(ev)
                elif isinstance(ev, SourceReady) and ev.source.converted_from is not None:
                    print(f"converted {ev.source.converted_from.name} to GGUF ({fmt_bytes(ev.source.path.stat().st_size)}"
                          ", removed once quantized)", file=sys.stderr)
                elif isinstance(ev, SourceReady) and ev.downloaded_from:
                    print(f"using {ev.source.path.name} from {ev.downloaded_from} (sha256 verified)", file=sys.stderr)
                elif isinstance(ev, Preflight) and ev.ok:
                    _print_preflight(ev)
                elif isinstance(ev, TensorProgress):
                    bar.update(ev)
                elif isinstance(ev, Registered):
                    registered = ev
                    bar.close()
                elif isinstance(ev, QualityReport):
                    report = ev
        finally:
            bar.close()
            cancel.set()
            job.close()  # kills the child and removes the partial file unless the job finished
    if registered is None:  # pragma: no cover - the job either registers its result or raises
        raise QuantDeskError("the quantizer ended without a result")
    model, result = registered.model, registered.result
    if args.json:
        out = {"output": str(result.output), "size": result.size, "seconds": round(result.seconds, 3),
               "peak_ram": result.peak_ram, "type": result.preset, "name": model.name, "sha256": model.sha256,
               "source_sha256": model.source_sha256, "peak_anon": result.peak_anon,
               "estimate": result.preflight.to_json()}
        if report is not None:
            out["report"] = report.to_json()
        emit_json(out)
        return 0
    print(f"{result.output}: {fmt_bytes(result.size)} in {result.seconds:.1f} s, peak RAM {fmt_bytes(result.peak_ram)} "
          f"(anonymous {fmt_bytes(result.peak_anon)})")
    print(f"added to the library as {model.name} (sha256 {model.sha256[:16]}…, from {model.source_sha256[:16]}…)")
    if report is not None:
        print_report(report, result.preset)
    return 0


def register(sub: argparse._SubParsersAction, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("quantize", help="quantize an F16/BF16/F32 GGUF (or a Hugging Face checkpoint folder) locally "
                                        "with llama.cpp (Q4_K_M, Q8_0, ...)")
    p.add_argument("input", help="a local .gguf, a library model name, a hub repo id with a full-precision file, or "
                                 "a folder holding a Hugging Face checkpoint (llama/Mistral, SentencePiece tokenizer)")
    p.add_argument("--type", required=True, metavar="TYPE",
                   help="target preset, e.g. Q4_K_M, Q5_K_M, Q6_K, Q8_0, IQ4_XS (an unknown one lists them all)")
    p.add_argument("-o", "--output", default=None,
                   help="output .gguf (default: <library>/quantized/<name>-<TYPE>.gguf)")
    p.add_argument("--threads", type=positive, default=None, help="quantizer threads (default: the Settings choice, else all CPUs)")
    p.add_argument("--eval", action="store_true",
                   help="score the result against its source: KL divergence, top-1 agreement, perplexity")
    p.add_argument("--eval-tokens", type=positive, default=256, metavar="N", help="tokens of sample text for --eval")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--revision", default=None, help="hub revision when INPUT is a repo id")
    add_common(p)
    p.set_defaults(func=cmd_quantize)
