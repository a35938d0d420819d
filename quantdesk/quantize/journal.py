"""What a quantize job leaves if its process is killed, found and put right on the next start.

A job writes a journal entry (``<data>/quantize-jobs/*.json``) once its pre-flight passed and removes
it when the output is in the library, or when it fails or is cancelled (its partial output is
removed then too). An entry still there whose process is gone means that process was killed: its
partial output (``OUT.partial``; the quantizer child removes it itself when it sees its parent die,
this catches the rest) is deleted, and a complete output — killed after the quantizer finished, before
the library heard of it — is checked and adopted into the library as the job would have.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from quantdesk.base.files import write_json_atomic
from quantdesk.base.paths import data_dir
from quantdesk.gguf.reader import GGUFError, read_header
from quantdesk.library.index import Library
from quantdesk.quantize.quantizer import partial_path
from quantdesk.quantize.source import QuantizeSource, register_quantized


@dataclass(frozen=True)
class Recovered:
    output: Path
    action: str  # "adopted" | "removed partial" | "removed damaged output"

    def sentence(self) -> str:
        if self.action == "adopted":
            return (f"a quantize job that was interrupted after it finished left {self.output.name}: "
                    "it is whole and is now in the library")
        return f"a quantize job that was interrupted left {self.output.name}: {self.action}"


def _folder() -> Path:
    return data_dir() / "quantize-jobs"


def _entry(output: Path) -> Path:
    return _folder() / (hashlib.sha256(str(output).encode()).hexdigest()[:16] + ".json")


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - gone, or not ours to see
        return None


def begin(output: Path, preset: str, source: QuantizeSource) -> Path:
    """Record a job about to write ``output``; returns the entry to pass to :func:`end`."""
    entry = _entry(output)
    entry.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(entry, {"output": str(output), "preset": preset, "pid": os.getpid(),
                              "pid_started": _process_start(os.getpid()),
                              "source": {"path": str(source.path), "sha256": source.sha256, "repo": source.repo,
                                         "library_name": source.library_name}})
    return entry


def end(entry: Path) -> None:
    entry.unlink(missing_ok=True)


def recover(library: Library | None = None) -> list[Recovered]:
    """Put right what killed jobs left; entries of jobs still running are left alone."""
    found: list[Recovered] = []
    folder = _folder()
    if not folder.is_dir():
        return found
    for entry in sorted(folder.glob("*.json")):
        try:
            job = json.loads(entry.read_text(encoding="utf-8"))
            output = Path(job["output"])
        except (OSError, ValueError, KeyError, TypeError):
            entry.unlink(missing_ok=True)
            continue
        started = job.get("pid_started")
        if started is not None and _process_start(int(job.get("pid", 0))) == started:
            continue  # its process is alive: the job is running
        partial = partial_path(output)
        if partial.exists():
            partial.unlink(missing_ok=True)
            found.append(Recovered(output, "its partial output was removed"))
        if output.is_file() and (library or Library()).find(str(output)) is None:
            found.append(_adopt(output, job, library))
        entry.unlink(missing_ok=True)
    return found


def _adopt(output: Path, job: dict, library: Library | None) -> Recovered:
    try:
        if not read_header(output).tensors:
            raise GGUFError("no tensors")
    except GGUFError:
        output.unlink(missing_ok=True)
        return Recovered(output, "its unreadable output was removed")
    src = job.get("source") or {}
    source = QuantizeSource(Path(src.get("path", "")), src.get("sha256"), src.get("repo"), src.get("library_name"))
    if source.sha256 is None and not source.path.is_file():
        source = QuantizeSource(source.path, "", source.repo, source.library_name)  # origin unknown now
    register_quantized(output, str(job.get("preset") or ""), source, library)
    return Recovered(output, "adopted")
