"""The hub token lives in the OS keyring, is only ever shown masked, and never reaches settings.json."""

from __future__ import annotations

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import Settings, save_settings, settings_path
from quantdesk.hub.credentials import (
    KEYRING_SERVICE,
    KEYRING_USER,
    check_token,
    clear_token,
    hub_token,
    mask_token,
    save_token,
    token_status,
)

TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123"


def test_saved_token_is_used_and_kept_out_of_settings(memory_keyring):
    assert save_token(f"  {TOKEN}\n") is True
    assert memory_keyring.secrets[(KEYRING_SERVICE, KEYRING_USER)] == TOKEN
    assert hub_token() == TOKEN
    save_settings(Settings(threads=2))
    assert TOKEN not in settings_path().read_text(encoding="utf-8")
    status = token_status()
    assert status.source == "keyring" and status.keyring == "Memory Keyring" and status.stored
    assert status.masked == "hf_…0123" and TOKEN not in repr(status)
    clear_token()
    assert hub_token() is None and token_status().source is None
    clear_token()  # clearing twice is fine


def test_environment_overrides_the_keyring(memory_keyring, monkeypatch):
    save_token(TOKEN)
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment_9876")
    status = token_status()
    assert hub_token() == "hf_from_the_environment_9876"
    assert status.source == "HF_TOKEN" and status.masked == "hf_…9876" and status.stored


def test_without_a_keyring_nothing_is_stored():
    """The tests' default backend (null) keeps nothing: saving says so instead of pretending."""
    assert save_token(TOKEN) is False
    assert hub_token() is None and token_status().keyring is None


def test_empty_token_is_refused(memory_keyring):
    with pytest.raises(QuantDeskError, match="empty"):
        save_token("   ")


def test_short_tokens_are_fully_masked():
    assert mask_token("abc") == "••••••••"


def test_check_token_asks_the_hub(fake_hub):
    fake_hub.extra_tokens.add(TOKEN)
    assert check_token(TOKEN) == "fake-user"
    with pytest.raises(QuantDeskError, match="did not accept the token hf_…nope"):
        check_token("hf_wrong_token_nope")
