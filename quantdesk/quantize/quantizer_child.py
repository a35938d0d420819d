"""The quantizer's own process: ``python -m quantdesk.quantize.quantizer_child [JOB_JSON]``.

Why a child: llama.cpp aborts the whole process on some bad inputs, holds the GIL-free C call
for minutes, and a cancel must stop it at once — only a separate process gives all three. The
child installs a llama.cpp log callback, turns the quantizer's one line per tensor into JSON
events and writes them, one per line, to its original stdout; anything C code prints goes to
stderr instead. The last event is ``done`` (with the child's peak memory) or ``error``.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
import threading
import time
from collections import deque
from typing import Any, TextIO

# "[  12/ 291]  blk.0.attn_q.weight - [ 4096,  4096, 1, 1], type = f16, converting to q4_K .. size = ..."
TENSOR_START_RE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)\s+- \[([^\]]*)\], type =\s*(\S+), ")
TENSOR_LINE_RE = re.compile(
    TENSOR_START_RE.pattern + r"(?:converting to (\S+) \.\. )?size =\s*([\d.]+) MiB(?: ->\s*([\d.]+) MiB)?")
GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR, GGML_LOG_LEVEL_CONT = 3, 4, 5


def read_status() -> dict[str, int]:
    """This process's memory counters from /proc (bytes); empty where /proc does not exist."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh
                    if line.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile"))}
    except OSError:
        return {}


class MemorySampler(threading.Thread):
    """Samples anonymous memory while the C call runs: /proc has a peak for RSS, not for anon."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_anon = 0
        self.peak_file = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        status = read_status()
        self.peak_anon = max(self.peak_anon, status.get("RssAnon", 0))
        self.peak_file = max(self.peak_file, status.get("RssFile", 0))


class LogParser:
    """Reassembles llama.cpp's log fragments into lines and turns tensor lines into events."""

    def __init__(self, emit) -> None:
        self.emit = emit
        self.buf = ""
        self.announced = False
        self.tail: deque[str] = deque(maxlen=40)
        self.errors: list[str] = []

    def feed(self, level: int, text: str) -> None:
        if level == GGML_LOG_LEVEL_ERROR and text.strip():
            self.errors.append(text.strip())
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            self._line(line)
            self.announced = False
        if self.buf and not self.announced and (m := TENSOR_START_RE.match(self.buf)):
            self.announced = True
            self.emit({"event": "tensor", "i": int(m[1]), "n": int(m[2]), "name": m[3],
                       "shape": [int(x) for x in m[4].split(",") if x.strip()], "src": m[5], "done": False})

    def _line(self, line: str) -> None:
        m = TENSOR_LINE_RE.match(line)
        if m is None:
            if line.strip():
                self.tail.append(line.rstrip())
            return
        mib_in = float(m[7])
        self.emit({"event": "tensor", "i": int(m[1]), "n": int(m[2]), "name": m[3],
                   "shape": [int(x) for x in m[4].split(",") if x.strip()], "src": m[5], "dst": m[6],
                   "mib_in": mib_in, "mib_out": float(m[8]) if m[8] else mib_in, "done": True})


def run(job: dict[str, Any], out: TextIO) -> int:
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(event) + "\n")
            out.flush()

    import llama_cpp  # lazy: importing this module (tests, tools) stays cheap

    parser = LogParser(emit)

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        try:
            parser.feed(int(level), text.decode("utf-8", "replace"))
        except BrokenPipeError:  # the parent is gone: nobody will use or clean up the output
            _abandon()
        except Exception as exc:  # noqa: BLE001 - an exception must never unwind into C
            sys.stderr.write(f"quantize_child: log parsing failed: {exc}\n")

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))  # `on_log` stays referenced until we return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(job["ftype"])
    params.nthread = int(job.get("threads") or 0)
    # llama.cpp quantizes files it cannot load (a vocabulary it rejects, say): the result would abort
    # whoever loads it. So the input's vocabulary is loaded first; an abort here says so at once.
    emit({"event": "checking"})
    check = llama_cpp.llama_model_default_params()
    check.vocab_only = True
    loaded = llama_cpp.llama_model_load_from_file(job["input"].encode(), check)
    if not loaded:
        emit({"event": "error", "message": "llama.cpp cannot load this model ("
              + (parser.errors[-1] if parser.errors else "it refused the file") + ")", "unloadable": True})
        return 1
    llama_cpp.llama_model_free(loaded)
    parser.errors.clear()
    sampler = MemorySampler()
    base = read_status()
    emit({"event": "started", "pid": os.getpid(), "threads": params.nthread, "base_anon": base.get("RssAnon", 0)})
    sampler.start()
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(job["input"].encode(), job["output"].encode(), ctypes.byref(params))
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    status = read_status()
    if rc != 0:
        reason = next((e.split("failed to quantize:", 1)[1].strip() for e in parser.errors
                       if "failed to quantize:" in e), None)
        emit({"event": "error", "message": reason or "llama.cpp could not quantize the file",
              "log": list(parser.tail)[-10:]})
        return 1
    peak_rss = status.get("VmHWM", 0)
    if not peak_rss:
        import resource  # POSIX only; /proc covers Linux

        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    emit({"event": "done", "seconds": seconds, "peak_rss": peak_rss, "peak_anon": sampler.peak_anon,
          "peak_file": sampler.peak_file, "base_anon": base.get("RssAnon", 0)})
    return 0


_writing: list[str] = []  # the partial output of the job in hand


def _abandon() -> None:
    """The parent is gone: remove the partial output and stop at once."""
    for path in _writing:
        try:
            os.unlink(path)
        except OSError:
            pass
    os._exit(3)


def _exit_with_parent(interval: float = 0.5) -> None:
    """A parent killed without cleaning up must not leave us writing gigabytes for nobody, nor the
    partial output behind (nobody else would know it is garbage)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        _abandon()

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str]) -> int:
    """The job comes as argv[0], or as one JSON line on stdin — then the parent can start us (and
    our ~0.2 s import of llama.cpp) while it still runs the pre-flight; EOF means "not needed"."""
    _exit_with_parent()
    # Events keep the real stdout; anything C code prints goes to stderr with llama.cpp's own noise.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    import llama_cpp  # noqa: F401 - loaded before the job arrives: that is the point

    from quantdesk.hardware.ggml_devices import load_backends

    load_backends()  # a portable build registers its CPU variant only when asked

    line = argv[0] if argv else sys.stdin.readline()
    if not line.strip():
        return 0
    job = json.loads(line)
    _writing.append(job["output"])
    return run(job, out)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
