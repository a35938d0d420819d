"""A defensive GGUF header parser that works on a byte prefix of the file.

Why our own parser: it must (a) parse from the first megabytes of a *remote* file and say how
many more bytes it needs, and (b) treat every count and length as hostile — checked against the
bytes that can still follow before anything is allocated — so a corrupt or malicious header is a
clear ``GGUFError``, never a hang or a multi-gigabyte allocation. Quant block sizes come from
llama.cpp's own ``gguf`` package so new tensor types arrive with its upgrades.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from quantdesk.base.errors import QuantDeskError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_KEY_LEN = 65_536
# Arrays longer than this keep only their length and element type (vocabularies, merges):
# the planner needs their size, not their contents.
KEEP_ARRAY_ITEMS = 1024

# value type id -> (struct code, byte size); 8 = string, 9 = array
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4),
    6: ("f", 4), 7: ("?", 1), 10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}
_STRING, _ARRAY = 8, 9



def _ggml_types():
    """gguf's type enum, imported on first use: the gguf package pulls numpy in (slow at start-up)."""
    from gguf import GGMLQuantizationType

    return GGMLQuantizationType


def _ggml_sizes():
    from gguf import GGML_QUANT_SIZES

    return GGML_QUANT_SIZES


class GGUFError(QuantDeskError):
    """The bytes are not a usable GGUF file; the message says why."""


class NeedMoreData(Exception):
    """Internal: the prefix ended before the header did; ``needed`` bytes would be enough."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


@dataclass(frozen=True)
class ArrayInfo:
    """A long metadata array summarized by type and length (contents not kept)."""

    item_type: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # relative to the data section start
    n_elements: int
    n_bytes: int

    @property
    def type_name(self) -> str:
        try:
            return _ggml_types()(self.type_id).name
        except ValueError:
            return f"type{self.type_id}"


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    header_size: int  # bytes up to the data section (alignment padding included)
    file_size: int | None
    big_endian: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def alignment(self) -> int:
        return int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


def tensor_nbytes(type_id: int, shape: tuple[int, ...], name: str = "?") -> int:
    try:
        block, size = _ggml_sizes()[_ggml_types()(type_id)]
    except (ValueError, KeyError):
        raise GGUFError(f"tensor '{name}' has unknown type {type_id} (newer than this QuantDesk?)") from None
    n = 1
    for d in shape:
        n *= d
    if shape and shape[0] % block:
        raise GGUFError(f"tensor '{name}' row of {shape[0]} is not a multiple of its block size {block}")
    return n // block * size


class _Cursor:
    """Reads from a prefix of a file, checking every length against what can exist."""

    def __init__(self, data: bytes | memoryview, file_size: int | None, endian: str) -> None:
        self.buf = memoryview(data)
        self.pos = 0
        self.limit = file_size if file_size is not None else len(data)
        self.endian = endian

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > self.limit:
            raise GGUFError(f"header is truncated or corrupt: {what} runs past the end of the file "
                            f"(needs byte {end:,}, file has {self.limit:,})")
        if end > len(self.buf):
            raise NeedMoreData(end)

    def scalar(self, code: str, size: int, what: str) -> Any:
        self.need(size, what)
        value = struct.unpack_from(self.endian + code, self.buf, self.pos)[0]
        self.pos += size
        return value

    def u32(self, what: str) -> int:
        return self.scalar("I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("Q", 8, what)

    def string(self, what: str, max_len: int | None = None) -> str:
        n = self.u64(f"length of {what}")
        if max_len is not None and n > max_len:
            raise GGUFError(f"header is corrupt: {what} claims {n:,} bytes")
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def skip_strings(self, count: int, what: str) -> None:
        buf, unpack, pos, fmt = self.buf, struct.unpack_from, self.pos, self.endian + "Q"
        for _ in range(count):
            self.pos = pos
            self.need(8, what)
            n = unpack(fmt, buf, pos)[0]
            self.pos = pos + 8
            self.need(n, what)
            pos += 8 + n
        self.pos = pos


def _read_value(cur: _Cursor, type_id: int, key: str, depth: int = 0) -> Any:
    if type_id in _SCALARS:
        code, size = _SCALARS[type_id]
        return cur.scalar(code, size, f"value of '{key}'")
    if type_id == _STRING:
        return cur.string(f"value of '{key}'")
    if type_id != _ARRAY or depth > 0:
        raise GGUFError(f"header is corrupt: '{key}' has unknown value type {type_id}")
    item_type = cur.u32(f"array type of '{key}'")
    length = cur.u64(f"array length of '{key}'")
    if item_type in _SCALARS:
        code, size = _SCALARS[item_type]
        if length > (cur.limit - cur.pos) // size:
            raise GGUFError(f"header is corrupt: array '{key}' claims {length:,} items, more than the file holds")
        if length <= KEEP_ARRAY_ITEMS:
            cur.need(size * length, f"array '{key}'")
            values = list(struct.unpack_from(f"{cur.endian}{length}{code}", cur.buf, cur.pos))
            cur.pos += size * length
            return values
        cur.need(size * length, f"array '{key}'")
        cur.pos += size * length
        return ArrayInfo(item_type, length)
    if item_type == _STRING:
        if length > (cur.limit - cur.pos) // 8:
            raise GGUFError(f"header is corrupt: array '{key}' claims {length:,} strings, more than the file holds")
        if length <= KEEP_ARRAY_ITEMS:
            return [cur.string(f"item of '{key}'") for _ in range(length)]
        cur.skip_strings(length, f"array '{key}'")
        return ArrayInfo(item_type, length)
    raise GGUFError(f"header is corrupt: array '{key}' has unsupported item type {item_type}")


def parse_header(data: bytes | memoryview, file_size: int | None = None) -> GGUFHeader:
    """Parse a GGUF header from ``data``, a prefix of a file of ``file_size`` bytes.

    Raises ``NeedMoreData`` when the prefix is too short but the file may hold the rest, and
    ``GGUFError`` for anything that is not a valid header.
    """
    if file_size is not None and file_size < 24:
        raise GGUFError(f"not a GGUF file: only {file_size} bytes")
    if len(data) < 24:
        if file_size is None or len(data) >= file_size:
            raise GGUFError("not a GGUF file: too short")
        raise NeedMoreData(24)
    if bytes(data[:4]) != MAGIC:
        raise GGUFError("not a GGUF file (the first bytes are not 'GGUF')")
    endian = "<"
    version = struct.unpack_from("<I", data, 4)[0]
    if version & 0xFFFF == 0 and version >> 16:  # a big-endian file reads as a huge number
        endian, version = ">", struct.unpack_from(">I", data, 4)[0]
    if version == 1:
        raise GGUFError("GGUF version 1 is obsolete; convert the model again with a current llama.cpp")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    cur = _Cursor(data, file_size, endian)
    cur.pos = 8
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    # every metadata entry takes >= 13 bytes and every tensor info >= 24: reject absurd counts early
    if n_kv * 13 > cur.limit or n_tensors * 24 > cur.limit:
        raise GGUFError(f"header is truncated or corrupt: {n_kv:,} metadata entries / {n_tensors:,} tensors "
                        f"cannot fit in a file of {cur.limit:,} bytes")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key", MAX_KEY_LEN)
        type_id = cur.u32(f"type of '{key}'")
        metadata[key] = _read_value(cur, type_id, key)
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = cur.string("tensor name", MAX_KEY_LEN)
        n_dims = cur.u32(f"dimensions of tensor '{name}'")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"header is corrupt: tensor '{name}' has {n_dims} dimensions")
        shape = tuple(cur.u64(f"shape of tensor '{name}'") for _ in range(n_dims))
        n_elements = 1
        for d in shape:
            if d == 0 or d > 1 << 40:
                raise GGUFError(f"header is corrupt: tensor '{name}' has shape {shape}")
            n_elements *= d
        if n_elements > 1 << 48:
            raise GGUFError(f"header is corrupt: tensor '{name}' has {n_elements:,} elements")
        type_id = cur.u32(f"type of tensor '{name}'")
        offset = cur.u64(f"offset of tensor '{name}'")
        tensors.append(TensorInfo(name, shape, type_id, offset, n_elements, tensor_nbytes(type_id, shape, name)))
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT) or DEFAULT_ALIGNMENT)
    if alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"header is corrupt: alignment {alignment} is not a power of two")
    header_size = (cur.pos + alignment - 1) // alignment * alignment
    if file_size is not None:
        for t in tensors:
            if header_size + t.offset + t.n_bytes > file_size:
                raise GGUFError(f"file is truncated: tensor '{t.name}' ends at byte "
                                f"{header_size + t.offset + t.n_bytes:,} but the file has {file_size:,} "
                                "(an incomplete download?)")
    return GGUFHeader(version, metadata, tensors, header_size, file_size, endian == ">")


# Reading grows the prefix geometrically: most headers fit in the first 1 MiB, big vocabularies
# (Llama 3, Gemma, Qwen) in a few MiB; the cap keeps a hostile file from making us read gigabytes.
FIRST_READ = 1 << 20
MAX_HEADER_BYTES = 512 << 20


def read_header_with(read_range: Callable[[int, int], bytes], file_size: int, what: str) -> GGUFHeader:
    """Parse a header by asking ``read_range(start, end_exclusive)`` for growing prefixes."""
    data = b""
    want = min(FIRST_READ, file_size)
    while True:
        if want > len(data):
            data += read_range(len(data), want)
        try:
            return parse_header(data, file_size)
        except NeedMoreData as more:
            if len(data) >= MAX_HEADER_BYTES:
                raise GGUFError(f"{what}: header larger than {MAX_HEADER_BYTES >> 20} MiB; refusing to read on") from None
            want = min(file_size, MAX_HEADER_BYTES, max(more.needed, len(data) * 4))


def read_header(path: str | Path) -> GGUFHeader:
    """Read the header of a local GGUF file (only the bytes the header needs)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a pipe (opening one waits forever) or a device
        raise GGUFError(f"{path.name} is not a regular file, so it is not a model")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            def read_range(start: int, end: int) -> bytes:
                fh.seek(start)
                return fh.read(end - start)

            return read_header_with(read_range, size, str(path))
    except GGUFError as exc:
        raise GGUFError(f"{path.name}: {exc}") from None
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror or exc}") from None
