"""`quantdesk chat`, `serve` and `chats` as users and other tools see them."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time

import psutil

from quantdesk.chat.sampling import Sampling
from quantdesk.chat.store import ChatStore
from tests.cli.test_cli import run_cli

NO_BYTES = {str(i): -100.0 for i in range(3, 259)}  # see tests/core/test_chat_session.py


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_chat_prompt_json_contract_and_stored_conversation(tiny_model):
    out = run_cli("chat", str(tiny_model), "--prompt", "Hello there", "--max-tokens", "8", "--ignore-eos",
                  "--ctx", "512", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"text", "tokens", "ttft_s", "tokens_per_s", "gpu_layers"} <= set(data)
    assert data["tokens"] == 8 and data["gpu_layers"] == 0 and data["ttft_s"] > 0 and data["tokens_per_s"] > 0
    assert isinstance(data["text"], str) and data["n_ctx"] == 512 and data["template"] == "model"
    assert "Loaded in" in out.stderr and "CPU" in out.stderr

    listed = json.loads(run_cli("chats", "--json").stdout)
    assert [c["title"] for c in listed] == ["Hello there"]
    cid = str(listed[0]["id"])
    exported = json.loads(run_cli("chats", "export", cid, "--format", "json").stdout)
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert exported["messages"][1]["content"] == data["text"]
    assert run_cli("chats", "rename", cid, "Greetings").returncode == 0
    assert json.loads(run_cli("chats", "search", "greet", "--json").stdout)[0]["title"] == "Greetings"
    assert "**You**" in run_cli("chats", "show", cid).stdout
    assert run_cli("chats", "rm", cid).returncode == 0
    assert json.loads(run_cli("chats", "--json").stdout) == []
    missing = run_cli("chats", "show", cid)
    assert missing.returncode == 1 and "no conversation" in missing.stderr


def test_unknown_model_is_a_one_line_error():
    out = run_cli("chat", "no-such-model", "--prompt", "hi")
    assert out.returncode == 1 and "neither a model in the library" in out.stderr
    assert "Traceback" not in out.stderr


def test_killing_the_app_mid_reply_loses_nothing_shown(tiny_model, _isolated_home):
    conv = ChatStore().create(sampling=Sampling(max_tokens=100000, seed=1, ignore_eos=True,
                                                logit_bias=NO_BYTES).to_json())
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "chat", str(tiny_model), "--conversation",
                             str(conv.id), "--prompt", "Tell me everything", "--ctx", "2048"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    shown = b""
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + 120
    while len(shown) < 40:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()
        shown += proc.stdout.read() or b""
        time.sleep(0.01)
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert children and all(_gone(pid) for pid in children), "the model process outlived the app"
    reply = ChatStore().get(conv.id).messages[-1]
    assert reply.role == "assistant" and reply.status == "interrupted"
    assert reply.content.encode().startswith(shown.decode(errors="ignore").encode())


def test_serve_answers_an_openai_streaming_chat_request(tiny_model):
    proc = subprocess.Popen([sys.executable, "-m", "quantdesk", "serve", str(tiny_model), "--port", "0",
                             "--ctx", "512", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    try:
        text = ""
        while True:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            text += line
            try:
                info = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
        assert info["url"].startswith("http://127.0.0.1:") and info["url"].endswith("/v1")
        conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=60)
        conn.request("GET", "/v1/models")
        models = json.loads(conn.getresponse().read())
        assert models["data"] and models["data"][0]["id"]
        body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "stream": True, "max_tokens": 8, "logit_bias": {"2": -100}}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and "text/event-stream" in response.getheader("content-type")
        payloads = [line[5:].strip() for line in response.read().decode().splitlines() if line.startswith("data:")]
        assert payloads[-1] == "[DONE]"
        chunks = [json.loads(p) for p in payloads[:-1]]
        assert len(chunks) >= 3 and all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) >= 2
        child = info["load"]["pid"]
        assert psutil.pid_exists(child)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0 and _gone(child)
