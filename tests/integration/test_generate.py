"""``/v2/.../generate`` and ``/generate_stream`` through the gateway (gRPC underneath) against Triton's own
HTTP frontend serving the same models: the same answers and events, events arriving as the model sends
them, a caller's disconnect stopping the model, the stream's limits, and a battery of bad bodies."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway


def sampling(**values: Any) -> str:
    return json.dumps(values)


def unique(prefix: str) -> str:
    """A prompt no other test sends, so the model's count of responses for it is this test's alone."""
    return f"{prefix} {time.time_ns()}"


def sent(model_repository: Path, model: str, prompt: str) -> int:
    """How many responses the model has sent for ``prompt`` (its own count, written as it sends)."""
    path = model_repository / model / "responses_sent" / hashlib.sha256(prompt.encode()).hexdigest()
    return int(path.read_text()) if path.exists() else 0


def settled(model_repository: Path, model: str, prompt: str, quiet: float = 0.6, bound: float = 15) -> int:
    """The model's count for ``prompt`` once it has stopped moving for ``quiet`` seconds."""
    last, since, began = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - began < bound:
        now = sent(model_repository, model, prompt)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.05)
    return last


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


@pytest.fixture(scope="module")
def gateway(triton: TritonServer, model_repository: Path) -> Iterator[str]:
    settings = Settings(
        triton_grpc_url=triton.grpc_url, chat_template_dir=str(model_repository), max_prompt_bytes=4096
    )
    with serve_gateway(settings) as url:
        yield url


@pytest.fixture
def both(gateway: str, triton: TritonServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with (
        httpx.Client(base_url=gateway, timeout=30) as ours,
        httpx.Client(base_url=triton.http_url, timeout=30) as theirs,
    ):
        yield ours, theirs


GENERATE_CASES = {
    "vllm": ("text_gen", {"text_input": "hello world", "sampling_parameters": sampling(max_tokens=5)}),
    "vllm counts": (
        "text_gen",
        {
            "text_input": "count me",
            "sampling_parameters": sampling(max_tokens=4, stop=["kilo"]),
            "return_num_input_tokens": True,
            "return_num_output_tokens": True,
            "return_finish_reason": True,
        },
    ),
    "vllm exclude input": (
        "text_gen",
        {"text_input": "abc", "exclude_input_in_output": True, "sampling_parameters": sampling(max_tokens=2)},
    ),
    "trtllm": ("text_gen_trtllm", {"text_input": "hi", "max_tokens": 3, "temperature": 0.5, "top_p": 0.9}),
    "trtllm stop words": ("text_gen_trtllm", {"text_input": "hi", "max_tokens": 9, "stop_words": ["sierra"]}),
    "plain model": ("text_bytes", {"TEXT": ["ab", "ç"]}),
    "plain model scalar": ("text_bytes", {"TEXT": "one"}),
    "a parameter": (
        "text_gen",
        {"text_input": "p", "delay_ms": 1, "sampling_parameters": sampling(max_tokens=2)},
    ),
}


@pytest.mark.parametrize("case", GENERATE_CASES)
def test_generate_answers_as_triton_does(both, case):
    ours, theirs = both
    model, body = GENERATE_CASES[case]
    got = ours.post(f"/v2/models/{model}/generate", json=body)
    want = theirs.post(f"/v2/models/{model}/generate", json=body)
    assert (got.status_code, want.status_code) == (200, 200), got.text
    assert got.json() == want.json()


def test_generate_with_a_version_answers_the_same(both):
    ours, theirs = both
    body = {"text_input": "versioned", "sampling_parameters": sampling(max_tokens=3)}
    got = ours.post("/v2/models/text_gen/versions/1/generate", json=body)
    want = theirs.post("/v2/models/text_gen/versions/1/generate", json=body)
    assert got.json() == want.json()
    assert ours.post("/v2/models/text_gen/versions/7/generate", json=body).status_code == 404


STREAM_CASES = {
    "vllm": (
        "text_gen",
        {"text_input": "stream me", "stream": True, "sampling_parameters": sampling(max_tokens=6)},
    ),
    "vllm counts and stop": (
        "text_gen",
        {
            "text_input": "stream me",
            "stream": True,
            "sampling_parameters": sampling(max_tokens=8, stop="papa"),
            "return_num_output_tokens": True,
            "return_finish_reason": True,
        },
    ),
    "vllm one response": ("text_gen", {"text_input": "whole", "sampling_parameters": sampling(max_tokens=3)}),
    "trtllm": ("text_gen_trtllm", {"text_input": "hi", "max_tokens": 4, "stream": True}),
    "plain model": ("text_bytes", {"TEXT": "x"}),
    "no tokens": (
        "text_gen",
        {"text_input": "n", "stream": True, "sampling_parameters": sampling(max_tokens=0)},
    ),
}


@pytest.mark.parametrize("case", STREAM_CASES)
def test_generate_stream_sends_the_events_triton_sends(both, case):
    ours, theirs = both
    model, body = STREAM_CASES[case]
    got = ours.post(f"/v2/models/{model}/generate_stream", json=body)
    want = theirs.post(f"/v2/models/{model}/generate_stream", json=body)
    assert (got.status_code, want.status_code) == (200, 200), got.text
    assert got.headers["content-type"].startswith("text/event-stream")
    assert events(got) == events(want)
    assert len(events(got)) == (0 if case == "no tokens" else len(events(want)))


def test_generate_refuses_a_model_that_streams(both):
    # GIVEN a decoupled model asked to stream WHEN generate (one answer) is called THEN 400, as Triton says.
    ours, theirs = both
    body = {"text_input": "many", "stream": True, "sampling_parameters": sampling(max_tokens=3)}
    got = ours.post("/v2/models/text_gen/generate", json=body)
    assert got.status_code == 400
    assert "exactly 1 response" in got.json()["error"]
    assert "exactly 1 response" in theirs.post("/v2/models/text_gen/generate", json=body).json()["error"]


def test_events_arrive_as_the_model_produces_them(gateway, model_repository):
    # The model writes its count before each send returns; the first event must be in hand while the
    # model has sent only a few of its 20 responses (a buffered stream would arrive after all 20).
    prompt = unique("as produced")
    body = {
        "text_input": prompt,
        "stream": True,
        "sampling_parameters": sampling(max_tokens=20),
        "delay_ms": 50,
    }
    counts = []
    with (
        httpx.Client(base_url=gateway, timeout=30) as client,
        client.stream("POST", "/v2/models/text_gen/generate_stream", json=body) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                counts.append(sent(model_repository, "text_gen", prompt))
    assert len(counts) == 20
    assert counts[0] < 10, counts
    assert sent(model_repository, "text_gen", prompt) == 20


def test_a_caller_that_disconnects_stops_the_model(gateway, model_repository):
    # GIVEN a stream of 40 responses, 50 ms apart WHEN the caller closes after the second event
    # THEN the model stops soon after (its own count), rather than generating all 40.
    prompt = unique("disconnect")
    body = {
        "text_input": prompt,
        "stream": True,
        "sampling_parameters": sampling(max_tokens=40),
        "delay_ms": 50,
    }
    received = 0
    with (
        httpx.Client(base_url=gateway, timeout=30) as client,
        client.stream("POST", "/v2/models/text_gen/generate_stream", json=body) as response,
    ):
        for line in response.iter_lines():
            received += line.startswith("data:")
            if received == 2:
                break
    final = settled(model_repository, "text_gen", prompt)
    assert 2 <= final < 20, final


def test_streams_past_the_limit_are_refused_before_the_first_byte(triton):
    # GIVEN a gateway that runs one generation at a time, running one
    # WHEN a second arrives THEN it is refused at once, 503 with Retry-After, before any stream starts.
    settings = Settings(triton_grpc_url=triton.grpc_url, max_streams=1)
    body = {"text_input": unique("busy"), "stream": True, "sampling_parameters": sampling(max_tokens=30)}
    streaming, refused_seen = threading.Event(), threading.Event()
    with serve_gateway(settings) as url:

        def hold() -> None:
            with (
                httpx.Client(base_url=url, timeout=30) as client,
                client.stream(
                    "POST", "/v2/models/text_gen/generate_stream", json={**body, "delay_ms": 50}
                ) as r,
            ):
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        streaming.set()
                        refused_seen.wait(15)
                        break

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert streaming.wait(15)
            with httpx.Client(base_url=url, timeout=30) as client:
                refused = client.post("/v2/models/text_gen/generate_stream", json=body)
        finally:
            refused_seen.set()
            holder.join(15)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "generations already" in refused.json()["error"]


def test_stream_limits_idle_before_the_first_byte_and_total_after_it(triton):
    slow = {"text_input": unique("idle"), "stream": True, "sampling_parameters": sampling(max_tokens=5)}
    settings = Settings(triton_grpc_url=triton.grpc_url, stream_idle_timeout_seconds=0.3)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        # Nothing within the idle limit: an ordinary 504, no stream started.
        idle = client.post("/v2/models/text_gen/generate_stream", json={**slow, "delay_ms": 1500})
        assert idle.status_code == 504
        assert "idle limit" in idle.json()["error"]
    settings = Settings(triton_grpc_url=triton.grpc_url, stream_timeout_seconds=1.0)
    body = {
        **slow,
        "text_input": unique("total"),
        "sampling_parameters": sampling(max_tokens=40),
        "delay_ms": 100,
    }
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        # Past the total limit mid-stream: the events so far, then an error event.
        answer = client.post("/v2/models/text_gen/generate_stream", json=body)
        assert answer.status_code == 200
        got = events(answer)
        assert 1 <= len(got) < 40
        assert "error" in got[-1] and "limit" in got[-1]["error"]
        assert all("text_output" in event for event in got[:-1])


BAD_BODIES: dict[str, tuple[str, bytes, int, str]] = {
    "not json": ("text_gen", b"{", 400, "not JSON"),
    "an array": ("text_gen", b"[1]", 400, "JSON object"),
    "a string": ("text_gen", b'"x"', 400, "JSON object"),
    "empty": ("text_gen", b"", 400, "not JSON"),
    "number for text": ("text_gen", b'{"text_input": 5}', 400, "text_input"),
    "string for bool": ("text_gen", b'{"text_input": "a", "stream": "yes"}', 400, "stream"),
    "two prompts for one": ("text_gen", b'{"text_input": ["a", "b"]}', 400, "text_input"),
    "nested": ("text_gen", b'{"text_input": [["a"]]}', 400, "text_input"),
    "missing input": ("text_gen", b'{"stream": true}', 400, "text_input"),
    "null parameter": ("text_gen", b'{"text_input": "a", "x": null}', 400, "x"),
    "array parameter": ("text_gen", b'{"text_input": "a", "x": [1]}', 400, "x"),
    "object parameter": ("text_gen", b'{"text_input": "a", "x": {}}', 400, "x"),
    "huge int parameter": ("text_gen", b'{"text_input": "a", "x": 10000000000000000000}', 400, "x"),
    "reserved parameter": (
        "text_gen",
        b'{"text_input": "a", "triton_enable_empty_final_response": false}',
        400,
        "triton_enable_empty_final_response",
    ),
    "int32 overflow": (
        "text_gen_trtllm",
        b'{"text_input": "a", "max_tokens": 3000000000}',
        400,
        "max_tokens",
    ),
    "float for int": ("text_gen_trtllm", b'{"text_input": "a", "max_tokens": 1.5}', 400, "max_tokens"),
    "bool for int": ("text_gen_trtllm", b'{"text_input": "a", "max_tokens": true}', 400, "max_tokens"),
    "string for float": (
        "text_gen_trtllm",
        b'{"text_input": "a", "max_tokens": 1, "top_p": "x"}',
        400,
        "top_p",
    ),
    "prompt too long": ("text_gen", json.dumps({"text_input": "x" * 5000}).encode(), 400, "text_input"),
    "bad sampling json": ("text_gen", b'{"text_input": "a", "sampling_parameters": "{bad"}', 400, ""),
    "unknown model": ("nope", b'{"text_input": "a"}', 404, "nope"),
    "unknown model, bad body": ("nope", b"[", 404, "nope"),
    "bad version": ("text_gen/versions/x", b'{"text_input": "a"}', 400, "version"),
}


@pytest.mark.parametrize("route", ["generate", "generate_stream"])
@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_bodies_are_4xx_naming_the_field(gateway, route, case):
    model, body, status, field = BAD_BODIES[case]
    with httpx.Client(base_url=gateway, timeout=30) as client:
        answer = client.post(f"/v2/models/{model}/{route}", content=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert isinstance(error, str) and field in error
    assert "127.0.0.1" not in error and "Traceback" not in error


def test_a_body_over_the_limit_is_413(triton):
    settings = Settings(triton_grpc_url=triton.grpc_url, max_body_bytes=1000)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post(
            "/v2/models/text_gen/generate", content=b'{"text_input": "' + b"x" * 2000 + b'"}'
        )
    assert answer.status_code == 413
