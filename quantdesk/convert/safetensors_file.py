"""Reading safetensors files memory-mapped, one tensor at a time, BF16 included.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape, byte
offsets) and the raw data. Read here with numpy rather than the ``safetensors`` package: its numpy
loader refuses BF16 — numpy has no bfloat16 — and BF16 is what most checkpoints ship. A BF16 tensor
comes back as its raw ``uint16`` bits (exact; :func:`as_float32` widens it). Every header entry is
checked against the file's size before any data is touched, so a truncated or lying shard is an
error, never a crash or a read past the end.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantdesk.base.errors import QuantDeskError

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
MAX_HEADER = 100 << 20


class SafetensorsError(QuantDeskError):
    """A shard that is not a readable safetensors file; the message names it."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # "F32", "F16", "BF16", "F64"
    shape: tuple[int, ...]
    start: int  # absolute offsets in the file
    end: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class SafetensorsFile:
    """One shard: its tensor entries, and each tensor's data as a read-only memory-mapped array."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise SafetensorsError(f"{self.path.name} is too short to be a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise SafetensorsError(f"{self.path.name} is not a safetensors file (its header claims {length:,} bytes)")
            try:
                header = json.loads(fh.read(length).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise SafetensorsError(f"{self.path.name} has a damaged header") from None
        if not isinstance(header, dict):
            raise SafetensorsError(f"{self.path.name} has a damaged header")
        base = 8 + length
        self.entries: dict[str, TensorEntry] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            self.entries[name] = self._entry(name, info, base, size)

    def _entry(self, name: str, info: object, base: int, size: int) -> TensorEntry:
        try:
            dtype, shape, (lo, hi) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise SafetensorsError(f"{self.path.name}: the entry for {name} is damaged") from None
        if dtype not in DTYPES:
            raise SafetensorsError(f"{self.path.name}: {name} is {dtype}, which QuantDesk cannot convert "
                                   "(F32, F16 and BF16 are)")
        entry = TensorEntry(name, dtype, shape, base + int(lo), base + int(hi))
        if any(d < 0 for d in shape) or entry.end - entry.start != entry.n_elements * DTYPES[dtype].itemsize:
            raise SafetensorsError(f"{self.path.name}: {name}'s shape {list(shape)} does not match its data")
        if entry.start < base or entry.end > size:
            raise SafetensorsError(f"{self.path.name} is truncated: {name} ends past the end of the file")
        return entry

    def array(self, name: str) -> np.ndarray:
        """The tensor's data, memory-mapped (BF16 as raw uint16 bits)."""
        e = self.entries[name]
        if e.n_elements == 0:
            return np.zeros(e.shape, dtype=DTYPES[e.dtype])
        return np.memmap(self.path, dtype=DTYPES[e.dtype], mode="r", offset=e.start, shape=e.shape)


def as_float32(data: np.ndarray, dtype: str) -> np.ndarray:
    """A tensor widened to float32 (BF16 bits shifted into place: exact)."""
    if dtype == "BF16":
        return (np.asarray(data, dtype=np.uint32) << 16).view(np.float32)
    return np.asarray(data, dtype=np.float32)
