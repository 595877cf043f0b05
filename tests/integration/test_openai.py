"""The OpenAI-compatible ``/v1`` through the official ``openai`` SDK (and ``curl -N``) against a gateway under
uvicorn: each answer compared with the text Triton's own HTTP ``generate`` gives for the same prompt and
sampling, the two input contracts (vLLM's, TensorRT-LLM's ensemble), the chat template from the model's
tokenizer_config.json (and the default one), usage where the model counts tokens, and OpenAI's error shape."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from localdev.tritonserver import TritonServer, free_port
from service.settings import Settings
from tests.gateway import serve_gateway
from tests.integration.test_generate import settled, unique

# text_gen's tokenizer_config.json template, rendered by hand; text_gen_trtllm has none: the default one.
TEXT_GEN_CHAT = "<|system|>\nBe brief.\n<|user|>\nhi there\n<|assistant|>\n"
DEFAULT_CHAT = "system: Be brief.\nuser: hi there\nassistant:"
MESSAGES: list[Any] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def gateway(triton: TritonServer, model_repository: Path) -> Iterator[str]:
    settings = Settings(
        triton_grpc_url=triton.grpc_url,
        chat_template_dir=str(model_repository),
        max_tokens_limit=64,
        max_prompt_bytes=4096,
    )
    with serve_gateway(settings) as url:
        yield url


@pytest.fixture
def sdk(gateway: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused-locally", max_retries=0)
    yield client
    client.close()


def triton_text(
    triton: TritonServer, model: str, prompt: str, max_tokens: int, stop: list[str] | None = None
) -> str:
    """What Triton's own HTTP generate answers for ``prompt`` (the model's text only)."""
    if model == "text_gen":
        params: dict[str, Any] = {"max_tokens": max_tokens, **({"stop": stop} if stop else {})}
        body: dict[str, Any] = {
            "text_input": prompt,
            "exclude_input_in_output": True,
            "sampling_parameters": json.dumps(params),
        }
    else:
        body = {"text_input": prompt, "max_tokens": max_tokens, **({"stop_words": stop} if stop else {})}
    answer = httpx.post(f"{triton.http_url}/v2/models/{model}/generate", json=body, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["text_output"])


def test_models_list_names_the_text_models(sdk):
    names = {model.id for model in sdk.models.list()}
    assert {"text_gen", "text_gen_trtllm", "densenet_onnx"} <= names
    assert sdk.models.retrieve("text_gen").id == "text_gen"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("no_such_model")


@pytest.mark.parametrize("model", ["text_gen", "text_gen_trtllm"])
def test_completion_is_the_models_text(sdk, triton, model):
    got = sdk.completions.create(model=model, prompt="Once upon", max_tokens=5, temperature=0.7, top_p=0.9)
    assert got.object == "text_completion"
    assert got.choices[0].text == triton_text(triton, model, "Once upon", 5)
    if model == "text_gen":  # vLLM's contract reports token counts
        assert got.usage is not None
        assert (got.usage.prompt_tokens, got.usage.completion_tokens, got.usage.total_tokens) == (2, 5, 7)
        assert got.choices[0].finish_reason == "length"
    else:
        assert got.usage is None


@pytest.mark.parametrize("model", ["text_gen", "text_gen_trtllm"])
def test_streamed_completion_sends_one_chunk_per_token(sdk, triton, model):
    chunks = list(sdk.completions.create(model=model, prompt="Stream it", max_tokens=6, stream=True))
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) == 6
    assert "".join(texts) == triton_text(triton, model, "Stream it", 6)
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_stop_ends_the_completion(sdk, triton):
    # The stop sequence is the model's own fourth word for this prompt, so it is sure to be met.
    stop = triton_text(triton, "text_gen", "Stop here", 12).split()[3]
    want = triton_text(triton, "text_gen", "Stop here", 12, [stop])
    got = sdk.completions.create(model="text_gen", prompt="Stop here", max_tokens=12, stop=[stop])
    assert got.choices[0].text == want
    assert got.choices[0].finish_reason == "stop"
    assert stop not in want and len(want.split()) == 3


@pytest.mark.parametrize(
    ("model", "prompt"), [("text_gen", TEXT_GEN_CHAT), ("text_gen_trtllm", DEFAULT_CHAT)]
)
def test_chat_completion_goes_through_the_chat_template(sdk, triton, model, prompt):
    got = sdk.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4)
    assert got.object == "chat.completion"
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == triton_text(triton, model, prompt, 4)


@pytest.mark.parametrize(
    ("model", "prompt"), [("text_gen", TEXT_GEN_CHAT), ("text_gen_trtllm", DEFAULT_CHAT)]
)
def test_streamed_chat_sends_deltas_then_usage(sdk, triton, model, prompt):
    chunks = list(
        sdk.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=4, stream=True, stream_options={"include_usage": True}
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == triton_text(triton, model, prompt, 4)
    finished = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finished) == 1
    assert chunks[-1].choices == []
    if model == "text_gen":
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    else:
        assert chunks[-1].usage is None


def curl_completion_text(base_url: str, prompt: str, max_tokens: int) -> str:
    """The text of a streamed completion as `curl -N` receives it, its SSE ending in ``data: [DONE]``."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = json.dumps({"model": "text_gen", "prompt": prompt, "max_tokens": max_tokens, "stream": True})
    out = subprocess.run(
        [curl, "-sS", "-N", f"{base_url}/v1/completions", "-H", "Content-Type: application/json", "-d", body],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    return "".join(c["choices"][0]["text"] for c in chunks)


def test_curl_streams_sse_to_done(gateway, triton):
    assert curl_completion_text(gateway, "curl", 3) == triton_text(triton, "text_gen", "curl", 3)


def test_closing_a_streamed_completion_stops_the_model(sdk, model_repository):
    prompt = unique("sdk disconnect")
    stream = sdk.with_options(timeout=30).completions.create(
        model="text_gen", prompt=prompt, max_tokens=40, stream=True, extra_body={}
    )
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].text)
        if received == 2:
            break
    stream.close()
    # Each token is 10 ms here; 40 would take 0.4 s, well inside settled()'s quiet period.
    assert settled(model_repository, "text_gen", prompt) < 40


def test_sdk_errors_carry_openais_shape(sdk):
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.completions.create(model="no_such_model", prompt="x")
    assert missing.value.status_code == 404
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as two:
        sdk.completions.create(model="text_gen", prompt="x", n=2)
    assert two.value.body["param"] == "n"  # type: ignore[index]


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": "text_gen", "prompt": "x", **fields}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "text_gen", "messages": [{"role": "user", "content": "x"}], **fields}


BAD: dict[str, tuple[str, Any, int, str | None]] = {
    "not json": ("completions", b"{", 400, None),
    "an array": ("completions", [1], 400, None),
    "no model": ("completions", {"prompt": "x"}, 400, "model"),
    "empty model": ("completions", completion(model=""), 400, "model"),
    "no prompt": ("completions", {"model": "text_gen"}, 400, "prompt"),
    "two prompts": ("completions", completion(prompt=["a", "b"]), 400, "prompt"),
    "token prompt": ("completions", completion(prompt=[1, 2]), 400, "prompt"),
    "n=2": ("completions", completion(n=2), 400, "n"),
    "n=0": ("completions", completion(n=0), 400, "n"),
    "max_tokens 0": ("completions", completion(max_tokens=0), 400, "max_tokens"),
    "max_tokens over the cap": ("completions", completion(max_tokens=65), 400, "max_tokens"),
    "max_tokens a string": ("completions", completion(max_tokens="9"), 400, "max_tokens"),
    "temperature 3": ("completions", completion(temperature=3), 400, "temperature"),
    "top_p 2": ("completions", completion(top_p=2), 400, "top_p"),
    "five stops": ("completions", completion(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    "empty stop": ("completions", completion(stop=[""]), 400, "stop"),
    "stream a string": ("completions", completion(stream="yes"), 400, "stream"),
    "echo": ("completions", completion(echo=True), 400, "echo"),
    "logprobs": ("completions", completion(logprobs=2), 400, "logprobs"),
    "unknown field": ("completions", completion(frobnicate=1), 400, "frobnicate"),
    "prompt too long": ("completions", completion(prompt="x" * 5000), 400, "prompt"),
    "unknown model": ("completions", completion(model="no_such_model"), 404, "model"),
    "image model": ("completions", completion(model="densenet_onnx"), 400, "model"),
    "no messages": ("chat/completions", {"model": "text_gen"}, 400, "messages"),
    "empty messages": ("chat/completions", chat(messages=[]), 400, "messages"),
    "bad role": (
        "chat/completions",
        chat(messages=[{"role": "robot", "content": "x"}]),
        400,
        "messages.0.role",
    ),
    "image part": (
        "chat/completions",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        400,
        "messages.0.content",
    ),
    "chat max_completion_tokens over the cap": (
        "chat/completions",
        chat(max_completion_tokens=99),
        400,
        "max_completion_tokens",
    ),
    "chat n=3": ("chat/completions", chat(n=3), 400, "n"),
    "chat too long": (
        "chat/completions",
        chat(messages=[{"role": "user", "content": "x" * 5000}]),
        400,
        "messages",
    ),
    "chat unknown model": ("chat/completions", chat(model="nope"), 404, "model"),
    "chat stream_options junk": (
        "chat/completions",
        chat(stream=True, stream_options={"x": 1}),
        400,
        "stream_options.x",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_requests_are_openai_errors_naming_the_param(gateway, case):
    path, body, status, param = BAD[case]
    with httpx.Client(base_url=gateway, timeout=30) as client:
        if isinstance(body, bytes):
            answer = client.post(f"/v1/{path}", content=body)
        else:
            answer = client.post(f"/v1/{path}", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    # The param named, or a part of it (messages.0.content.0.type for a bad part of messages.0.content).
    assert error["param"] == param or (param and error["param"].startswith(param + "."))
    assert "127.0.0.1" not in error["message"] and "Traceback" not in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/nothing", 404), ("POST", "/v1/embeddings", 404), ("DELETE", "/v1/completions", 405)],
)
def test_other_v1_paths_and_methods_are_openai_errors(gateway, method, path, status):
    answer = httpx.request(method, f"{gateway}{path}", timeout=30)
    assert answer.status_code == status
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_triton_down_is_an_openai_server_error_with_retry_after():
    # GIVEN nothing listening where Triton should be WHEN /v1 is called THEN 503 in OpenAI's shape.
    settings = Settings(triton_grpc_url=f"127.0.0.1:{free_port()}", idle_reconnect_seconds=0)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for answer in (
            client.get("/v1/models"),
            client.post("/v1/completions", json={"model": "text_gen", "prompt": "x"}),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            error = answer.json()["error"]
            assert error["type"] == "server_error" and "unavailable" in error["message"]
            assert "127.0.0.1" not in error["message"]
