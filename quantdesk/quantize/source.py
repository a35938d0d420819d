"""Where a quantization starts and ends: the full-precision input, and the library entry it makes.

An input is a local file, a library model, or a hub repo whose F16/BF16/F32 file is fetched
through the verified downloader first. The result is registered as ``source="quantized"`` with
the input's SHA-256, so the library knows what every quantized file was made from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.model_info import ModelInfo, split_parts
from quantdesk.gguf.quant_presets import FULL_PRECISION
from quantdesk.hub.client import RepoGGUF
from quantdesk.library.index import Library, LibraryModel, sha256_file

# Which full-precision file to fetch when a repo has several: the smallest, most common first.
_PREFERENCE = {"F16": 0, "BF16": 1, "F32": 2}


@dataclass
class QuantizeSource:
    path: Path
    sha256: str | None = None  # known without hashing (library record, verified download)
    repo: str | None = None
    library_name: str | None = None
    converted_from: Path | None = None  # a checkpoint folder this GGUF was converted from (then temporary)


@dataclass(frozen=True)
class Converting:
    """A checkpoint is being converted to GGUF before quantizing: bytes written of the total."""

    done: int
    total: int
    output_bytes: int = 0


def local_source(spec: str, library: Library | None = None) -> QuantizeSource | None:
    """``spec`` as a local file (any part of a split model) or a library model's name; else None."""
    library = library or Library()
    path = Path(spec).expanduser()
    if path.is_dir():
        return None  # a checkpoint folder: checkpoint_source converts it first
    if path.exists():
        first = split_parts(path.absolute())[0]  # the quantizer reads a split model from its first part
        model = library.find(str(first))
        if model is None:
            return QuantizeSource(first)
        return QuantizeSource(first, model.files[0]["sha256"], model.repo, model.name)
    model = library.find(spec)
    if model is not None:
        first = Path(model.files[0]["path"])
        if not first.exists():
            raise QuantDeskError(f"library model '{model.name}' points at {first}, which no longer exists")
        return QuantizeSource(first, model.files[0]["sha256"], model.repo, model.name)
    if spec.lower().endswith(".gguf"):
        raise QuantDeskError(f"no such file: {path}")
    return None


def pick_full_precision(repo_id: str, entries: list[RepoGGUF]) -> RepoGGUF:
    """The repo's F16/BF16/F32 file; a clear error says what the repo has instead."""
    full = [e for e in entries if (e.quant or "").upper() in FULL_PRECISION]
    if not full:
        have = ", ".join(sorted({e.quant or e.name for e in entries})) or "no GGUF files"
        raise QuantDeskError(f"{repo_id} has no full-precision (F16, BF16 or F32) GGUF to quantize from; it has: "
                             f"{have} — download one of those instead")
    return min(full, key=lambda e: (_PREFERENCE.get((e.quant or "").upper(), 9), e.size))


def library_copy(repo_id: str, entry: RepoGGUF, library: Library | None = None) -> QuantizeSource | None:
    """The repo's full-precision file when it was downloaded into the library before."""
    for model in (library or Library()).models():
        if model.repo == repo_id and model.source == "downloaded" and \
                Path(model.files[0]["path"]).name == Path(entry.first).name and Path(model.path).exists():
            return QuantizeSource(Path(model.path), model.files[0]["sha256"], repo_id, model.name)
    return None


def repo_source(repo_id: str, revision: str | None = None, cancel: threading.Event | None = None,
                library: Library | None = None,
                before_download: Callable[[ModelInfo, int], object] | None = None) -> Iterator[object]:
    """Fetch ``repo_id``'s full-precision file (verified) into the library, unless it is there.

    ``before_download(remote model info, bytes to download)`` may refuse (raise) before a byte is
    fetched — the quantize pre-flight. Yields ``DownloadEvent``s; the last item is the source.
    """
    from quantdesk.catalog.refresh import list_and_remember
    from quantdesk.library.download import download_model

    library = library or Library()
    entries = list_and_remember(repo_id, revision)
    entry = pick_full_precision(repo_id, entries)
    have = library_copy(repo_id, entry, library)
    if have is not None:
        yield have
        return
    if before_download is not None:
        from quantdesk.hub.remote_header import remote_model_info

        before_download(remote_model_info(repo_id, entry, revision), entry.size)
    results = []
    for item in download_model(repo_id, entry, revision, cancel):
        if isinstance(item, list):
            results = item
        else:
            yield item
    files = [{"path": str(r.path), "size": r.size, "sha256": r.sha256} for r in results]
    model = library.add(files=files, source="downloaded", repo=repo_id, quant=entry.quant)
    yield QuantizeSource(Path(files[0]["path"]), files[0]["sha256"], repo_id, model.name)


# Working memory of a conversion per element of its largest tensor, and the interpreter: an F32 source
# is widened, copied to F16 and maybe permuted (8 bytes an element; bench/convert.py measured 6), a
# BF16/F16 one only copied (4; measured 2).
CONVERT_RAM_PER_ELEMENT, CONVERT_RAM_PER_ELEMENT_16, CONVERT_RAM_BASE = 8, 4, 256 << 20


def conversion_ram(largest_tensor: int, f32: bool) -> int:
    return largest_tensor * (CONVERT_RAM_PER_ELEMENT if f32 else CONVERT_RAM_PER_ELEMENT_16) + CONVERT_RAM_BASE
# Disk for the converted file and the quantized output beside it (a Q8_0 is 53% of an F16) + margin.
CONVERT_DISK_FACTOR, CONVERT_DISK_MARGIN = 1.6, 256 << 20
# Conversion speed, bytes of checkpoint read per second: bench/convert.py measured 430 MB/s for F32
# (converted to F16) and 1,536 MB/s for BF16 (copied) on 2 cores; the slower one for the estimate.
CONVERT_BYTES_PER_S = 400e6


def with_conversion(check: Any, checkpoint_bytes: int, largest_tensor: int, f32: bool = True) -> Any:
    """A quantize pre-flight that also counts the conversion before it: its time, and its working
    memory when that is the larger (the two never run at once)."""
    import dataclasses

    from quantdesk.base.units import fmt_bytes

    ram = conversion_ram(largest_tensor, f32)
    problems = list(check.problems)
    if ram > check.ram_available:
        problems.append(f"not enough memory to convert the checkpoint: its largest tensor needs about "
                        f"{fmt_bytes(ram)} but only {fmt_bytes(check.ram_available)} is available")
    return dataclasses.replace(check, seconds=check.seconds + checkpoint_bytes / CONVERT_BYTES_PER_S,
                               ram_needed=max(check.ram_needed, ram), problems=problems)


def converted_model_info(plan: Any) -> ModelInfo:
    """What the converted GGUF will look like (from a ``ConversionPlan``): for the quantize pre-flight
    before the conversion has written a byte."""
    from quantdesk.gguf.reader import TensorInfo

    hp, ck = plan.hparams, plan.checkpoint
    tensors, offset = [], 0
    for t in plan.tensor_plan:
        n = int(np.prod(t.shape, dtype=np.int64))
        size = n * (4 if int(t.out_type) == 0 else 2)
        tensors.append(TensorInfo(t.gguf_name, tuple(reversed(t.shape)), int(t.out_type), offset, n, size))
        offset += size
    quant = "BF16" if any(int(t.out_type) == 30 for t in plan.tensor_plan) else "F16"
    n = hp["n_layer"]
    return ModelInfo(
        name=ck.folder.name, architecture=ck.architecture, n_layer=n, n_embd=hp["n_embd"],
        n_head=[hp["n_head"]] * n, n_head_kv=[hp["n_head_kv"]] * n, head_dim_k=hp["head_dim"],
        head_dim_v=hp["head_dim"], n_ff=[hp["n_ff"]] * n, n_vocab=hp["n_vocab"], n_ctx_train=hp["n_ctx"],
        tensors=tensors, file_size=offset, files=[str(ck.folder / f"{ck.folder.name}-{quant}.gguf")], quant=quant,
        chat_template=plan.chat_template, metadata={"quantdesk.source": "checkpoint"})


def checkpoint_source(folder: str | Path, cancel: threading.Event | None = None) -> Iterator[object]:
    """Convert the Hugging Face checkpoint in ``folder`` to a temporary GGUF (checked first: config,
    shards, tokenizer, shapes; then RAM and disk for the conversion and the quantized file beside it).
    Yields ``Converting`` events; the last item is the source (``converted_from`` set)."""
    import shutil

    import psutil

    from quantdesk.base.settings import models_dir
    from quantdesk.base.units import fmt_bytes
    from quantdesk.convert.convert import ConversionResult, ConvertProgress, convert_steps, plan_conversion

    plan = plan_conversion(folder)
    work = models_dir() / ".converting"
    work.mkdir(parents=True, exist_ok=True)
    need_disk = int(plan.output_bytes * CONVERT_DISK_FACTOR) + CONVERT_DISK_MARGIN
    free = shutil.disk_usage(work).free
    if need_disk > free:
        raise QuantDeskError(f"not enough disk space in {work}: converting {plan.checkpoint.folder.name} and "
                             f"quantizing it needs about {fmt_bytes(need_disk)} but only {fmt_bytes(free)} is free")
    need_ram = conversion_ram(plan.largest_tensor, plan.f32_source)
    available = psutil.virtual_memory().available
    if need_ram > available:
        raise QuantDeskError(f"not enough memory to convert {plan.checkpoint.folder.name}: its largest tensor needs "
                             f"about {fmt_bytes(need_ram)} but only {fmt_bytes(available)} is available")
    bf16 = plan.checkpoint.get("torch_dtype", "dtype") == "bfloat16"
    import uuid

    output = work / uuid.uuid4().hex[:12] / f"{plan.checkpoint.folder.name}-{'BF16' if bf16 else 'F16'}.gguf"
    output.parent.mkdir()  # its own folder: two jobs on same-named checkpoints never share a file
    result = None
    for event in convert_steps(plan.checkpoint.folder, output, cancel=cancel):
        if isinstance(event, ConvertProgress):
            yield Converting(event.done, event.total, plan.output_bytes)
        elif isinstance(event, ConversionResult):
            result = event
    assert result is not None
    yield QuantizeSource(result.output, None, None, None, plan.checkpoint.folder)


@dataclass(frozen=True)
class CheckpointOffer:
    """A hub repo with no full-precision GGUF but a checkpoint the converter takes."""

    repo: str
    hf_architecture: str
    weight_bytes: int
    config: dict

    def summary(self) -> str:
        from quantdesk.base.units import fmt_bytes

        return (f"{self.repo} has no GGUF files, but a {self.hf_architecture} checkpoint "
                f"({fmt_bytes(self.weight_bytes)}): QuantDesk can download, convert and quantize it here")


def checkpoint_offer(repo_id: str, revision: str | None = None) -> CheckpointOffer | None:
    """The repo's checkpoint when it is one the converter takes (config.json fetched and verified);
    None when the repo has no checkpoint. An unsupported architecture raises, naming the supported."""
    from quantdesk.convert.checkpoint import architecture_of, parse_json
    from quantdesk.hub.client import list_checkpoint_files
    from quantdesk.library.checkpoint_download import fetch_small_file

    files = list_checkpoint_files(repo_id, revision)
    if not files:
        return None
    config_file = next(f for f in files if f.path == "config.json")
    config = parse_json(fetch_small_file(repo_id, config_file, revision), "config.json")
    arch = architecture_of(config, repo_id)
    weights = sum(f.size for f in files if f.path.endswith(".safetensors"))
    return CheckpointOffer(repo_id, arch, weights, config)


def offer_model_info(offer: CheckpointOffer) -> ModelInfo:
    """The converted GGUF's shape from the repo's config.json alone (the catalog's synthesis, sized to
    the weights): for the pre-flight before a byte of the checkpoint is fetched."""
    from quantdesk.catalog.offline import CatalogFile, CatalogModel, model_info_for

    c = offer.config
    heads = int(c.get("num_attention_heads") or 1)
    from quantdesk.convert.checkpoint import SUPPORTED

    arch = {"architecture": SUPPORTED[offer.hf_architecture], "n_layer": int(c.get("num_hidden_layers") or 0),
            "n_embd": int(c.get("hidden_size") or 0), "n_head": heads,
            "n_head_kv": int(c.get("num_key_value_heads") or heads), "n_ff": int(c.get("intermediate_size") or 0),
            "n_vocab": int(c.get("vocab_size") or 0), "context_length": int(c.get("max_position_embeddings") or 0),
            "head_dim": c.get("head_dim"), "tie_word_embeddings": c.get("tie_word_embeddings")}
    f32 = (c.get("torch_dtype") or c.get("dtype")) in ("float32", None) and offer.weight_bytes > 0
    size = offer.weight_bytes // 2 if f32 else offer.weight_bytes  # F32 weights are written as F16
    name = offer.repo.rsplit("/", 1)[-1]
    model = CatalogModel(offer.repo, None, size // 2, arch, None,
                         [CatalogFile(f"{name}-F16.gguf", "F16", size, None, "hub", None)])
    return model_info_for(model, model.files[0])


def repo_has_checkpoint(repo_id: str, revision: str | None = None) -> bool:
    """Whether the repo holds a Hugging Face checkpoint (config.json at its top); when it has neither
    that nor any GGUF, says so."""
    from quantdesk.catalog.refresh import list_and_remember
    from quantdesk.hub.client import list_checkpoint_files

    if list_checkpoint_files(repo_id, revision):
        return True
    if not list_and_remember(repo_id, revision):
        raise QuantDeskError(f"{repo_id} has neither a full-precision GGUF nor a Hugging Face checkpoint "
                             "(config.json with safetensors weights) to quantize from")
    return False


def has_full_precision_gguf(repo_id: str, revision: str | None = None) -> bool:
    from quantdesk.catalog.refresh import list_and_remember

    return any((e.quant or "").upper() in FULL_PRECISION for e in list_and_remember(repo_id, revision))


def repo_checkpoint_source(repo_id: str, revision: str | None = None,
                           cancel: threading.Event | None = None) -> Iterator[object]:
    """A hub repo holding only a Hugging Face checkpoint: fetched and verified (``DownloadEvent``s),
    then converted (``Converting``); the last item is the source. Disk for the weights, the
    converted file and the quantized one is checked before the first weight byte."""
    import shutil

    from quantdesk.base.units import fmt_bytes
    from quantdesk.library.checkpoint_download import download_checkpoint

    def before_weights(folder: Path, weight_bytes: int) -> None:
        need = weight_bytes + int(weight_bytes * CONVERT_DISK_FACTOR) + CONVERT_DISK_MARGIN
        free = shutil.disk_usage(folder).free
        if need > free:
            raise QuantDeskError(f"not enough disk space in {folder.parent}: {repo_id}'s checkpoint "
                                 f"({fmt_bytes(weight_bytes)}), its conversion and the quantized file need about "
                                 f"{fmt_bytes(need)} but only {fmt_bytes(free)} is free")

    folder = None
    for item in download_checkpoint(repo_id, revision, cancel, before_weights):
        if isinstance(item, Path):
            folder = item
        else:
            yield item
    assert folder is not None
    for item in checkpoint_source(folder, cancel):
        if isinstance(item, QuantizeSource):
            item.repo = repo_id
        yield item


def register_quantized(output: Path, preset: str, source: QuantizeSource,
                       library: Library | None = None) -> LibraryModel:
    """Hash the new file and add it to the library with the input's hash as its origin (a converted
    checkpoint: the converted GGUF's hash, and ``source="converted+quantized"``)."""
    source_sha = source.sha256 or (sha256_file(source.path) if source.path.is_file() else None)
    files: list[dict[str, Any]] = [{"path": str(output), "size": output.stat().st_size, "sha256": sha256_file(output)}]
    kind = "converted+quantized" if source.converted_from is not None else "quantized"
    if source.converted_from is not None:  # the checkpoint it came from: hub repo, commit and file hashes
        import json

        from quantdesk.library.checkpoint_download import PROVENANCE

        try:
            origin = json.loads((source.converted_from / PROVENANCE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            origin = {"folder": str(source.converted_from)}
        files[0]["converted_from"] = origin
    return (library or Library()).add(files=files, source=kind, repo=source.repo, quant=preset,
                                      source_sha256=source_sha)
