"""Why a download failed, as a kind with its facts — raised by the downloader, stored by the queue,
turned into a sentence and the next step by :func:`explain_failure`.

The kind and the facts (file, hashes, sizes, status) travel as data from the place that knows them;
nothing downstream reads the downloader's English, so rewording a message loses no next step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from quantdesk.base.errors import QuantDeskError


class FailureKind(str, Enum):
    CHECKSUM = "checksum"   # bytes arrived but do not match the hub's SHA-256 (or size)
    DISK = "disk"           # not enough free space before the start, or the disk filled up midway
    NETWORK = "network"     # the connection kept failing: resumable
    ACCESS = "access"       # 401/403: gated or private
    MISSING = "missing"     # 404: the file is no longer on the hub
    BUSY = "busy"           # another writer holds this model's files
    INVALID = "invalid"     # the hub's bytes arrived intact but are not a model the app can read
    OTHER = "other"


class DownloadError(QuantDeskError):
    """A download failure with its kind and facts (``details``), for the queue to store."""

    kind: FailureKind = FailureKind.OTHER

    def __init__(self, message: str, next_step: str | None = None, **details: Any) -> None:
        super().__init__(message, next_step)
        self.details = details


class ChecksumMismatch(DownloadError):
    kind = FailureKind.CHECKSUM       # details: file, expected, actual


class NotEnoughDisk(DownloadError):
    kind = FailureKind.DISK           # details: root, need, margin, free (bytes)


class DiskFilled(DownloadError):
    kind = FailureKind.DISK           # details: filled=True


class GaveUp(DownloadError):
    kind = FailureKind.NETWORK        # details: why


class NotAModel(DownloadError):
    kind = FailureKind.INVALID        # details: file, reason


class AccessDenied(DownloadError):
    kind = FailureKind.ACCESS         # details: status


class NotOnHub(DownloadError):
    kind = FailureKind.MISSING


@dataclass(frozen=True)
class RecordedFailure:
    """What the queue keeps of a failure: its kind, its facts and the message the CLI prints."""

    kind: FailureKind
    details: dict[str, Any]
    text: str


def record_failure(exc: BaseException) -> RecordedFailure:
    if isinstance(exc, DownloadError):
        return RecordedFailure(exc.kind, dict(exc.details), str(exc))
    if isinstance(exc, QuantDeskError):
        from quantdesk.base.file_lock import LockBusy

        kind = FailureKind.BUSY if isinstance(exc, LockBusy) else FailureKind.OTHER
        text = f"{exc} — {exc.next_step}" if exc.next_step else str(exc)
        return RecordedFailure(kind, {}, text)
    return RecordedFailure(FailureKind.OTHER, {}, f"unexpected error: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class DownloadFailure:
    kind: str        # a FailureKind value
    sentence: str    # for people: what happened, without hashes or byte offsets
    next_step: str
    details: str = ""  # the facts behind it (hashes, sizes, the raw reason), shown on request


def _gib(n: Any) -> float:
    return float(n or 0) / 2**30


def explain_failure(failure: RecordedFailure | BaseException, file: str, repo: str) -> DownloadFailure:
    """The sentence and next step for ``failure``; ``file`` and ``repo`` name the download."""
    if isinstance(failure, BaseException):
        failure = record_failure(failure)
    kind, d = FailureKind(failure.kind), failure.details
    if kind is FailureKind.CHECKSUM and d.get("actual"):
        received = (f"; {int(d['received']):,} of {int(d['size']):,} bytes had arrived"
                    if d.get("received") is not None and d.get("size") else "")
        return DownloadFailure(
            kind.value, f"The download of {file} did not match the hub's checksum, so it was deleted and nothing was "
            "added to the library.", "Retry downloads it again; if it fails again, pick another file or publisher.",
            f"Expected SHA-256 {d['expected']}, got {d['actual']}{received}.")
    if kind is FailureKind.INVALID:
        return DownloadFailure(
            kind.value, f"{file} matched the hub's checksum but is not a usable GGUF model, so it was deleted and "
            "nothing was added to the library.",
            "The file on the hub is broken or not a model: pick another file or publisher on Discover.",
            str(d.get("reason", "unreadable header")))
    if kind is FailureKind.CHECKSUM:
        return DownloadFailure(
            kind.value, f"The hub served {file} at another size than it lists; the partial file was deleted and "
            "nothing was added to the library.", "The repo may have changed: plan it again on Discover, or pick "
            "another file.", failure.text)
    if kind is FailureKind.DISK and "need" in d:
        need, margin, free = _gib(d["need"]), _gib(d["margin"]), _gib(d["free"])
        return DownloadFailure(
            kind.value, f"Not enough disk space for {file}: it needs {need:.2f} GiB plus {margin:.2f} GiB to spare "
            f"in {d['root']}, and {free:.2f} GiB is free.",
            f"Free {max(need + margin - free, 0.01):.2f} GiB, or move the models folder to a bigger disk in "
            "Settings, then Retry.")
    if kind is FailureKind.DISK:
        return DownloadFailure(
            kind.value, f"The disk filled up while downloading {file}; what arrived is kept.",
            "Free some space, or move the models folder to a bigger disk in Settings, then Retry: "
            "it resumes where it stopped.")
    if kind is FailureKind.NETWORK:
        return DownloadFailure(
            kind.value, f"The connection to the hub kept failing while downloading {file}; what arrived is kept.",
            "Check the network connection, then Retry: it resumes where it stopped.", str(d.get("why", "")))
    if kind is FailureKind.ACCESS:
        return DownloadFailure(
            kind.value, f"The hub refused access to {repo} ({d.get('status')}); the repository may be gated.",
            "Accept its terms on the hub and set a token (HF_TOKEN or Settings), then Retry.")
    if kind is FailureKind.MISSING:
        return DownloadFailure(kind.value, f"The file {file} is no longer on the hub ({repo}).",
                               "Pick another file of the model on the Discover page.")
    reason = failure.text.strip()
    short = reason.split(";")[0].split(" — ")[0].rstrip(".") if reason else "no reason was recorded"
    return DownloadFailure(kind.value, f"The download of {file} failed ({short}).", "Retry to try again.",
                           reason if reason != short else "")
