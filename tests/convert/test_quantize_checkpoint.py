"""`quantdesk quantize FOLDER --type T`: a Hugging Face checkpoint converted, quantized, registered."""

from __future__ import annotations

import json

from quantdesk.base.settings import models_dir
from tests.cli.test_cli import run_cli
from tests.support.checkpoint_factory import write_llama_checkpoint


def test_a_checkpoint_folder_is_converted_quantized_and_registered(tmp_path):
    folder = tmp_path / "my-finetune"
    write_llama_checkpoint(folder, shards=2, bf16=True)
    out = run_cli("quantize", str(folder), "--type", "Q4_K_M", "--eval", "--eval-tokens", "32", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["type"] == "Q4_K_M" and data["output"].endswith("my-finetune-Q4_K_M.gguf")
    assert "converted my-finetune to GGUF" in out.stderr and "converting to GGUF" in out.stderr
    assert 0 <= data["report"]["kl_mean"] < 1.0 and data["report"]["top1_agreement"] > 0.5
    [model] = [m for m in json.loads(run_cli("list", "--json").stdout) if m["name"] == data["name"]]
    assert model["source"] == "converted+quantized" and model["source_sha256"] == data["source_sha256"]
    assert not any((models_dir() / ".converting").iterdir())  # the converted F16 was temporary
    chat = run_cli("chat", data["name"], "--prompt", "hello", "--max-tokens", "4", "--ignore-eos", "--ctx", "256",
                   "--json")
    assert chat.returncode == 0 and json.loads(chat.stdout)["tokens"] == 4


def test_a_damaged_checkpoint_is_refused_and_leaves_nothing(tmp_path):
    folder = tmp_path / "broken"
    write_llama_checkpoint(folder, shards=2)
    next(folder.glob("model-00002-of-00002.safetensors")).unlink()
    out = run_cli("quantize", str(folder), "--type", "Q8_0")
    assert out.returncode == 1
    assert "incomplete: 1 of 2 shards are missing" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(run_cli("list", "--json").stdout) == []
    converting = models_dir() / ".converting"
    assert not converting.exists() or not any(converting.iterdir())
