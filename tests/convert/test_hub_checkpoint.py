"""`quantdesk quantize REPO --type T` for a hub repo that has only a Hugging Face checkpoint: every file
fetched and verified (LFS weights by SHA-256, the small files by git blob id), converted, quantized."""

from __future__ import annotations

import json

from quantdesk.base.settings import models_dir
from tests.cli.test_cli import run_cli
from tests.support.checkpoint_factory import write_llama_checkpoint

REPO = "someorg/Tiny-Llama-Finetune"


def _publish(hub, tmp_path, **kwargs) -> dict:
    folder = tmp_path / "ckpt"
    write_llama_checkpoint(folder, shards=2, bf16=True, **kwargs)
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    hub.add_repo(REPO, files, tags=("safetensors",))
    return files


def _left_behind() -> list[str]:
    root = models_dir()
    return [str(p.relative_to(root)) for sub in (".checkpoints", ".converting") if (root / sub).exists()
            for p in (root / sub).rglob("*") if p.is_file()]


def test_a_checkpoint_repo_is_fetched_verified_converted_and_quantized(fake_hub, tmp_path):
    _publish(fake_hub, tmp_path)
    out = run_cli("quantize", REPO, "--type", "Q8_0", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    [model] = [m for m in json.loads(run_cli("list", "--json").stdout) if m["name"] == data["name"]]
    assert model["source"] == "converted+quantized" and model["repo"] == REPO and model["quant"] == "Q8_0"
    origin = model["files"][0]["converted_from"]  # the checkpoint it came from, as the hub described it
    assert origin["repo"] == REPO and len(origin["revision"]) == 40
    assert set(origin["files"]["model-00001-of-00002.safetensors"]) == {"sha256"}
    assert set(origin["files"]["config.json"]) == {"git_blob"}
    assert _left_behind() == []  # neither the checkpoint nor the converted file is kept
    served = {r.filename for r in fake_hub.requests_for(REPO, method="GET") if r.filename}
    assert {"config.json", "tokenizer.model", "tokenizer_config.json", "model.safetensors.index.json",
            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} <= served


def test_a_shard_that_does_not_match_its_hash_is_refused_and_nothing_is_kept(fake_hub, tmp_path):
    _publish(fake_hub, tmp_path)
    fake_hub.set_fault(REPO, "model-00002-of-00002.safetensors", corrupt_byte_at=100)
    out = run_cli("quantize", REPO, "--type", "Q8_0")
    assert out.returncode == 1 and "checksum mismatch for model-00002-of-00002.safetensors" in out.stderr
    assert json.loads(run_cli("list", "--json").stdout) == [] and _left_behind() == []


def test_a_small_file_that_does_not_match_its_git_blob_id_is_refused(fake_hub, tmp_path):
    _publish(fake_hub, tmp_path)
    fake_hub.set_fault(REPO, "tokenizer_config.json", corrupt_byte_at=5)
    out = run_cli("quantize", REPO, "--type", "Q8_0")
    assert out.returncode == 1 and "expected git blob" in out.stderr and "tokenizer_config.json" in out.stderr
    assert not fake_hub.requests_for(REPO, "model-00001-of-00002.safetensors", method="GET")  # no weight fetched
    assert json.loads(run_cli("list", "--json").stdout) == [] and _left_behind() == []


def test_an_unsupported_architecture_is_refused_before_any_weight_is_fetched(fake_hub, tmp_path):
    write_llama_checkpoint(tmp_path / "ckpt", shards=2, architecture="GPTNeoXForCausalLM")
    files = {p.name: p for p in (tmp_path / "ckpt").iterdir() if p.is_file()}
    fake_hub.add_repo(REPO, files, tags=("safetensors",))
    out = run_cli("quantize", REPO, "--type", "Q8_0")
    assert out.returncode == 1 and "GPTNeoXForCausalLM" in out.stderr and "LlamaForCausalLM" in out.stderr
    assert not [r for r in fake_hub.requests_for(REPO, method="GET") if (r.filename or "").endswith(".safetensors")]
    assert _left_behind() == []


def test_a_repo_with_neither_gguf_nor_checkpoint_says_so(fake_hub):
    fake_hub.add_repo(REPO, {"README.md": b"# nothing here\n"}, tags=())
    out = run_cli("quantize", REPO, "--type", "Q8_0")
    assert out.returncode == 1 and "neither a full-precision GGUF nor a Hugging Face checkpoint" in out.stderr


def test_a_tokenizer_llama_cpp_cannot_take_is_refused_before_any_weight_is_fetched(fake_hub, tmp_path):
    from tests.support.checkpoint_factory import write_qwen_checkpoint

    folder = tmp_path / "ckpt"
    write_qwen_checkpoint(folder)
    data = json.loads((folder / "tokenizer.json").read_text())
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"
    (folder / "tokenizer.json").write_text(json.dumps(data))
    fake_hub.add_repo(REPO, {p.name: p for p in folder.iterdir() if p.is_file()}, tags=("safetensors",))
    out = run_cli("quantize", REPO, "--type", "Q8_0")
    assert out.returncode == 1 and "pre-tokenizer expression matches none" in out.stderr
    assert not fake_hub.requests_for(REPO, "model.safetensors", method="GET") and _left_behind() == []


def test_a_network_failure_keeps_the_verified_shards_and_the_next_try_resumes(fake_hub, tmp_path):
    _publish(fake_hub, tmp_path)
    shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    fake_hub.set_fault(REPO, shard2, statuses=[503] * 50, retry_after=0)  # no byte of it arrives
    out = run_cli("quantize", REPO, "--type", "Q8_0", env={"QUANTDESK_DOWNLOAD_TRIES": "1"})
    assert out.returncode == 1 and "checksum" not in out.stderr
    served = fake_hub.bytes_served[(REPO, shard1)]
    fake_hub.clear_faults()
    again = run_cli("quantize", REPO, "--type", "Q8_0", "--json")
    assert again.returncode == 0, again.stderr
    assert fake_hub.bytes_served[(REPO, shard1)] == served  # the first shard was not fetched again
    assert _left_behind() == []


def test_an_existing_output_is_refused_before_anything_is_fetched_or_converted(fake_hub, tmp_path):
    _publish(fake_hub, tmp_path)
    assert run_cli("quantize", REPO, "--type", "Q8_0").returncode == 0
    fake_hub.clear_requests()
    out = run_cli("quantize", REPO, "--type", "Q8_0")
    assert out.returncode == 1 and "already exists" in out.stderr
    assert not [r for r in fake_hub.requests_for(REPO, method="GET") if (r.filename or "").endswith(".safetensors")]
