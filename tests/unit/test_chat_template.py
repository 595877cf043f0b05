"""Chat templates: where a model's template comes from, the default one, and the sandbox it runs in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.chat_template import DEFAULT_TEMPLATE, TemplateBroken, render
from service.errors import BadRequest

MESSAGES = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]


def repository(tmp_path: Path, model: str, config: object) -> str:
    (tmp_path / model).mkdir()
    (tmp_path / model / "tokenizer_config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_the_default_template_without_any():
    assert render("m", {}, "", MESSAGES) == "system: S\nuser: U\nassistant:"
    assert "add_generation_prompt" in DEFAULT_TEMPLATE


def test_tokenizer_config_with_its_special_tokens(tmp_path):
    config = {
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}",
        "bos_token": {"content": "<s>"},
        "eos_token": "</s>",
    }
    assert render("tok_a", {}, repository(tmp_path, "tok_a", config), MESSAGES) == "<s>[S][U]</s>"


def test_a_config_parameter_wins_over_the_file(tmp_path):
    directory = repository(tmp_path, "tok_b", {"chat_template": "file"})
    assert render("tok_b", {"chat_template": "param"}, directory, MESSAGES) == "param"


def test_the_default_of_a_list_of_named_templates(tmp_path):
    config = {
        "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain"}]
    }
    assert render("tok_c", {}, repository(tmp_path, "tok_c", config), MESSAGES) == "plain"


def test_raise_exception_refuses_the_messages():
    refuse = "{{ raise_exception('first message must be the user') }}"
    template = "{% if messages[0].role != 'user' %}" + refuse + "{% endif %}"
    with pytest.raises(BadRequest, match="messages: first message must be the user"):
        render("m", {"chat_template": template}, "", MESSAGES)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # the classic escape: unsafe attributes
        "{{ messages.append(1) }}",  # the immutable sandbox: no mutating the caller's messages
        "{% for %}",  # does not compile
    ],
)
def test_a_hostile_or_broken_template_is_a_server_error_not_a_leak(template):
    with pytest.raises(TemplateBroken) as broken:
        render("m", {"chat_template": template}, "", MESSAGES)
    assert broken.value.status == 500
    assert "__subclasses__" not in broken.value.message


def test_an_unreadable_tokenizer_config_is_a_server_error(tmp_path):
    (tmp_path / "tok_d").mkdir()
    (tmp_path / "tok_d" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TemplateBroken):
        render("tok_d", {}, str(tmp_path), MESSAGES)
