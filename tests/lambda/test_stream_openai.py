"""The generation routes through the streaming Lambda entry: the official openai SDK and httpx against the
API Gateway stand-in, through the Runtime API stand-in to ``python -m service.lambda_stream`` and the real
Triton's text models. Each answer is Triton's own text (``tests/integration/test_openai.py``), each stream
arrives as the model produces it (the model's own count of responses sent), and a caller that closes its
stream stops the model. ``curl -N`` goes the same way."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.integration.test_generate import sent, settled, unique
from tests.integration.test_openai import (
    DEFAULT_CHAT,
    MESSAGES,
    TEXT_GEN_CHAT,
    curl_completion_text,
    triton_text,
)


@pytest.fixture
def sdk(stream_gateway) -> Iterator[openai.OpenAI]:
    gateway, _ = stream_gateway
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused-locally", max_retries=0, timeout=30)
    yield client
    client.close()


def test_models_list(sdk):
    assert {"text_gen", "text_gen_trtllm"} <= {model.id for model in sdk.models.list()}


@pytest.mark.parametrize("model", ["text_gen", "text_gen_trtllm"])
def test_completion(sdk, triton, model):
    got = sdk.completions.create(model=model, prompt="Once upon", max_tokens=5)
    assert got.choices[0].text == triton_text(triton, model, "Once upon", 5)


def test_streamed_completion_arrives_as_the_model_produces_it(sdk, triton, model_repository):
    prompt = unique("lambda stream")
    stream = sdk.completions.create(model="text_gen", prompt=prompt, max_tokens=40, stream=True)
    texts, counts = [], []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            texts.append(chunk.choices[0].text)
            counts.append(sent(model_repository, "text_gen", prompt))
    # THEN the first tokens were in hand before the model had sent all 40 (buffered, they would arrive after)
    assert len(texts) == 40
    assert counts[1] < counts[-1] == 40, counts
    assert "".join(texts) == triton_text(triton, "text_gen", prompt, 40)


@pytest.mark.parametrize(
    ("model", "prompt"), [("text_gen", TEXT_GEN_CHAT), ("text_gen_trtllm", DEFAULT_CHAT)]
)
def test_chat_completion(sdk, triton, model, prompt):
    got = sdk.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4)
    assert got.choices[0].message.content == triton_text(triton, model, prompt, 4)


def test_streamed_chat_completion(sdk, triton):
    chunks = list(sdk.chat.completions.create(model="text_gen", messages=MESSAGES, max_tokens=4, stream=True))
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == triton_text(triton, "text_gen", TEXT_GEN_CHAT, 4)


def test_closing_a_stream_stops_the_model(sdk, model_repository):
    prompt = unique("lambda disconnect")
    stream = sdk.completions.create(model="text_gen", prompt=prompt, max_tokens=40, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].text)
        if received == 2:
            break
    stream.close()
    # THEN the model's own count stops short of the 40 it would have sent
    assert settled(model_repository, "text_gen", prompt) < 40


def test_generate_stream_events_arrive_as_the_model_produces_them(stream_gateway, model_repository):
    gateway, _ = stream_gateway
    prompt = unique("lambda generate_stream")
    body = {"text_input": prompt, "stream": True, "sampling_parameters": '{"max_tokens": 20}', "delay_ms": 50}
    counts = []
    with httpx.stream(
        "POST", f"{gateway.url}/v2/models/text_gen/generate_stream", json=body, timeout=30
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                assert "text_output" in json.loads(line[5:])
                counts.append(sent(model_repository, "text_gen", prompt))
    assert len(counts) == 20
    assert counts[1] < 10, counts
    assert counts[-1] == 20


def test_curl_streams_sse_to_done(stream_gateway, triton):
    gateway, _ = stream_gateway
    assert curl_completion_text(gateway.url, "curl", 3) == triton_text(triton, "text_gen", "curl", 3)
