"""The file where hub refreshes of the offline catalog are remembered (``<data>/catalog-refresh.json``).

Its own module so that reading the catalog (``offline``) and writing refreshes (``refresh``) share it
without importing each other.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from quantdesk.base.files import write_json_atomic
from quantdesk.base.paths import data_dir

MAX_AGE_DAYS = 7


def refresh_path() -> Path:
    return data_dir() / "catalog-refresh.json"


def now_stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_refresh() -> dict[str, Any]:
    """The remembered hub data: ``{"refreshed_at", "endpoint", "repos": {repo: {...}}}``; empty if none."""
    try:
        data = json.loads(refresh_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("repos"), dict) else {}


def write_refresh(data: dict[str, Any]) -> None:
    """Replace the file whole: a crash mid-write leaves the previous one, never half of one."""
    write_json_atomic(refresh_path(), data, indent=1, sort_keys=True)


def refresh_due(max_age_days: float = MAX_AGE_DAYS) -> bool:
    """True when no full refresh happened yet, or the last one is older than ``max_age_days``."""
    stamp = read_refresh().get("refreshed_at")
    if not stamp:
        return True
    try:
        age = datetime.now(timezone.utc) - datetime.fromisoformat(stamp)
    except ValueError:
        return True
    return age.total_seconds() > max_age_days * 86400
