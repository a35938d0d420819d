"""`quantdesk serve` and the model process against local attackers, careless flags, many clients,
hostile chat templates and replies that never form text."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import gguf_factory as factory

SECRET = "qd-test-key-0123456789abcdef"


@contextmanager
def serving(model: Path, *args: str, env: dict | None = None, stdin: str | None = None, ctx: int = 512):
    """``quantdesk serve MODEL --port 0 --json ARGS``; yields (serve process, the JSON it printed)."""
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "serve", str(model), "--port", "0", "--ctx", str(ctx),
                             "--json", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.flush()
    try:
        text = ""
        while True:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            text += line
            try:
                yield proc, json.loads(text)
                break
            except json.JSONDecodeError:
                continue
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def post(port: int, path: str, body: dict, key: str | None = None, timeout: float = 60) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    return response.status, response.read()


def proc_text(pid: int, what: str) -> str:
    return Path(f"/proc/{pid}/{what}").read_bytes().replace(b"\0", b" ").decode(errors="replace")


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")
def test_the_api_key_and_the_hub_token_are_in_no_command_line_or_environment(tiny_model, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    with serving(tiny_model, "--api-key-file", str(key_file), env={"HF_TOKEN": "hf_should_not_travel"}) as (proc, info):
        child = info["load"]["pid"]
        for pid in (proc.pid, child):
            assert SECRET not in proc_text(pid, "cmdline")
            assert SECRET not in proc_text(pid, "environ")
        assert "hf_should_not_travel" not in proc_text(child, "environ")
        assert post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 2})[0] == 401
        assert post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 2}, key=SECRET)[0] == 200


def test_the_api_key_can_come_from_stdin(tiny_model):
    with serving(tiny_model, "--api-key-file", "-", stdin=SECRET + "\n") as (_proc, info):
        assert post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 2}, key=SECRET)[0] == 200
        assert post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 2}, key="wrong")[0] == 401


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "myhost.example"])
def test_a_network_address_without_a_key_is_refused_before_loading(tiny_model, host):
    out = subprocess.run([sys.executable, "-m", "quantdesk", "serve", str(tiny_model), "--host", host],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"refusing to serve on {host} without an API key" in out.stderr and "--insecure-no-key" in out.stderr


def test_insecure_no_key_is_an_explicit_choice(tiny_model):
    with serving(tiny_model, "--host", "0.0.0.0", "--insecure-no-key") as (_proc, info):
        assert post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 2})[0] == 200


def _streams(port: int, count: int) -> list[tuple[int, str, list[str]]]:
    results: list[tuple[int, str, list[str]]] = []
    lock = threading.Lock()

    def stream() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=180)
        conn.request("POST", "/v1/completions", json.dumps(
            {"prompt": "hello", "max_tokens": 12, "stream": True, "logit_bias": {"2": -100}}),
            {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read().decode()
        payloads = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
        with lock:
            results.append((response.status, body, payloads))

    threads = [threading.Thread(target=stream) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    return results


def test_concurrent_streams_all_complete(tiny_model):
    """One model, one generation at a time: the others wait their turn, none is cut short."""
    with serving(tiny_model) as (_proc, info):
        results = _streams(info["port"], 20)
    assert len(results) == 20
    for status, _body, payloads in results:
        assert status == 200 and payloads[-1] == "[DONE]"
        finishes = [json.loads(p)["choices"][0]["finish_reason"] for p in payloads[:-1]]
        assert finishes[-1] == "length"  # every stream ran to its full 12 tokens


def test_more_streams_than_the_queue_holds_get_a_429_with_the_reason(tiny_model):
    from quantdesk.chat.engine_child import MAX_WAITING

    with serving(tiny_model) as (_proc, info):
        results = _streams(info["port"], MAX_WAITING + 12)
    complete = [r for r in results if r[0] == 200 and r[2][-1] == "[DONE]"]
    busy = [r for r in results if r[0] == 429]
    assert len(complete) + len(busy) == len(results) and len(complete) >= MAX_WAITING
    assert busy and all("the model is busy" in body for _status, body, _ in busy)


HOSTILE_TEMPLATES = {
    "endless loop": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    "huge output": "{{ 'x' * 10000000000 }}",
    "recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "output by loops": "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
}


@pytest.fixture(scope="module")
def hostile_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return {name: factory.write_model(folder / f"hostile-{i}.gguf", factory.TINY, "F16", chat_template=text)
            for i, (name, text) in enumerate(HOSTILE_TEMPLATES.items())}


@pytest.mark.parametrize("name", list(HOSTILE_TEMPLATES))
def test_a_hostile_chat_template_falls_back_to_chatml_with_a_notice(hostile_models, name):
    out = subprocess.run([sys.executable, "-m", "quantdesk", "chat", str(hostile_models[name]), "--prompt", "Hi",
                          "--max-tokens", "4", "--ctx", "512"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Chat template:" in out.stderr and "using the chatml fallback" in out.stderr
    assert "unexpected error" not in out.stderr.lower()


def test_a_hostile_template_does_not_wedge_serve(hostile_models):
    with serving(hostile_models["endless loop"]) as (_proc, info):
        for _ in range(2):  # the second request is answered as promptly as the first
            t0 = time.monotonic()
            status, body = post(info["port"], "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, timeout=60)
            assert status == 200 and json.loads(body)["choices"][0]["message"]["role"] == "assistant"
            assert time.monotonic() - t0 < 30


@pytest.fixture(scope="module")
def never_text_model(tmp_path_factory):
    return factory.write_never_text_model(tmp_path_factory.mktemp("bytes") / "bytes.gguf")


def test_a_client_that_goes_away_stops_its_generation_in_serve(never_text_model):
    """The model writes bytes that never form text, so the server sends nothing and never notices
    the client left by sending; the disconnect itself must stop the generation."""
    with serving(never_text_model, ctx=16384) as (_proc, info):
        conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=60)
        conn.request("POST", "/v1/completions", json.dumps(
            {"prompt": "hello", "max_tokens": 100000, "stream": True}), {"Content-Type": "application/json"})
        conn.getresponse()
        time.sleep(1.0)
        conn.sock.shutdown(2)
        conn.close()
        t0 = time.monotonic()
        status, body = post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 3}, timeout=120)
        assert status == 200 and json.loads(body)["choices"][0]["finish_reason"] == "length"
        assert time.monotonic() - t0 < 10  # not the minutes the abandoned 100,000 tokens would take


def test_max_tokens_holds_while_the_reply_is_an_unfinished_character(never_text_model):
    """llama-cpp-python skips its max_tokens check while the last bytes are an incomplete character:
    such a reply ran to the end of the context ("1023 tokens" for a reply of 76 asked)."""
    with serving(never_text_model, ctx=4096) as (_proc, info):
        status, body = post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 5}, timeout=120)
        assert status == 200
        answer = json.loads(body)
        assert answer["usage"]["completion_tokens"] <= 5 and answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")
def test_a_key_given_on_the_command_line_is_hidden_from_the_process_list_once_started(tiny_model):
    with serving(tiny_model, "--api-key", SECRET) as (proc, info):
        assert SECRET not in proc_text(proc.pid, "cmdline") and "********" in proc_text(proc.pid, "cmdline")
        assert SECRET not in proc_text(info["load"]["pid"], "cmdline")
        assert post(info["port"], "/v1/completions", {"prompt": "a", "max_tokens": 2}, key=SECRET)[0] == 200


def test_ctrl_c_stops_a_cli_reply_that_never_forms_text_within_a_second(never_text_model):
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "chat", str(never_text_model), "--prompt", "Hi",
                             "--ctx", "16384", "--max-tokens", "100000", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "Loaded" not in (proc.stderr.readline() or "Loaded"):
            pass
        time.sleep(1.5)  # it is generating bytes that never form text
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and json.loads(out)["finish_reason"] == "stopped"
    assert took < 3, took  # the reply ends within a second; the rest is the process ending the model's
