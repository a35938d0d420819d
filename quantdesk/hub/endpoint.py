"""Which hub QuantDesk talks to: ``HF_ENDPOINT`` (tests, mirrors), then Settings, then huggingface.co."""

from __future__ import annotations

import os

from quantdesk.base.settings import load_settings

DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` wins (how tests and mirrors point the client elsewhere), then Settings."""
    return (os.environ.get("HF_ENDPOINT") or load_settings().hub_endpoint or DEFAULT_ENDPOINT).rstrip("/")
