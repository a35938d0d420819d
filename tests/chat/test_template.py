"""The model's chat template renders in a sandbox; a missing or broken one falls back by name."""

from __future__ import annotations

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.chat.sampling import Sampling, defaults_for
from quantdesk.chat.template import render_prompt, template_for
from tests.support.gguf_factory import CHATML_TEMPLATE

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
LLAMA3_LIKE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
               "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def test_model_template_is_used_with_its_bos_token():
    t = template_for({"tokenizer.chat_template": LLAMA3_LIKE, "tokenizer.ggml.tokens": ["<unk>", "<|bot|>"],
                      "tokenizer.ggml.bos_token_id": 1})
    assert t.source == "model" and t.note is None
    prompt, used = render_prompt(t, MESSAGES)
    assert used is t
    assert prompt.startswith("<|bot|><|start_header_id|>system")
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_missing_template_falls_back_to_named_chatml():
    t = template_for({})
    assert t.source == "chatml" and "no chat template" in t.note and "chatml" in t.note
    assert render_prompt(t, MESSAGES)[0] == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                          "<|im_start|>assistant\n")
    assert "<|im_end|>" in t.stop


def test_template_that_raises_falls_back_and_says_why():
    t = template_for({"tokenizer.chat_template": "{{ raise_exception('roles must alternate') }}"})
    assert t.source == "chatml"
    assert "failed to render" in t.note and "roles must alternate" in t.note


def test_sandbox_blocks_python_internals():
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    t = template_for({"tokenizer.chat_template": hostile})
    assert t.source == "chatml"  # the sandbox refused it; we did not run it
    assert "SecurityError" in t.note


def test_template_refusing_system_role_gets_it_merged_into_first_user_turn():
    no_system = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                 "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    t = template_for({"tokenizer.chat_template": no_system})
    assert t.source == "model"
    assert render_prompt(t, MESSAGES)[0] == "[user] Be brief.\n\nHi\n"


def test_unrenderable_conversation_is_a_clear_error():
    t = template_for({"tokenizer.chat_template": CHATML_TEMPLATE})
    with pytest.raises(QuantDeskError, match="could not render"):
        render_prompt(t, [{"role": "user"}])


@pytest.mark.parametrize("hostile, why", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took longer than"),
    ("{{ 'x' * 10000000000 }}", "repetition"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursed"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}", "output passed"),
    ("{% set ns = namespace(s='x' * 900000) %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "memory"),
])
def test_a_template_that_hangs_floods_or_recurses_is_stopped_and_replaced(hostile, why):
    import time

    t0 = time.monotonic()
    t = template_for({"tokenizer.chat_template": hostile})
    assert t.source == "chatml" and why in t.note and "using the chatml fallback" in t.note
    assert time.monotonic() - t0 < 10
    assert render_prompt(t, MESSAGES)[0].startswith("<|im_start|>system")  # the renderer is usable again


def test_a_template_that_goes_bad_on_a_long_conversation_is_replaced_for_it():
    """Fine on the probe conversation, endless on a longer one: that conversation gets the fallback."""
    sneaky = ("{% if messages|length > 4 %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
              "{% endfor %}{% endif %}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    t = template_for({"tokenizer.chat_template": sneaky})
    assert t.source == "model"
    long = MESSAGES + [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "More"},
                       {"role": "assistant", "content": "Sure"}, {"role": "user", "content": "Again"}]
    prompt, used = render_prompt(t, long)
    assert used.source == "chatml" and "took longer than" in used.note and "<|im_start|>user\nAgain" in prompt


def test_sampling_defaults_come_from_gguf_metadata_when_given():
    assert defaults_for({}) == Sampling()
    s = defaults_for({"general.sampling.temp": 0.6, "general.sampling.top_k": 20.0, "general.sampling.top_p": "x"})
    assert (s.temperature, s.top_k, s.top_p) == (0.6, 20, Sampling().top_p)
    assert "seed" not in Sampling().request_fields() and Sampling(seed=3).request_fields()["seed"] == 3
    assert Sampling.from_json({**s.to_json(), "unknown": 1}) == s
