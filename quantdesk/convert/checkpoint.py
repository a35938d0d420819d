"""A Hugging Face checkpoint folder, checked before any conversion work: config, shards, tokenizer.

Every refusal is one sentence naming the file and what is wrong with it, raised before anything is
written, so a bad folder costs nothing and leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdesk.base.errors import QuantDeskError

# HF class name -> llama.cpp architecture, for the architectures this converter has proven.
SUPPORTED = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
             "Qwen3ForCausalLM": "qwen3", "Phi3ForCausalLM": "phi3", "Gemma2ForCausalLM": "gemma2",
             "Gemma3ForCausalLM": "gemma3"}


class CheckpointError(QuantDeskError):
    """The folder is not a checkpoint this converter can turn into a GGUF; the message says why."""


@dataclass
class Checkpoint:
    folder: Path
    config: dict[str, Any]
    hf_architecture: str
    architecture: str  # llama.cpp's name
    shards: list[Path]
    weight_map: dict[str, Path] = field(default_factory=dict)  # tensor name -> shard

    def get(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            if self.config.get(key) is not None:
                return self.config[key]
        return default

    @property
    def weight_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.shards)


def supported_list() -> str:
    return ", ".join(sorted(set(SUPPORTED)))


def read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    return parse_json(raw, path.name)


def parse_json(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{name} is not UTF-8 text; the checkpoint is damaged") from None
    except ValueError as exc:
        raise CheckpointError(f"{name} is not valid JSON ({exc.args[0] if exc.args else exc})") from None


def architecture_of(config: Any, where: str = "") -> str:
    """The Hugging Face architecture config.json names, when the converter takes it; else a refusal
    that lists the ones it does (``where``: what the config belongs to, for the message)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(config, dict):
        raise CheckpointError(f"{prefix}config.json does not describe a model (it is not a JSON object)")
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        raise CheckpointError(f"{prefix}config.json names no architecture (\"architectures\" is missing); the "
                              f"converter needs one of: {supported_list()}")
    if architectures[0] not in SUPPORTED:
        raise CheckpointError(f"{prefix}{architectures[0]} checkpoints cannot be converted yet; supported: "
                              f"{supported_list()}")
    return architectures[0]


def is_checkpoint_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def open_checkpoint(folder: str | Path) -> Checkpoint:
    """The checkpoint in ``folder``, or a :class:`CheckpointError` saying what is missing or wrong."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"no such folder: {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json: it is not a Hugging Face checkpoint")
    config = read_json(config_path)
    hf_arch = architecture_of(config)
    shards, weight_map = _shards(folder)
    return Checkpoint(folder, config, hf_arch, SUPPORTED[hf_arch], shards, weight_map)


def _shards(folder: Path) -> tuple[list[Path], dict[str, Path]]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = read_json(index)
        mapping = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(mapping, dict) or not mapping:
            raise CheckpointError("model.safetensors.index.json has no weight_map")
        names = sorted(set(mapping.values()), key=str)
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CheckpointError(f"the checkpoint is incomplete: {len(missing)} of {len(names)} shards are missing "
                                  f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''})")
        return [folder / n for n in names], {k: folder / v for k, v in mapping.items()}
    single = folder / "model.safetensors"
    if single.is_file():
        return [single], {}
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise CheckpointError("the checkpoint's weights are PyTorch pickles (.bin), which QuantDesk does not open "
                              "(they can run code); it needs safetensors files")
    raise CheckpointError(f"{folder} has no model.safetensors nor model.safetensors.index.json")
