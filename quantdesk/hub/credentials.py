"""The hub token: from HF_TOKEN, the OS keyring or the huggingface_hub login — never plain config.

Only ``mask_token``'s form of a token is ever meant for display or logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from quantdesk.base.errors import QuantDeskError
from quantdesk.hub.endpoint import hub_endpoint
from quantdesk.hub.errors import translate_hub_error

KEYRING_SERVICE = "QuantDesk"
KEYRING_USER = "huggingface-token"
ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def _keyring():
    """The keyring module when a backend that really stores secrets is there; else None."""
    try:
        import keyring
        from keyring.backends import fail, null

        if isinstance(keyring.get_keyring(), (fail.Keyring, null.Keyring)):
            return None
        return keyring
    except Exception:  # no backend on this desktop: not an error, just no keyring
        return None


def keyring_name() -> str | None:
    """The OS keyring's name as its backend gives it ("SecretService Keyring"); None when there is none."""
    kr = _keyring()
    if kr is None:
        return None
    backend = kr.get_keyring()
    inner = getattr(backend, "backends", None)  # a chainer: name the one that answers first
    return str((inner[0] if inner else backend).name)


def _env_token() -> str | None:
    return next((os.environ[v] for v in ENV_VARS if os.environ.get(v)), None)


def _keyring_token() -> str | None:
    kr = _keyring()
    if kr is None:
        return None
    try:
        return kr.get_password(KEYRING_SERVICE, KEYRING_USER) or None
    except Exception:
        return None


def _login_token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:
        return None


def hub_token() -> str | None:
    return _env_token() or _keyring_token() or _login_token()


@dataclass(frozen=True)
class TokenStatus:
    source: str | None   # "HF_TOKEN" (or the other variable), "keyring", "huggingface_hub login", None
    masked: str | None   # the token in use, masked
    keyring: str | None  # the OS keyring's name, None when this desktop has none
    stored: bool         # a token is kept in the keyring (even when the environment overrides it)


def token_status() -> TokenStatus:
    """Which token the hub calls will use and where it comes from, for display."""
    env_var = next((v for v in ENV_VARS if os.environ.get(v)), None)
    stored = _keyring_token()
    if env_var:
        source, token = env_var, os.environ[env_var]
    elif stored:
        source, token = "keyring", stored
    else:
        token = _login_token()
        source = "huggingface_hub login" if token else None
    return TokenStatus(source, mask_token(token) if token else None, keyring_name(), stored is not None)


def mask_token(token: str) -> str:
    """``hf_…wxyz``: enough to tell tokens apart, too little to use one."""
    token = token.strip()
    if len(token) < 12:
        return "•" * 8
    return f"{token[:3]}…{token[-4:]}"


def save_token(token: str) -> bool:
    """Keep the token in the OS keyring; False when this desktop has none."""
    token = token.strip()
    if not token:
        raise QuantDeskError("the token is empty; paste a token from huggingface.co/settings/tokens")
    kr = _keyring()
    if kr is None:
        return False
    try:
        kr.set_password(KEYRING_SERVICE, KEYRING_USER, token)
    except Exception as exc:
        raise QuantDeskError(f"the OS keyring ({keyring_name()}) refused to store the token: {exc}",
                             "Unlock the keyring and try again, or set HF_TOKEN instead.") from None
    return True


def clear_token() -> None:
    kr = _keyring()
    if kr is not None:
        try:
            kr.delete_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:  # nothing stored: already clear
            pass


def check_token(token: str | None = None) -> str:
    """Ask the hub who ``token`` (default: the one in use) belongs to; returns the account name."""
    from huggingface_hub import HfApi

    token = (token or "").strip() or hub_token()
    if not token:
        raise QuantDeskError("there is no token to test", "Paste a token and save it first.")
    from quantdesk.hub.session import hub_session

    hub_session()  # a silent hub times out instead of hanging the button
    try:
        info = HfApi(endpoint=hub_endpoint()).whoami(token=token)
    except Exception as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise QuantDeskError(f"{hub_endpoint()} did not accept the token {mask_token(token)}",
                                 "Check that you copied the whole token and that it was not revoked.") from None
        raise translate_hub_error(exc, "the token check") from None
    return str(info.get("name") or "an unnamed account")
