"""The hub token: from HF_TOKEN, the huggingface_hub login, or the OS keyring — never plain config."""

from __future__ import annotations

import os

KEYRING_SERVICE = "QuantDesk"
KEYRING_USER = "huggingface-token"


def _keyring():
    try:
        import keyring
        from keyring.backends import fail

        if isinstance(keyring.get_keyring(), fail.Keyring):
            return None
        return keyring
    except Exception:  # no backend on this desktop: not an error, just no keyring
        return None


def hub_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    kr = _keyring()
    if kr is not None:
        try:
            token = kr.get_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:
            token = None
        if token:
            return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def save_token(token: str) -> bool:
    """Keep the token in the OS keyring; False when this desktop has none."""
    kr = _keyring()
    if kr is None:
        return False
    kr.set_password(KEYRING_SERVICE, KEYRING_USER, token)
    return True


def clear_token() -> None:
    kr = _keyring()
    if kr is not None:
        try:
            kr.delete_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:
            pass
