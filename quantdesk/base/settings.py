"""User settings the core honours too (the CLI and the app read the same file).

Kept as JSON in the data folder, written atomically. Secrets never go here: the hub token lives
in the OS keyring (see ``quantdesk.hub.credentials``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.files import write_json_atomic
from quantdesk.base.paths import data_dir

THEMES = ("system", "light", "dark")


@dataclass
class Settings:
    models_dir: str | None = None       # None: <data folder>/models
    hub_endpoint: str | None = None     # None: HF_ENDPOINT or https://huggingface.co
    threads: int | None = None          # None: llama.cpp's choice for this CPU
    theme: str = "system"
    max_concurrent_downloads: int = 2
    enter_sends: bool = True            # Chat: Enter sends, Shift+Enter is a new line; False: Ctrl+Enter sends


def settings_path() -> Path:
    return data_dir() / "settings.json"


def load_settings() -> Settings:
    """The saved settings; unknown keys are ignored and a damaged file means defaults."""
    try:
        raw = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()
    known = {f.name for f in fields(Settings)}
    values = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
    settings = Settings(**values)
    if settings.theme not in THEMES:
        settings.theme = "system"
    return settings


def save_settings(settings: Settings) -> None:
    write_json_atomic(settings_path(), asdict(settings), indent=2)


def models_dir() -> Path:
    """The library's folder for GGUF files: ``<data folder>/models`` unless Settings moved it."""
    chosen = load_settings().models_dir
    path = Path(chosen).expanduser() if chosen else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def configured_threads() -> int | None:
    """The CPU threads the user chose in Settings; None means each job picks its own default."""
    threads = load_settings().threads
    return threads if isinstance(threads, int) and threads > 0 else None


def normalize_endpoint(text: str) -> str | None:
    """A hub endpoint as typed, checked: an http(s) URL without query, or None (empty: the default)."""
    text = text.strip().rstrip("/")
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise QuantDeskError(f"'{text}' is not a hub address; enter an http(s) URL such as https://hf-mirror.com",
                             "Leave the field empty to use https://huggingface.co.")
    return text
