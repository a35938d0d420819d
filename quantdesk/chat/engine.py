"""One loaded model, served by llama.cpp in a child process.

Why a child running llama_cpp.server rather than in-process calls: a crash, abort or OOM inside
llama.cpp ends only the child (the app reports it and can reload); the same process is what
``quantdesk serve`` gives other tools, so the app and the API never drift apart. The server binds
127.0.0.1 on a free port with a random key; we talk to it with the standard library's HTTP client
(streamed completions over SSE), and Stop closes the connection, which the server notices at the
next token.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from quantdesk.base.child_process import child_command, child_env, child_window_flags
from quantdesk.base.errors import QuantDeskError
from quantdesk.base.paths import data_dir
from quantdesk.chat.sampling import Sampling
from quantdesk.hardware.machine import Hardware

if TYPE_CHECKING:
    from quantdesk.chat.template import ChatTemplate

KV_TYPE_NAMES = {1: "f16", 8: "q8_0", 2: "q4_0"}
STOP_GRACE = 1.5  # seconds a reply may take to end after Stop before its process is ended


class EngineFailure(str, Enum):
    """What went wrong with the model process, so callers choose the next step by kind, not by words."""

    MISSING_FILE = "missing_file"
    LOAD_FAILED = "load_failed"       # llama.cpp refused the file or the settings
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"   # killed by SIGKILL: the kernel's OOM killer, almost always
    DIED = "died"                     # crashed or aborted inside llama.cpp
    NO_ANSWER = "no_answer"
    REFUSED = "refused"               # the server answered a request with an error status


_ENGINE_STEPS = {
    EngineFailure.MISSING_FILE: "Choose another model, or add it to the library again.",
    EngineFailure.CANCELLED: "",
    EngineFailure.OUT_OF_MEMORY: "Close other programs, or load a smaller quant or a shorter context.",
    EngineFailure.DIED: "Reload the model; if it happens again, try a smaller context or another quant.",
}


class EngineError(QuantDeskError):
    """The model process failed to load or died; the message says why, ``kind`` what kind of failure."""

    def __init__(self, message: str, kind: EngineFailure = EngineFailure.LOAD_FAILED,
                 next_step: str | None = None) -> None:
        super().__init__(message, next_step if next_step is not None else _ENGINE_STEPS.get(kind))
        self.kind = kind


def _exit_kind(code: int | None) -> EngineFailure:
    from quantdesk.base.child_process import signal_name

    return EngineFailure.OUT_OF_MEMORY if code is not None and signal_name(code) == "SIGKILL" else EngineFailure.DIED


@dataclass
class LoadSettings:
    n_gpu_layers: int = 0
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = True
    type_k: int | None = None
    type_v: int | None = None
    n_threads: int | None = None
    use_mmap: bool = True
    offload_kqv: bool = True
    cpu_moe_layers: int = 0  # routed experts of the first N blocks stay in RAM (llama.cpp's --n-cpu-moe)

    def model_settings(self, path: str) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["model"] = path
        return out


@dataclass
class LoadReport:
    """What really happened at load, in numbers and one sentence."""
    gpu_layers: int
    total_layers: int | None
    requested_gpu_layers: int
    n_ctx: int
    load_s: float
    ram: int
    buffers: dict[str, int]
    gpu_offload_supported: bool
    summary: str
    pid: int = 0
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    experts_in_ram: int = 0  # blocks whose routed experts llama.cpp really put in RAM buffers

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("raw")
        return data


@dataclass
class PlannedLoad:
    settings: LoadSettings
    notes: list[str]
    planned_gpu_layers: int
    n_layers: int
    planned_cpu_moe_layers: int = 0


def plan_load(path: str | Path, hw: Hardware, ctx: int | None = None, kv_type: str = "f16",
              gpu_layers: str | int = "auto", threads: int | None = None,
              cpu_moe: str | int = "auto") -> PlannedLoad:
    """Load settings from the planner for this machine; ``gpu_layers`` N overrides its split, and
    ``cpu_moe`` N the blocks whose routed experts stay in RAM ("auto": the planner's choice — with
    a forced ``gpu_layers``, the fewest that fit with it).

    ``threads`` None falls back to the Settings page's choice, then to the planner's (physical cores).
    """
    from quantdesk.base.settings import configured_threads
    from quantdesk.planning.fit import cpu_moe_layers_for, gpu_layers_for_cpu_moe
    from quantdesk.planning.memory_model import gpu_blocks
    from quantdesk.planning.plan import plan_local

    plan = plan_local(path, hw, ctx, kv_type)
    option = plan.options[0]
    notes = list(plan.notes)
    args = dict(option.load_args)
    moe_layers = option.model.moe_layers() if option.model else []
    if cpu_moe != "auto" and int(cpu_moe) and not moe_layers:
        notes.append(f"--cpu-moe {cpu_moe} ignored: {Path(path).name} is not a mixture-of-experts model")
        cpu_moe = 0
    if cpu_moe != "auto":  # the experts asked for; the most layers on the GPU that fit with them
        args["cpu_moe_layers"] = min(int(cpu_moe), option.n_layers)
        if gpu_layers == "auto" and moe_layers:
            k = gpu_layers_for_cpu_moe(option, hw, args["cpu_moe_layers"], kv_type)
            if k is None:
                raise QuantDeskError(f"{Path(path).name} does not fit on this machine at {plan.ctx} tokens of "
                                     f"context with the experts of {cpu_moe} layers in RAM. Try another --cpu-moe, a "
                                     "smaller context (--ctx) or a smaller quant.")
            args["n_gpu_layers"] = k
    elif option.verdict == "no_fit" and gpu_layers == "auto":
        raise QuantDeskError(f"{Path(path).name} does not fit on this machine at {plan.ctx} tokens of context: "
                             f"{option.reason} Try a smaller context (--ctx) or a smaller quant.")
    if gpu_layers != "auto":
        args["n_gpu_layers"] = int(gpu_layers)
        if cpu_moe == "auto":
            fewest = cpu_moe_layers_for(option, hw, int(gpu_layers), kv_type)
            if fewest is None:
                fewest = moe_layers[-1] + 1
                notes.append(f"{gpu_layers} GPU layers do not fit this GPU even with every layer's experts in RAM")
            args["cpu_moe_layers"] = fewest
    threads = threads or configured_threads()
    if threads:
        args["n_threads"] = threads
    settings = LoadSettings(**{k: v for k, v in args.items() if k in LoadSettings.__dataclass_fields__})
    k, n = settings.n_gpu_layers, option.n_layers
    first_gpu, _ = gpu_blocks(n, k)
    if settings.cpu_moe_layers and k and settings.cpu_moe_layers > first_gpu:
        where = "every layer runs on the GPU" if first_gpu == 0 else \
            f"{k} of {n + 1} layers run on the GPU (blocks 0–{first_gpu - 1} on the CPU)"
        notes.append(f"{where}; the routed experts of blocks {first_gpu}–{settings.cpu_moe_layers - 1} stay in RAM, "
                     "where a token reads only the few it uses")
    elif 0 < k < n + 1 and (gpu_layers == "auto" or cpu_moe != "auto"):
        unused = (f" (--cpu-moe {settings.cpu_moe_layers} changes nothing: blocks 0–{first_gpu - 1} run on the CPU "
                  "anyway)" if cpu_moe != "auto" and settings.cpu_moe_layers else "")
        notes.append(f"not enough free VRAM for the whole model: {k} of {n + 1} layers go on the GPU, the rest runs "
                     f"on the CPU{unused}")
    return PlannedLoad(settings, notes, option.gpu_layers, option.n_layers, settings.cpu_moe_layers)


def _experts_in_ram(raw: dict[str, Any]) -> int:
    """How many blocks' routed-expert tensors llama.cpp's log says an override moved."""
    from quantdesk.gguf.model_info import is_expert_tensor, layer_of

    return len({layer_of(name) for name in (raw.get("overridden") or {}) if is_expert_tensor(name)} - {None})


def _describe_exit(code: int | None) -> str:
    from quantdesk.base.child_process import death_reason

    return "is still running" if code is None else death_reason(code)


@dataclass
class Token:
    text: str


@dataclass
class Finished:
    """The end of one reply, with its figures."""
    text: str
    tokens: int
    finish_reason: str          # "stop" | "length" | "stopped" (by the user) | "crashed"
    ttft_s: float
    tokens_per_s: float
    prompt_tokens: int
    prompt_tokens_per_s: float | None
    context_used: int | None
    n_ctx: int
    error: str | None = None
    note: str | None = None     # something the user should know (the process had to be restarted)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Engine:
    """Start, talk to and stop the model's child process. Thread-safe for one reply at a time."""

    def __init__(self, model_path: str | Path, settings: LoadSettings, *, host: str = "127.0.0.1",
                 port: int = 0, api_key: str | None = "random", log_path: Path | None = None) -> None:
        self.model_path = str(model_path)
        self.settings = settings
        self.host = host
        self.port = port
        self.api_key = secrets.token_urlsafe(24) if api_key == "random" else api_key
        self.log_path = log_path or data_dir() / "logs" / "engine.log"
        self.proc: subprocess.Popen | None = None
        self.report: LoadReport | None = None
        self.template: ChatTemplate | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._restart_needed = False
        self._closing = False
        self._watch_stdin = True
        self._app_token = secrets.token_urlsafe(16)  # marks the window's own requests (not counted as served)
        self._conn_lock = threading.Lock()         # the reply's connection: ended, or ended by a forced stop
        self._request_name = ""
        self.restarting = threading.Event()        # set while the process is loaded again after a forced stop
        self.restart_error: QuantDeskError | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 600.0, cancel: threading.Event | None = None,
              watch_stdin: bool = True) -> LoadReport:
        if not Path(self.model_path).is_file():
            raise EngineError(f"model file not found: {self.model_path}", EngineFailure.MISSING_FILE)
        self._watch_stdin = watch_stdin
        self._closing = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        config = {"model": self.settings.model_settings(self.model_path), "host": self.host, "port": self.port,
                  "api_key": self.api_key, "watch_stdin": watch_stdin, "app_token": self._app_token}
        log = open(self.log_path, "wb")
        env = dict(child_env(), PYTHONUNBUFFERED="1")  # the child imports this very quantdesk, whatever the cwd
        self.proc = subprocess.Popen(
            child_command("quantdesk.chat.engine_child"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True,
            creationflags=child_window_flags(),
        )
        log.close()
        try:  # the settings, API key included, go through the pipe: a command line is public
            self.proc.stdin.write((json.dumps(config) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # it died at once: _read_ready says how
        line = self._read_ready(timeout, cancel)
        event = json.loads(line)
        if event.get("event") != "ready":
            self.stop()
            detail = f" ({event['detail']})" if event.get("detail") else ""
            raise EngineError(f"the model failed to load: {event.get('message')}{detail}")
        self.port = int(event["port"])
        self.report = self._make_report(event["report"])
        self.template = self._choose_template(self.report.raw)
        return self.report

    @staticmethod
    def _choose_template(raw: dict[str, Any]) -> "ChatTemplate":
        """The chat template for this model, tried here (on the loading thread, in the renderer's
        child), so nothing on a window's thread ever waits on a template."""
        from quantdesk.chat.template import ChatTemplate, template_for

        chosen = template_for(dict(raw.get("metadata", {})))
        return ChatTemplate(chosen.source, chosen.text, raw.get("bos_text", ""), raw.get("eos_text", ""), chosen.note)

    def _read_ready(self, timeout: float, cancel: threading.Event | None) -> str:
        assert self.proc and self.proc.stdout
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline().decode()), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while reader.is_alive():
            reader.join(0.05)
            if cancel is not None and cancel.is_set():
                self.stop()
                raise EngineError("loading was cancelled", EngineFailure.CANCELLED)
            if time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"the model did not finish loading within {timeout:.0f} s", EngineFailure.TIMEOUT)
        if not result or not result[0].strip():
            code = self.proc.wait(timeout=10)
            raise EngineError(f"the model process {_describe_exit(code)} while loading{self._log_hint()}",
                              _exit_kind(code))
        return result[0]

    def _log_tail(self, n: int = 40) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return lines[-n:]

    def _log_hint(self) -> str:
        for line in reversed(self._log_tail()):
            low = line.lower()
            if any(w in low for w in ("error", "failed", "abort", "assert", "out of memory", "terminate", "what()")):
                return f": {line.strip()}"
        return f"; see {self.log_path}"

    def _make_report(self, raw: dict[str, Any]) -> LoadReport:
        requested = int(raw.get("requested_gpu_layers") or 0)
        got, total = int(raw.get("gpu_layers") or 0), raw.get("total_layers")
        notes: list[str] = []
        backends = [b for b in raw.get("gpu_backends", []) if b]
        if not raw.get("gpu_offload_supported") and backends:
            names = ", ".join(b.capitalize() if b != "cuda" else "CUDA" for b in backends)
            summary = f"running on the CPU (the {names} backend found no GPU it can use)"
        elif not raw.get("gpu_offload_supported"):
            summary = "running on the CPU (this llama.cpp build has no GPU support)"
            try:
                from quantdesk.hardware.detect import detect_hardware
                if detect_hardware().gpus:
                    notes.append("GPU found but this build is CPU-only")
            except Exception:
                pass
        elif got == 0:
            summary = "running on the CPU (0 layers on the GPU)"
        elif total and got >= total:
            summary = f"all {total} layers on the GPU"
        else:
            summary = f"{got} of {total} layers on the GPU, the rest on the CPU"
        if raw.get("gpu_offload_supported") and requested and got < min(requested, total or requested):
            notes.append(f"asked for {requested} GPU layers, llama.cpp placed {got}")
        experts = _experts_in_ram(raw)
        asked = int(raw.get("cpu_moe_layers") or 0)
        if asked and raw.get("gpu_offload_supported"):
            expected = self._moe_blocks_below(asked)
            if experts:
                summary += f"; routed experts of {experts} layers in RAM"
            if experts < expected:
                notes.append(f"asked to keep the experts of {expected} layers in RAM, llama.cpp's log shows "
                             f"{experts} moved")
        ram = int(raw.get("memory", {}).get("VmRSS", 0))
        return LoadReport(gpu_layers=got, total_layers=total, requested_gpu_layers=requested,
                          n_ctx=int(raw.get("n_ctx") or self.settings.n_ctx), load_s=float(raw.get("load_s", 0)),
                          ram=ram, buffers=raw.get("buffers", {}),
                          gpu_offload_supported=bool(raw.get("gpu_offload_supported")),
                          summary=summary, pid=int(raw.get("pid", 0)), notes=notes, raw=raw,
                          experts_in_ram=experts)

    def _moe_blocks_below(self, n: int) -> int:
        """How many of the first ``n`` blocks hold routed experts (GLM keeps block 0 dense)."""
        try:
            from quantdesk.gguf.model_info import load_model_info

            return sum(1 for layer in load_model_info(self.model_path).moe_layers() if layer < n)
        except Exception:  # noqa: BLE001 - only a note depends on it
            return n

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def death_message(self) -> str:
        code = self.proc.poll() if self.proc else None
        return f"the model process {_describe_exit(code)}{self._log_hint()}"

    def death_error(self) -> EngineError:
        return EngineError(self.death_message(), _exit_kind(self.proc.poll() if self.proc else None))

    def stop(self) -> None:
        """End the child (politely, then by force); safe to call twice."""
        proc = self.proc
        if proc is None or proc.returncode is not None and proc.stdin is None:
            return
        self._closing = True  # a reply ending now must not bring the process back (_restart_after_forced_stop)
        self.stop_generation()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        proc.stdin = proc.stdout = None

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- requests --------------------------------------------------------------------------
    @property
    def client_host(self) -> str:
        """Where this process reaches the server: a wildcard bind is reached on loopback."""
        return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def base_url(self) -> str:
        host = self.client_host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-QuantDesk-Client": self._app_token}  # not "served"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        if not self.alive:
            raise self.death_error()
        conn = http.client.HTTPConnection(self.client_host, self.port, timeout=timeout)
        try:
            conn.request(method, path, None if body is None else json.dumps(body), self._headers())
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            if not self.alive:
                raise self.death_error() from exc
            raise EngineError(f"the model process did not answer: {exc}", EngineFailure.NO_ANSWER) from exc
        finally:
            conn.close()
        if response.status != 200:
            raise EngineError(f"the model process refused the request ({response.status}): {data[:300]!r}",
                              EngineFailure.REFUSED)
        return json.loads(data)

    def tokenize(self, text: str) -> int:
        """How many tokens the text is, as the completion will count it (BOS included)."""
        return int(self._request("POST", "/extras/tokenize/count", {"input": text})["count"])

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/quantdesk/status")

    def served(self) -> int:
        """Completion requests other programs made of this model process."""
        return int(self._request("GET", "/quantdesk/served", timeout=5)["served"])

    def stop_generation(self) -> None:
        """Stop this engine's reply in progress within a token, whatever is being generated.

        The model process ends that reply (named, so another program's reply through the same server
        goes on) at its next sampled token; a reply still queued behind another program's is dropped
        without waiting. If a running reply has not ended ``STOP_GRACE`` seconds after Stop (llama.cpp
        busy inside one long call, such as a huge prompt), the process is ended and loaded again in
        the background (``restarting``), and the reply says so.
        """
        self._stopping.set()
        conn = self._conn
        if conn is not None and self.alive:
            threading.Thread(target=self._interrupt, args=(conn, self._request_name), daemon=True).start()

    def _interrupt(self, conn: http.client.HTTPConnection, name: str) -> None:
        deadline = time.monotonic() + STOP_GRACE
        state = "unknown"
        try:
            state = self._request("POST", "/quantdesk/stop", {"request": name}, timeout=STOP_GRACE).get("state", "")
        except EngineError:
            pass  # no answer in time: the process is stuck
        if state == "queued":  # it had not started: leaving the queue is enough
            _shut(conn)
            return
        while self._conn is conn and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._conn_lock:  # the reply cannot end between this check and the kill
            if self._conn is not conn or not self.alive:
                return
            self._restart_needed = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, AttributeError):
                pass

    def _restart_after_forced_stop(self, finished: "Finished") -> None:
        """Load the model again, in the background, after Stop had to end its process; the reply says so
        and the next request waits for it (``restarting``)."""
        self._restart_needed = False
        if self._closing:
            return  # stopped on purpose meanwhile (the window closes): stays stopped
        finished.note = (f"the model did not stop within {STOP_GRACE:g} s, so its process was ended and is being "
                         "loaded again")
        self.restart_error = None
        self.restarting.set()
        threading.Thread(target=self._restart, daemon=True, name="engine-restart").start()

    def _restart(self) -> None:
        try:
            self.stop()
            self._closing = False
            self.start(watch_stdin=self._watch_stdin)
        except QuantDeskError as exc:
            self.restart_error = exc
        finally:
            self.restarting.clear()

    def wait_restarted(self, timeout: float = 600.0) -> None:
        """After a forced stop the process is loaded again in the background: wait for it."""
        deadline = time.monotonic() + timeout
        while self.restarting.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.restart_error is not None:
            raise self.restart_error

    def complete(self, prompt: str, sampling: Sampling, stop: list[str] | None = None,
                 prompt_tokens: int | None = None, extra: dict[str, Any] | None = None
                 ) -> Iterator[Token | Finished]:
        """Stream one completion: ``Token`` pieces, then exactly one ``Finished``."""
        self.wait_restarted()
        with self._lock:
            yield from self._complete(prompt, sampling, stop or [], prompt_tokens, extra or {})

    def _complete(self, prompt: str, sampling: Sampling, stop: list[str], prompt_tokens: int | None,
                  extra: dict[str, Any]) -> Iterator[Token | Finished]:
        if not self.alive:
            raise self.death_error()
        self._stopping.clear()
        try:
            self.status()  # starts the server's per-request timings afresh
        except EngineError:
            pass
        body = {"prompt": prompt, "stream": True, "stop": stop, **sampling.request_fields(), **extra}
        if sampling.ignore_eos and self.report:
            bias = dict(body.get("logit_bias") or {})
            bias.update({str(t): -100.0 for t in self.report.raw.get("eog_tokens", [])})
            body["logit_bias"] = bias
        pieces: list[str] = []
        reason, error = "stop", None
        t0 = time.perf_counter()
        t_first = t_last = None
        conn = http.client.HTTPConnection(self.client_host, self.port, timeout=600)
        self._request_name = secrets.token_hex(8)  # Stop names this reply, not whatever else generates
        self._conn = conn
        try:
            conn.request("POST", "/v1/completions", json.dumps(body),
                         {**self._headers(), "X-QuantDesk-Request": self._request_name})
            response = conn.getresponse()
            if response.status != 200:
                raise EngineError(f"the model process refused the request ({response.status}): "
                                  f"{response.read()[:300]!r}", EngineFailure.REFUSED)
            for chunk in _sse_events(response):
                if self._stopping.is_set():
                    # read on to the server's [DONE] (a token away): a dropped connection is not
                    # noticed reliably and the model would go on generating for nobody
                    continue
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if text:
                    now = time.perf_counter()
                    t_first = t_first or now
                    t_last = now
                    pieces.append(text)
                    yield Token(text)
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if self._stopping.is_set():
                reason = "stopped"
            else:
                time.sleep(0.2)  # let a dying child finish dying so the report says how
                reason, error = "crashed", (self.death_message() if not self.alive
                                            else f"the connection to the model process broke: {exc}")
        finally:
            with self._conn_lock:
                self._conn = None
            conn.close()
        if self._stopping.is_set() and reason != "crashed":
            reason = "stopped"
        n = len(pieces)
        ttft = (t_first - t0) if t_first else time.perf_counter() - t0
        gen_s = (t_last - t_first) if (t_first and t_last and n > 1) else 0.0
        finished = Finished(text="".join(pieces), tokens=n, finish_reason=reason, ttft_s=ttft,
                            tokens_per_s=(n - 1) / gen_s if gen_s > 0 else 0.0,
                            prompt_tokens=prompt_tokens or 0, prompt_tokens_per_s=None, context_used=None,
                            n_ctx=self.report.n_ctx if self.report else self.settings.n_ctx, error=error)
        if self._restart_needed:
            finished.finish_reason, finished.error = "stopped", None
            self._restart_after_forced_stop(finished)
        elif reason != "crashed" and self.alive:
            self._add_server_figures(finished, sampling.max_tokens)
        yield finished

    def _add_server_figures(self, finished: Finished, max_tokens: int) -> None:
        try:
            st = self.status()
        except EngineError:
            return
        last = st.get("last", {})
        if last.get("prompt_s"):
            finished.prompt_tokens_per_s = last["prompt_tokens"] / last["prompt_s"]
        if last.get("gen_evals"):  # each token is evaluated before the next is sampled; the last never is
            extra = 1 if finished.finish_reason == "length" else 0
            finished.tokens = min(max(finished.tokens, int(last["gen_evals"]) + extra), max_tokens)
        finished.context_used = int(st.get("n_tokens", 0))


def _shut(conn: http.client.HTTPConnection) -> None:
    """End a connection another thread is reading (its read returns at once)."""
    import socket

    try:
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _sse_events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """``data:`` payloads of a server-sent-event stream, until ``[DONE]``.

    Reads with ``read1`` (whatever has arrived) and splits lines here: ``readline`` on a chunked
    response goes byte by byte through the buffered-IO fallback.
    """
    buffer = b""
    while True:
        data = response.read1(65536)
        if not data:
            return
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            yield json.loads(payload)
