"""API Gateway REST events written by ``sam local generate-event apigateway aws-proxy`` (kept under
``tests/lambda/events``, loaded by name), the Lambda context the runtime passes beside them, and the body of
the handler's answer."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "lambda" / "events"


@dataclass
class LambdaContext:
    """The fields of the Lambda runtime's context object that the gateway and Mangum read."""

    remaining_ms: int = 30_000
    function_name: str = "triton-gateway"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_event(name: str, body: bytes | str | None = None, *, base64_body: bool = True) -> dict[str, Any]:
    """The named event; ``body`` replaces the generated one, base64-encoded as API Gateway does for binary."""
    event = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
        event["isBase64Encoded"] = base64_body
    return event


def v2_get_event(path: str) -> dict[str, Any]:
    """A bodiless GET of ``path`` under ``/v2/{proxy+}`` as API Gateway delivers it (the generated v2 event,
    re-aimed)."""
    event = load_event("v2_infer")
    event["httpMethod"] = event["requestContext"]["httpMethod"] = "GET"
    event["path"], event["requestContext"]["path"] = path, f"/api{path}"
    event["pathParameters"] = {"proxy": path.removeprefix("/v2/")}
    event["body"], event["isBase64Encoded"] = None, False
    return event


def raw_body(response: dict[str, Any]) -> bytes:
    """The bytes of a proxy response's body, base64-decoded when the handler marked it ``isBase64Encoded``."""
    body: str = response["body"]
    return base64.b64decode(body) if response["isBase64Encoded"] else body.encode()


def body_of(response: dict[str, Any]) -> Any:
    """A proxy response's body, parsed as JSON."""
    return json.loads(raw_body(response))
