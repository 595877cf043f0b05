"""Chat messages -> a model's prompt, through the model's chat template (Jinja, as Hugging Face tokenizers
write it), rendered in Jinja's immutable sandbox: a template is configuration, not code the gateway trusts.

Where a model's template is found, first that answers:
1. its config's parameter ``chat_template`` (Triton serves the config, so a remote fleet needs no files);
2. ``CHAT_TEMPLATE_DIR/<model>/tokenizer_config.json``'s ``chat_template`` (a directory laid out like the
   model repository: the repository itself locally, a copy baked into the image under Lambda);
3. :data:`DEFAULT_TEMPLATE`."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.errors import BadRequest, GatewayError

# Each message as "<role>: <content>" on its own line, then "assistant:" for the model to continue.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


class TemplateBroken(GatewayError):
    """The model's chat template does not render (its configuration's fault, not the caller's)."""

    status = 500


class _Raised(Exception):
    """A template's own ``raise_exception(...)``: it refuses the caller's messages."""


def _raise_exception(message: str) -> None:
    raise _Raised(message)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    return env


@lru_cache(maxsize=64)
def _compiled(source: str) -> Any:
    try:
        return _environment().from_string(source)
    except TemplateError as exc:
        raise TemplateBroken("the model's chat template does not compile", detail=str(exc)) from None


@lru_cache(maxsize=256)
def _tokenizer_config(directory: str, model: str) -> dict[str, Any]:
    # Read once per process: the directory is part of the deployment (the image, or the local repository).
    path = Path(directory) / model / "tokenizer_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TemplateBroken(
            "the model's tokenizer_config.json cannot be read", detail=f"{path}: {exc}"
        ) from None
    return value if isinstance(value, dict) else {}


def _token(config: dict[str, Any], name: str) -> str:
    value = config.get(name)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def render(model: str, parameters: dict[str, str], template_dir: str, messages: list[dict[str, str]]) -> str:
    """``messages`` (role, content) as the prompt ``model`` expects, ending where the assistant answers."""
    config = _tokenizer_config(template_dir, model) if template_dir else {}
    source = parameters.get("chat_template") or config.get("chat_template") or DEFAULT_TEMPLATE
    if not isinstance(source, str):
        # A list of named templates (tokenizers with tool-use variants): the one called "default".
        source = next((t.get("template", "") for t in source if t.get("name") == "default"), DEFAULT_TEMPLATE)
    try:
        return str(
            _compiled(source).render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=_token(config, "bos_token"),
                eos_token=_token(config, "eos_token"),
            )
        )
    except _Raised as exc:
        raise BadRequest(f"messages: {exc}") from None
    except TemplateError as exc:
        raise TemplateBroken("the model's chat template failed to render", detail=str(exc)) from None
