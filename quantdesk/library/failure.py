"""Why a download failed, as a sentence and the next step, from the error the queue recorded.

The queue keeps a failure as the downloader's own message (that is what the CLI prints); the app
needs to tell a checksum mismatch from a full disk or a dead network to say what to do next.
The patterns follow ``downloader``'s messages; anything else keeps its text and offers a retry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CHECKSUM = re.compile(r"checksum mismatch for (?P<file>.+?): expected sha256 (?P<expected>\w+), got (?P<actual>\w+)")
_NO_SPACE = re.compile(r"not enough disk space in (?P<root>.+?): the download needs (?P<need>[\d.]+) GiB "
                       r"\(\+(?P<margin>[\d.]+) GiB margin\) but only (?P<free>[\d.]+) GiB is free")
_DISK_FILLED = re.compile(r"the disk filled up during the download")
_GAVE_UP = re.compile(r"giving up after \d+ tries \((?P<why>[^)]*)\)")
_DENIED = re.compile(r"access denied \((?P<status>\d+)\)")
_NOT_FOUND = re.compile(r"not found on the hub")


@dataclass(frozen=True)
class DownloadFailure:
    kind: str        # checksum | disk | network | access | missing | other
    sentence: str
    next_step: str


def explain_failure(error: str, file: str, repo: str) -> DownloadFailure:
    """``error`` as recorded for the job; ``file`` and ``repo`` name the download in the sentence."""
    if m := _CHECKSUM.search(error):
        return DownloadFailure(
            "checksum", f"Checksum mismatch for {file}: expected SHA-256 {m['expected']}, got {m['actual']}. "
            "The damaged file was deleted and nothing was added to the library.",
            "Retry downloads it again; if it fails again, pick another file or publisher.")
    if m := _NO_SPACE.search(error):
        short = float(m["need"]) + float(m["margin"]) - float(m["free"])
        return DownloadFailure(
            "disk", f"Not enough disk space for {file}: it needs {m['need']} GiB plus {m['margin']} GiB to spare "
            f"in {m['root']}, and {m['free']} GiB is free.",
            f"Free {max(short, 0.01):.2f} GiB, or move the models folder to a bigger disk in Settings, then Retry.")
    if _DISK_FILLED.search(error):
        return DownloadFailure(
            "disk", f"The disk filled up while downloading {file}; what arrived is kept.",
            "Free some space, or move the models folder to a bigger disk in Settings, then Retry: "
            "it resumes where it stopped.")
    if m := _GAVE_UP.search(error):
        return DownloadFailure(
            "network", f"The connection to the hub kept failing while downloading {file} ({m['why']}).",
            "Check the network connection, then Retry: it resumes where it stopped.")
    if m := _DENIED.search(error):
        return DownloadFailure(
            "access", f"The hub refused access to {repo} ({m['status']}); the repository may be gated.",
            "Accept its terms on the hub and set a token (HF_TOKEN or Settings), then Retry.")
    if _NOT_FOUND.search(error):
        return DownloadFailure("missing", f"The file {file} is no longer on the hub ({repo}).",
                               "Pick another file of the model on the Discover page.")
    text = f"The download of {file} failed: {error.strip() or 'no reason was recorded'}"
    return DownloadFailure("other", text if text.endswith((".", "!", "?")) else text + ".",
                           "Retry to try again; a partial file, if any, is kept and resumed.")
