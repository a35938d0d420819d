"""Core settings: saved and read back, endpoint checked, the threads choice reaching the jobs."""

from __future__ import annotations

import json

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.base.settings import (
    Settings,
    load_settings,
    normalize_endpoint,
    save_settings,
    settings_path,
)
from quantdesk.chat.engine import plan_load
from quantdesk.hardware.machine import load_hardware_spec
from quantdesk.quantize.quantizer import prepare


def test_round_trip_and_a_damaged_file_means_defaults():
    save_settings(Settings(threads=3, theme="dark", hub_endpoint="https://hf-mirror.com"))
    assert load_settings() == Settings(threads=3, theme="dark", hub_endpoint="https://hf-mirror.com")
    settings_path().write_text("{not json", encoding="utf-8")
    assert load_settings() == Settings()
    settings_path().write_text(json.dumps({"theme": "purple", "future_key": 1}), encoding="utf-8")
    assert load_settings() == Settings()


@pytest.mark.parametrize("text,expected", [("", None), ("  ", None), ("https://hf-mirror.com/", "https://hf-mirror.com"),
                                           ("http://127.0.0.1:8080", "http://127.0.0.1:8080")])
def test_endpoint_accepts_http_urls_and_empty(text, expected):
    assert normalize_endpoint(text) == expected


@pytest.mark.parametrize("text", ["hf-mirror.com", "ftp://mirror", "https://", "https://x.org/?a=1"])
def test_endpoint_refuses_what_is_not_a_hub_address(text):
    with pytest.raises(QuantDeskError, match="not a hub address"):
        normalize_endpoint(text)


def test_threads_setting_reaches_plan_load_unless_given(tiny_model):
    hw = load_hardware_spec("cpu-16gb-laptop")
    default = plan_load(tiny_model, hw).settings.n_threads
    save_settings(Settings(threads=default + 3))
    assert plan_load(tiny_model, hw).settings.n_threads == default + 3
    assert plan_load(tiny_model, hw, threads=1).settings.n_threads == 1  # an explicit value still wins


def test_threads_setting_reaches_the_quantizer(tiny_model, tmp_path):
    save_settings(Settings(threads=5))
    assert prepare(tiny_model, "Q8_0", tmp_path / "o.gguf")[2].threads == 5
    assert prepare(tiny_model, "Q8_0", tmp_path / "o.gguf", threads=2)[2].threads == 2
