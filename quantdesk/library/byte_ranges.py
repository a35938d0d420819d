"""Which bytes of a partial download are on disk: a set of ranges, kept beside the partial file.

Parallel connections write a file out of order, so its length no longer says how much arrived. The
ranges written so far live in ``<file>.part.ranges`` (JSON, replaced atomically, saved only after the
file's data was flushed), so a killed download resumes with exactly the ranges still missing. A
partial without that file was written in order (one stream): every byte up to its length is there.
"""

from __future__ import annotations

import bisect
import json
import os
from pathlib import Path

from quantdesk.base.files import write_json_atomic


class ByteRanges:
    """Disjoint, sorted, half-open ``[start, end)`` spans of a file of ``size`` bytes."""

    def __init__(self, size: int, spans: list[tuple[int, int]] | None = None) -> None:
        self.size = size
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in spans or []:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        start, end = max(0, start), min(self.size, end)
        if end <= start:
            return
        # Every span touching or overlapping [start, end) merges into one.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends))

    def done(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def prefix(self) -> int:
        """How many bytes from the start are there without a gap."""
        return self._ends[0] if self._starts and self._starts[0] == 0 else 0

    def complete(self) -> bool:
        return self.prefix() >= self.size

    def missing(self) -> list[tuple[int, int]]:
        gaps, pos = [], 0
        for start, end in zip(self._starts, self._ends):
            if start > pos:
                gaps.append((pos, start))
            pos = end
        if pos < self.size:
            gaps.append((pos, self.size))
        return gaps

    def copy(self) -> "ByteRanges":
        return ByteRanges(self.size, self.spans())


def state_path(part_file: Path) -> Path:
    return part_file.with_name(part_file.name + ".ranges")


def load_ranges(part_file: Path, size: int) -> ByteRanges:
    """What of ``part_file`` is on disk: its saved ranges, or its length when it was written in order.

    A state file that is unreadable or belongs to another size counts for nothing (the bytes are
    fetched again); spans past the file's length are dropped (their data never reached the disk).
    """
    try:
        length = part_file.stat().st_size
    except OSError:
        return ByteRanges(size)
    state = state_path(part_file)
    if not state.exists():
        return ByteRanges(size, [(0, min(length, size))])
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))
        if saved.get("size") != size:
            return ByteRanges(size)
        return ByteRanges(size, [(int(s), min(int(e), length)) for s, e in saved["spans"]])
    except (OSError, ValueError, KeyError, TypeError):
        return ByteRanges(size)


def save_ranges(part_file: Path, ranges: ByteRanges) -> None:
    """Record ``ranges`` (call only once their bytes were flushed to disk)."""
    write_json_atomic(state_path(part_file), {"size": ranges.size, "spans": ranges.spans()})


def remove_partial(part_file: Path) -> None:
    """Delete a partial download and its ranges."""
    part_file.unlink(missing_ok=True)
    state_path(part_file).unlink(missing_ok=True)


def fdatasync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)
