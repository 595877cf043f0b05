"""The bad-input battery's Lambda events, through the real Mangum handler (tests/battery.py says what each
answer must be): events invoked directly, not through API Gateway, and malformed ones."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from localdev.tritonserver import TritonServer
from tests.battery import Row, check_answer, measured, print_table
from tests.lambda_events import LambdaContext, load_event

ZERO_B64 = base64.b64encode(np.zeros(3 * 224 * 224, np.float32).tobytes()).decode()
BODY = json.dumps(
    {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "b64": ZERO_B64}]}
)


def lambda_event(mutate: Callable[[dict[str, Any]], Any]) -> Callable[[], Any]:
    def build() -> Any:
        event = load_event("infer", BODY)
        mutate(event)
        return event

    return build


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        event[key] = value

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda event: event.pop(key, None) and None


LAMBDA_CASES: list[tuple[str, Callable[[], Any]]] = [
    ("event: body not base64", lambda_event(_set("body", "!!! not base64 !!!"))),
    ("event: no requestContext", lambda_event(_drop("requestContext"))),
    ("event: no httpMethod", lambda_event(_drop("httpMethod"))),
    ("event: a JSON list", lambda: [1, 2, 3]),
    ("event: an empty object", lambda: {}),
    ("event: header value a number", lambda_event(lambda e: e["headers"].update({"X-Count": 7}))),
    ("event: multiValueHeaders not lists", lambda_event(_set("multiValueHeaders", {"Accept": "text/html"}))),
    ("event: Host with two colons", lambda_event(lambda e: e["headers"].update({"Host": "a:b:c"}))),
    ("event: body an object", lambda_event(_set("body", {"inputs": []}))),
    ("event: identity null", lambda_event(lambda e: e["requestContext"].update({"identity": None}))),
    (
        "event: HTTP API 2.0 shape",
        lambda: {"version": "2.0", "requestContext": {"http": {"method": "GET"}}, "rawPath": "/"},
    ),
]


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    print_table(rows)


@pytest.mark.parametrize(("name", "build"), LAMBDA_CASES, ids=[name for name, _ in LAMBDA_CASES])
def test_battery_lambda(lambda_handler, triton: TritonServer, table, name, build):
    event = build()
    with measured("self") as seen:
        response = lambda_handler(event, LambdaContext())
    table.append(Row(name, response["statusCode"], seen.seconds, seen.grown_mb))
    body = (
        base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    )
    check_answer(response["statusCode"], 400, body, seen, [str(triton.grpc_port)])
