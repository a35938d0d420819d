import random
import struct
import time

import pytest

from quantdesk.gguf.model_info import load_model_info
from quantdesk.gguf.reader import GGUFError, NeedMoreData, parse_header, read_header, read_header_with
from tests.support import gguf_factory as factory


def test_reads_a_generated_model(tiny_model):
    h = read_header(tiny_model)
    assert h.version == 3
    assert h.metadata["general.architecture"] == "llama"
    names = {t.name for t in h.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names
    # the data section ends exactly at the end of the file
    last = max(h.tensors, key=lambda t: t.offset)
    assert h.header_size + last.offset + last.n_bytes == tiny_model.stat().st_size


def test_model_info_fields(tiny_model):
    info = load_model_info(tiny_model)
    shape = factory.TINY
    assert (info.architecture, info.n_layer, info.n_embd) == ("llama", shape.n_layer, shape.n_embd)
    assert info.n_head == [shape.n_head] * shape.n_layer
    assert info.n_head_kv == [shape.n_head_kv] * shape.n_layer
    assert info.n_vocab == shape.n_vocab and info.n_ctx_train == shape.n_ctx_train
    assert info.head_dim_k == shape.n_embd // shape.n_head
    assert info.quant == "F16"
    assert "im_start" in info.chat_template
    expected_params = sum(int(__import__("math").prod(ne)) for _, ne in factory.tensor_shapes(shape))
    assert info.n_params == expected_params


def test_header_only_8b_matches_the_published_size(llama8b_q4):
    info = load_model_info(llama8b_q4)
    assert info.n_params == 8_030_261_248  # Llama-3-8B
    assert 4.5 < info.weight_bytes / 2**30 < 4.7  # 4.58 GiB in llama.cpp's preset table
    assert 4.8 < info.bits_per_weight < 5.0


def test_truncated_file_is_a_clear_error(tiny_model, tmp_path):
    data = tiny_model.read_bytes()
    for cut in (3, 20, 100, 5000, len(data) - 10):
        broken = tmp_path / f"cut{cut}.gguf"
        broken.write_bytes(data[:cut])
        with pytest.raises(GGUFError) as err:
            read_header(broken)
        assert "truncated" in str(err.value) or "too short" in str(err.value) or "only" in str(err.value)


def test_not_gguf(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(GGUFError, match="not a GGUF"):
        read_header(path)


def _header(n_tensors: int, n_kv: int, body: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body


def test_absurd_counts_fail_fast_without_allocating():
    data = _header(2**62, 2**62) + b"\0" * 64
    t0 = time.perf_counter()
    with pytest.raises(GGUFError, match="cannot fit"):
        parse_header(data, len(data))
    assert time.perf_counter() - t0 < 0.5


def test_absurd_string_and_array_lengths():
    key = struct.pack("<Q", 3) + b"abc"
    huge_string = _header(0, 1, key + struct.pack("<I", 8) + struct.pack("<Q", 2**60))
    with pytest.raises(GGUFError, match="past the end"):
        parse_header(huge_string + b"\0" * 32, len(huge_string) + 32)
    huge_array = _header(0, 1, key + struct.pack("<IIQ", 9, 4, 2**61))
    with pytest.raises(GGUFError, match="more than the file holds"):
        parse_header(huge_array, len(huge_array))


def test_prefix_reader_asks_for_more_bytes(tiny_model):
    data = tiny_model.read_bytes()
    with pytest.raises(NeedMoreData):
        parse_header(data[:2000], len(data))
    calls = []

    def read_range(start, end):
        calls.append((start, end))
        return data[start:end]

    h = read_header_with(read_range, len(data), "tiny")
    assert len(h.tensors) == len(factory.tensor_shapes(factory.TINY))
    assert calls[0][0] == 0 and all(a[1] == b[0] for a, b in zip(calls, calls[1:]))  # contiguous growth


def test_fuzzed_headers_never_crash_or_hang(tiny_model):
    """Random byte flips and cuts in the header: a GGUFError or a parse, never anything else."""
    data = bytearray(tiny_model.read_bytes())
    header_len = read_header(tiny_model).header_size
    rng = random.Random(1234)
    t0 = time.perf_counter()
    outcomes = {"ok": 0, "error": 0}
    for _ in range(600):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(4, header_len)
            mutated[pos] = rng.randrange(256)
        if rng.random() < 0.3:
            mutated = mutated[: rng.randrange(len(mutated))]
        try:
            parse_header(bytes(mutated), len(mutated))
            outcomes["ok"] += 1
        except GGUFError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50
    assert time.perf_counter() - t0 < 60


def test_split_model_is_one_model(tmp_path):
    """Two parts written as llama.cpp's gguf-split does: tensors spread over both files."""
    tensors = factory.tensor_shapes(factory.TINY)
    paths = factory.write_split_model(tmp_path, "tiny-split", factory.TINY, parts=2)
    info = load_model_info(paths[1])
    assert len(info.tensors) == len(tensors)
    assert info.file_size == sum(p.stat().st_size for p in paths)
    assert info.files == [str(p) for p in paths]
    paths[1].unlink()
    with pytest.raises(GGUFError, match="missing"):
        load_model_info(paths[0])
