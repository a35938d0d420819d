"""A quantize job from any source to a library entry and its quality report: what the CLI and the
app both run.

``check_job`` is the pre-flight for a source as the user typed it: a library model, a local file,
or a hub repo (then from its remote header, nothing downloaded). ``run_job`` runs the job as one
generator of typed events: download (repo), quantize, register in the library, evaluate.
Cancel (a ``threading.Event``) or leaving the generator stops whichever step is running.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.quant_presets import FULL_PRECISION
from quantdesk.hardware.machine import Hardware
from quantdesk.library.download import DownloadEvent
from quantdesk.library.index import LibraryModel
from quantdesk.planning.plan import REPO_ID_RE
from quantdesk.planning.quantize_cost import Preflight
from quantdesk.quantize import journal
from quantdesk.quantize.evaluate import DEFAULT_TOKENS, QualityReport, eval_problem, eval_ram_needed, evaluate
from quantdesk.quantize.quantizer import (
    QuantizeResult,
    Started,
    TensorProgress,
    precheck_download,
    preflight_download,
    prepare,
    quantize,
)
from quantdesk.convert.checkpoint import is_checkpoint_folder
from quantdesk.quantize.source import (
    Converting,
    QuantizeSource,
    checkpoint_offer,
    checkpoint_source,
    converted_model_info,
    offer_model_info,
    has_full_precision_gguf,
    repo_checkpoint_source,
    repo_has_checkpoint,
    with_conversion,
    library_copy,
    local_source,
    pick_full_precision,
    register_quantized,
    repo_source,
)


@dataclass(frozen=True)
class JobCheck:
    """The pre-flight of a job, with where its input comes from."""

    kind: str                 # "library" | "file" | "repo" (to be downloaded first) | "checkpoint" (converted first)
    label: str                # the input as a person knows it
    preflight: Preflight
    download_bytes: int = 0   # the full-precision file still to fetch
    eval_ram: int | None = None  # RAM the quality evaluation needs, when asked for
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True)
class SourceReady:
    """The input is local now; ``downloaded_from`` names the repo when it came from the hub."""

    source: QuantizeSource
    downloaded_from: str | None


@dataclass(frozen=True)
class Registered:
    model: LibraryModel
    result: QuantizeResult


@dataclass(frozen=True)
class Evaluating:
    tokens: int


JobEvent = (SourceReady | DownloadEvent | Converting | Preflight | Started | TensorProgress | QuantizeResult
            | Registered | Evaluating | QualityReport)


def _not_a_source(spec: str) -> QuantDeskError:
    return QuantDeskError(f"'{spec}' is not a file, a library model or a hub repo id (owner/name)")


def check_job(spec: str, preset_name: str, output: str | Path | None = None, *, overwrite: bool = False,
              evaluate_quality: bool = False, eval_tokens: int = DEFAULT_TOKENS, threads: int | None = None,
              hardware: Hardware | None = None, revision: str | None = None) -> JobCheck:
    """Everything knowable before the job starts; raises for an input or type that cannot be used at all."""
    if is_checkpoint_folder(spec):
        from quantdesk.convert.convert import plan_conversion

        plan = plan_conversion(spec)  # a checkpoint the converter cannot take is refused here, in its words
        info = converted_model_info(plan)
        # the converted file sits beside the quantized one until the job ends: it counts against the disk
        check = preflight_download(info, preset_name, output, plan.output_bytes, threads=threads, hardware=hardware)
        check = with_conversion(check, plan.checkpoint.weight_bytes, plan.largest_tensor, plan.f32_source)
        need = eval_ram_needed(info, eval_tokens) if evaluate_quality else None
        return _verdict("checkpoint", f"{plan.checkpoint.folder.name} (a {plan.checkpoint.hf_architecture} checkpoint,"
                        " converted first)", check, 0, need)
    source = local_source(spec)
    if source is None:
        if not REPO_ID_RE.match(spec):
            raise _not_a_source(spec)
        from quantdesk.catalog.refresh import list_and_remember
        from quantdesk.hub.remote_header import remote_model_info

        entries = list_and_remember(spec, revision)
        if not any((e.quant or "").upper() in FULL_PRECISION for e in entries):
            offer = checkpoint_offer(spec, revision)
            if offer is not None:  # a Hugging Face checkpoint: downloaded and converted first
                info = offer_model_info(offer)
                check = preflight_download(info, preset_name, output, offer.weight_bytes + info.file_size,
                                           threads=threads, hardware=hardware)
                largest = max((t.n_elements for t in info.tensors), default=0)
                f32 = (offer.config.get("torch_dtype") or offer.config.get("dtype")) in ("float32", None)
                check = with_conversion(check, offer.weight_bytes, largest, f32)
                need = eval_ram_needed(info, eval_tokens) if evaluate_quality else None
                return _verdict("checkpoint-repo", f"{spec} (a {offer.hf_architecture} checkpoint, downloaded and "
                                "converted first)", check, offer.weight_bytes, need)
        entry = pick_full_precision(spec, entries)
        source = library_copy(spec, entry)
        if source is None:
            info = remote_model_info(spec, entry, revision)
            check = preflight_download(info, preset_name, output, entry.size, threads=threads, hardware=hardware)
            if check.output.exists() and not overwrite:
                raise QuantDeskError(f"{check.output} already exists", "Choose another output file (-o), or replace "
                                     "it (--force; on the Quantize page, “Replace the output file”).")
            need = eval_ram_needed(info, eval_tokens) if evaluate_quality else None
            return _verdict("repo", f"{spec}: {entry.name}", check, entry.size, need)
    check = prepare(source.path, preset_name, output, threads=threads, hardware=hardware, overwrite=overwrite)[2]
    need = eval_ram_needed(source.path, eval_tokens) if evaluate_quality else None
    kind, label = ("library", source.library_name) if source.library_name else ("file", source.path.name)
    return _verdict(kind, label, check, 0, need)


def _verdict(kind: str, label: str, check: Preflight, download: int, eval_ram: int | None) -> JobCheck:
    problems = list(check.problems)
    if eval_ram is not None and (problem := eval_problem(eval_ram, check.ram_available)):
        problems.append(problem)
    return JobCheck(kind, label, check, download, eval_ram, problems)


def run_job(spec: str, preset_name: str, output: str | Path | None = None, *, overwrite: bool = False,
            evaluate_quality: bool = False, eval_tokens: int = DEFAULT_TOKENS, threads: int | None = None,
            hardware: Hardware | None = None, revision: str | None = None,
            cancel: threading.Event | None = None) -> Iterator[JobEvent]:
    """Run the job; the events end with ``Registered`` (and a ``QualityReport`` when evaluating).
    A checkpoint folder is converted to a temporary GGUF first (``Converting`` events), removed at
    the end."""
    source = local_source(spec)
    from_repo = (source is None and bool(REPO_ID_RE.match(spec)) and not has_full_precision_gguf(spec, revision)
                 and repo_has_checkpoint(spec, revision))  # else: the repo's own listing says what it has
    if is_checkpoint_folder(spec) or from_repo:
        _refuse_existing_output(spec, preset_name, output, overwrite)  # before any download or conversion
        converted: QuantizeSource | None = None
        steps = repo_checkpoint_source(spec, revision, cancel) if from_repo else checkpoint_source(spec, cancel)
        try:
            for item in steps:
                if isinstance(item, QuantizeSource):
                    converted = item
                else:
                    yield item
            assert converted is not None
            yield SourceReady(converted, spec if from_repo else None)
            yield from _quantize_source(converted, preset_name, output, overwrite, evaluate_quality, eval_tokens,
                                        threads, hardware, cancel)
            if from_repo and converted.converted_from is not None:  # done: the checkpoint is not kept
                shutil.rmtree(converted.converted_from, ignore_errors=True)
        finally:
            if converted is not None:  # the converted file and the folder it had to itself
                converted.path.unlink(missing_ok=True)
                shutil.rmtree(converted.path.parent, ignore_errors=True)
        return
    if source is None:
        if not REPO_ID_RE.match(spec):
            raise _not_a_source(spec)

        def before_download(info, download_bytes: int) -> None:
            precheck_download(info, preset_name, output, download_bytes, threads=threads, hardware=hardware)

        for item in repo_source(spec, revision, cancel=cancel, before_download=before_download):
            if isinstance(item, QuantizeSource):
                source = item
            else:
                yield item
        assert source is not None  # repo_source ends with the source or raises
        yield SourceReady(source, spec)
    else:
        yield SourceReady(source, None)
    yield from _quantize_source(source, preset_name, output, overwrite, evaluate_quality, eval_tokens, threads,
                                hardware, cancel)


def _refuse_existing_output(spec: str, preset_name: str, output: str | Path | None, overwrite: bool) -> None:
    """The quantized file a checkpoint job would write, refused now if it exists (the quantizer's own
    check comes only after the download and the conversion)."""
    from quantdesk.base.settings import models_dir
    from quantdesk.gguf.quant_presets import resolve_preset

    preset = resolve_preset(preset_name)
    name = Path(spec).expanduser().name if is_checkpoint_folder(spec) else spec.rsplit("/", 1)[-1]
    target = Path(output).expanduser().absolute() if output else models_dir() / "quantized" / f"{name}-{preset.name}.gguf"
    if target.exists() and not overwrite:
        raise QuantDeskError(f"{target} already exists", "Choose another output file (-o), or replace it (--force; on "
                             "the Quantize page, “Replace the output file”).")


def _quantize_source(source: QuantizeSource, preset_name: str, output: str | Path | None, overwrite: bool,
                     evaluate_quality: bool, eval_tokens: int, threads: int | None, hardware: Hardware | None,
                     cancel: threading.Event | None) -> Iterator[JobEvent]:
    result = None
    entry = None  # the journal entry: what a killed run leaves is put right on the next start
    job = quantize(source.path, preset_name, output, threads=threads, hardware=hardware, cancel=cancel,
                   overwrite=overwrite)
    try:
        for event in job:
            if isinstance(event, Preflight) and event.ok:
                if evaluate_quality:
                    problem = eval_problem(eval_ram_needed(source.path, eval_tokens), event.ram_available)
                    if problem:
                        raise QuantDeskError(problem)
                entry = journal.begin(event.output, preset_name, source)
            if isinstance(event, QuantizeResult):
                result = event
            yield event
        if result is None:  # pragma: no cover - quantize() either yields a result or raises
            raise QuantDeskError("the quantizer ended without a result")
        registered = register_quantized(result.output, result.preset, source)
    finally:
        job.close()  # kills the child and removes the partial output unless the job finished
        if entry is not None:
            journal.end(entry)
    yield Registered(registered, result)
    if evaluate_quality:
        yield Evaluating(eval_tokens)
        yield evaluate(source.path, result.output, n_tokens=eval_tokens, threads=threads, cancel=cancel)
