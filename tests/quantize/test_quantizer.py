"""The quantize job against the real llama.cpp quantizer, on generated models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType as Q

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.model_info import load_model_info
from quantdesk.gguf.quant_presets import (
    estimate_output_size,
    resolve_preset,
    target_types,
)
from quantdesk.gguf.reader import read_header
from quantdesk.planning.quantize_cost import Preflight
from quantdesk.quantize.quantizer import (
    QuantizeCancelled,
    QuantizeResult,
    Started,
    TensorProgress,
    partial_path,
    prepare,
    quantize,
)
from tests.support import gguf_factory as factory
from tests.support.llama_probe import measure


@pytest.fixture
def work(tmp_path):
    """An output folder of its own: the test home (QUANTDESK_HOME) also lives under tmp_path."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def run_job(*args, **kwargs) -> tuple[list, QuantizeResult]:
    events = list(quantize(*args, **kwargs))
    assert isinstance(events[-1], QuantizeResult)
    return events, events[-1]


def weight_types(path) -> dict[str, Q]:
    return {t.name: Q(t.type_id) for t in read_header(path).tensors}


@pytest.mark.parametrize("model,preset", [("small_model", "Q8_0"), ("small_model", "Q4_K_M"),
                                          ("small_model", "Q2_K"), ("tiny_model", "IQ4_XS")])
def test_output_follows_the_preset_and_the_estimate_holds(request, tmp_path, model, preset):
    source = request.getfixturevalue(model)
    out = tmp_path / f"out-{preset}.gguf"
    events, result = run_job(source, preset, out)
    assert result.output == out and out.is_file() and not partial_path(out).exists()
    assert result.size == out.stat().st_size and result.peak_ram > 0 and result.peak_anon > 0
    assert result.peak_anon <= result.preflight.ram_needed  # the pre-flight's RAM model is an upper bound
    types = weight_types(out)
    info = load_model_info(source)
    # every tensor got the type QuantDesk predicted from the header (llama.cpp's mixing rules)
    assert types == dict(target_types(info, resolve_preset(preset)))
    assert types["blk.0.attn_norm.weight"] == Q.F32  # norms are never quantized
    estimate = estimate_output_size(info, resolve_preset(preset))
    assert result.size <= estimate <= result.size * 1.02 + 2 * 2**20  # conservative, but not wildly
    assert isinstance(events[0], Preflight) and isinstance(events[1], Started)


def test_q4_k_m_mixes_q4_k_with_q6_k(small_model, tmp_path):
    _, result = run_job(small_model, "Q4_K_M", tmp_path / "m.gguf")
    types = weight_types(result.output)
    assert types["output.weight"] == Q.Q6_K
    assert types["blk.0.attn_q.weight"] == Q.Q4_K
    # llama.cpp's use_more_bits: with 4 layers, ffn_down of layers 2 and 3 gets Q6_K
    assert [types[f"blk.{i}.ffn_down.weight"] for i in range(4)] == [Q.Q4_K, Q.Q4_K, Q.Q6_K, Q.Q6_K]
    assert {Q.Q4_K, Q.Q6_K} <= set(types.values())
    q8 = weight_types(run_job(small_model, "Q8_0", tmp_path / "q8.gguf")[1].output)
    assert {t for n, t in q8.items() if not n.endswith("norm.weight")} == {Q.Q8_0}


def test_progress_events_cover_every_tensor_in_order(tiny_model, tmp_path):
    events, _ = run_job(tiny_model, "Q4_K_M", tmp_path / "t.gguf")
    progress = [e for e in events if isinstance(e, TensorProgress)]
    n = len(read_header(tiny_model).tensors)
    finished = [e for e in progress if e.finished]
    assert [e.index for e in finished] == list(range(1, n + 1))
    assert all(e.total == n for e in progress)
    assert len(progress) == 2 * n  # a "started" and a "finished" event per tensor
    done = [e.done_bytes for e in finished]
    assert done == sorted(done) and done[-1] == finished[-1].total_bytes
    assert {e.dst_type for e in finished if e.dst_type} == {"q4_K", "q6_K"}
    assert all(e.bytes_out > 0 for e in finished)


def test_quantized_model_loads_and_generates(tiny_model, tmp_path):
    _, result = run_job(tiny_model, "Q4_K_M", tmp_path / "t.gguf")
    probe = measure(result.output, {"n_ctx": 64, "n_threads": 2}, n_gen=4)  # a separate process
    assert probe["gen_tps"] > 0


def _slow_job(small_model, tmp_path, cancel=None):
    """IQ4_XS is the slowest preset (~3 M weights/s here): seconds on SMALL, time to interrupt it."""
    return quantize(small_model, "IQ4_XS", tmp_path / "slow.gguf", cancel=cancel, threads=1)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_kills_the_child_and_leaves_nothing(small_model, work):
    cancel = threading.Event()
    pid = None
    with pytest.raises(QuantizeCancelled, match="cancelled"):
        for ev in _slow_job(small_model, work, cancel):
            if isinstance(ev, Started):
                pid = ev.pid
            if isinstance(ev, TensorProgress) and ev.finished:
                assert partial_path(work / "slow.gguf").exists()  # it was really writing
                cancel.set()
    assert pid is not None and _gone(pid)
    assert list(work.iterdir()) == []


def test_leaving_the_generator_kills_the_child(small_model, work):
    job = _slow_job(small_model, work)
    pid = next(ev.pid for ev in job if isinstance(ev, Started))
    job.close()
    assert _gone(pid) and list(work.iterdir()) == []


@pytest.mark.parametrize("sig,message", [(signal.SIGKILL, "killed by SIGKILL"), (signal.SIGABRT, "aborted")])
def test_a_child_that_dies_is_an_error_not_a_crash(small_model, work, sig, message):
    pid = None
    with pytest.raises(QuantDeskError, match=message) as err:
        for ev in _slow_job(small_model, work):
            if isinstance(ev, Started):
                pid = ev.pid
            elif isinstance(ev, TensorProgress) and ev.finished and ev.index == 1:
                os.kill(pid, sig)
    assert "at tensor" in str(err.value)
    assert list(work.iterdir()) == []


def test_llama_cpp_error_becomes_a_message(tmp_path):
    import numpy as np
    from gguf import GGUFReader

    path = factory.write_model(tmp_path / "nan-F16.gguf", factory.TINY, "F16")
    reader = GGUFReader(str(path), "r+")
    next(t for t in reader.tensors if t.name == "blk.1.attn_q.weight").data[0, 5] = np.float16("nan")
    reader.data.flush()
    del reader
    out = tmp_path / "out" / "nan-Q4_K_M.gguf"
    with pytest.raises(QuantDeskError, match="invalid data"):
        list(quantize(path, "Q4_K_M", out))
    assert not out.exists() and not partial_path(out).exists()


def test_bad_inputs_are_clear_errors(tiny_model, work):
    with pytest.raises(QuantDeskError, match="no such file"):
        list(quantize(work / "missing.gguf", "Q4_K_M"))
    truncated = work / "cut-F16.gguf"
    truncated.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    with pytest.raises(QuantDeskError, match="truncated"):
        list(quantize(truncated, "Q4_K_M", work / "cut-Q4.gguf"))
    _, q8 = run_job(tiny_model, "Q8_0", work / "tiny-Q8_0.gguf")
    with pytest.raises(QuantDeskError, match="already quantized"):
        list(quantize(q8.output, "Q4_K_M", work / "again.gguf"))
    with pytest.raises(QuantDeskError, match="unknown quantization type 'Q9_X'.*Q4_K_M"):
        list(quantize(tiny_model, "Q9_X", work / "x.gguf"))
    with pytest.raises(QuantDeskError, match="importance matrix"):
        list(quantize(tiny_model, "IQ2_XS", work / "x.gguf"))
    with pytest.raises(QuantDeskError, match="already exists"):
        list(quantize(tiny_model, "Q8_0", q8.output))
    assert sorted(p.name for p in work.iterdir()) == ["cut-F16.gguf", "tiny-Q8_0.gguf"]


def test_refused_preflight_writes_nothing(tiny_model, tmp_path):
    out = tmp_path / "new-folder" / "t.gguf"
    ok = prepare(tiny_model, "Q4_K_M", out)[2]
    assert ok.ok and ok.ram_needed > 0 and ok.disk_needed > ok.output_bytes
    with pytest.raises(QuantDeskError, match="not enough memory"):
        list(quantize(tiny_model, "Q4_K_M", out, ram_available=ok.ram_needed))
    with pytest.raises(QuantDeskError, match="not enough disk space"):
        list(quantize(tiny_model, "Q4_K_M", out, disk_free=ok.output_bytes))
    assert not out.parent.exists()


def test_simulated_small_machine_refuses_a_big_model(tmp_path, monkeypatch):
    """A 70B-shaped F16 (sparse file): its 1 G-weight embedding alone needs 4 GiB of f32 buffer."""
    big = factory.write_header_only(tmp_path / "l70b-F16.gguf", factory.LLAMA3_70B, "F16")
    monkeypatch.setenv("QUANTDESK_HARDWARE", "cpu-4gb")
    out = tmp_path / "out" / "l70b-Q4_K_M.gguf"
    with pytest.raises(QuantDeskError, match=r"not enough memory.*preset:cpu-4gb"):
        list(quantize(big, "Q4_K_M", out))
    assert not out.parent.exists()
    monkeypatch.delenv("QUANTDESK_HARDWARE")
    roomy = prepare(big, "Q4_K_M", out, ram_available=64 << 30, disk_free=1 << 40)[2]
    assert roomy.ok and 4 << 30 < roomy.ram_needed < 6 << 30  # f32 of token_embd + its Q4_K copy


def test_child_runs_this_quantdesk_from_any_working_directory(tiny_model, tmp_path):
    """The parent found quantdesk through its own sys.path; the child must import the same copy,
    not whatever the working directory or another installed version offers."""
    root = Path(__file__).resolve().parents[2]
    code = ("import sys; sys.path.insert(0, sys.argv[3]); from quantdesk.quantize.quantizer import quantize; "
            "*_, r = quantize(sys.argv[1], 'Q8_0', sys.argv[2]); print(r.size)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code, str(tiny_model), str(tmp_path / "o.gguf"), str(root)],
                          cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    assert int(done.stdout) == (tmp_path / "o.gguf").stat().st_size
