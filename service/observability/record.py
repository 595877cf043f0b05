"""The one access record of a request: a JSON log line on stdout, formatted by Powertools' Lambda formatter
(which adds the invocation's ``xray_trace_id``), with the ids that join it to API Gateway's access log, the
Lambda's own lines, the X-Ray trace and Triton's log."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from service.observability.observation import Finished, RequestObservation, generation_figures

log = logging.getLogger("service.access")


def configure(service: str) -> None:
    """Send access records to stdout as JSON, once: not again through the root logger (the Lambda
    runtime's or uvicorn's handler)."""
    formatter = LambdaPowertoolsFormatter(service=service, utc=True, use_rfc3339=True, json_serializer=_dumps)
    log.handlers = [_StdoutHandler(formatter)]
    log.propagate = False


def enabled() -> bool:
    """Whether ``LOG_LEVEL`` lets access records (INFO) through."""
    return log.isEnabledFor(logging.INFO)


def write(observation: RequestObservation, finished: Finished) -> None:
    """Log the request's record at INFO."""
    fields: dict[str, Any] = {
        "request_id": observation.request_id,
        "method": observation.method,
        "path": observation.path,
        "route": finished.route,
        "status": finished.status,
        "duration_ms": round(finished.ms, 2),
        "bytes_in": observation.bytes_in,
        "bytes_out": observation.bytes_out,
    }
    if observation.api_request_id:
        fields["api_request_id"] = observation.api_request_id
    if observation.lambda_request_id:
        fields["lambda_request_id"] = observation.lambda_request_id
    if observation.model:
        fields.update(model=observation.model, version=observation.version)
    if observation.triton_calls:
        fields.update(triton_ms=round(observation.triton_ms, 2), triton_calls=observation.triton_calls)
    if observation.errors:
        fields["triton_errors"] = sorted(observation.errors)
    if observation.images:
        fields["images"] = observation.images
    fields.update(generation_figures(observation))
    if "tokens_out" in fields:
        fields["tokens_out"] = int(fields["tokens_out"])
    if observation.api_key_id:
        fields["api_key_id"] = observation.api_key_id
    if finished.cold:
        fields["cold_start"] = True
    log.info(
        "%s %s %d %.1f ms", observation.method, observation.path, finished.status, finished.ms, extra=fields
    )


def _dumps(record: Any) -> str:
    # orjson: a third of json.dumps' time; str() for whatever else a record carries, as Powertools does.
    return orjson.dumps(record, default=str).decode()


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when a record is written (the runtime's, a test's capture)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass
