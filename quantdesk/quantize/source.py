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


def local_source(spec: str, library: Library | None = None) -> QuantizeSource | None:
    """``spec`` as a local file (any part of a split model) or a library model's name; else None."""
    library = library or Library()
    path = Path(spec).expanduser()
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


def register_quantized(output: Path, preset: str, source: QuantizeSource,
                       library: Library | None = None) -> LibraryModel:
    """Hash the new file and add it to the library with the input's hash as its origin."""
    source_sha = source.sha256 or (sha256_file(source.path) if source.path.is_file() else None)
    files = [{"path": str(output), "size": output.stat().st_size, "sha256": sha256_file(output)}]
    return (library or Library()).add(files=files, source="quantized", repo=source.repo, quant=preset,
                                      source_sha256=source_sha)
