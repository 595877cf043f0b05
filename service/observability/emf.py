"""One request's metrics as one CloudWatch Embedded Metric Format document on stdout.

The alarmable aggregates are a directive with the dimension ``service`` only; the per-status, per-route and
per-model breakdowns are further directives of the same document over a subset of its metrics (every metric
of a directive is published under each of its dimension sets, and each (metric, dimensions) pair is a billed
custom metric).

The document is assembled here, with Powertools' ``MetricUnit`` names, rather than through Powertools'
``Metrics`` provider: its ``add_metric`` validates and debug-formats on every call, about ten times
the cost of this for one request's metrics (``bench/observability.py``), and it writes one directive only."""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from aws_lambda_powertools.metrics import MetricUnit

from service.observability.observation import (
    ERROR_METRICS,
    Finished,
    RequestObservation,
    generation_figures,
)

_UNITS: dict[str, MetricUnit] = {
    "Requests": MetricUnit.Count,
    "Latency": MetricUnit.Milliseconds,
    "TritonLatency": MetricUnit.Milliseconds,
    **dict.fromkeys(ERROR_METRICS.values(), MetricUnit.Count),
    "RequestBytes": MetricUnit.Bytes,
    "ResponseBytes": MetricUnit.Bytes,
    "ImagesDecoded": MetricUnit.Count,
    "ColdStart": MetricUnit.Count,
    "TimeToFirstToken": MetricUnit.Milliseconds,
    "TokensOut": MetricUnit.Count,
    "TokensPerSecond": MetricUnit.CountPerSecond,
}
# A generation's figures (observation.generation_figures) -> their metric names.
_GENERATION = {"ttft_ms": "TimeToFirstToken", "tokens_out": "TokensOut", "tokens_per_s": "TokensPerSecond"}
# The metric definitions of the document, built once: {"Name": ..., "Unit": ...}.
_DEFINITIONS = {name: {"Name": name, "Unit": unit.value} for name, unit in _UNITS.items()}
_BY_STATUS = ("Requests", "Latency")
_BY_MODEL = ("Requests", "Latency", "TritonLatency", *ERROR_METRICS.values(), "TimeToFirstToken", "TokensOut")
_STATUS_DIMENSIONS = [["service", "status_class"], ["service", "route", "status_class"]]
_MODEL_DIMENSIONS = [["service", "model"]]


def write(observation: RequestObservation, finished: Finished, namespace: str, service: str) -> None:
    """Write the request's EMF line to stdout (the Lambda runtime sends it to CloudWatch Logs)."""
    sys.stdout.write(orjson.dumps(document(observation, finished, namespace, service)).decode() + "\n")
    sys.stdout.flush()


def document(
    observation: RequestObservation, finished: Finished, namespace: str, service: str
) -> dict[str, Any]:
    """The EMF document of one finished request."""
    values: dict[str, Any] = {"Requests": 1, "Latency": round(finished.ms, 3)}
    if observation.infer_ms:
        values["TritonLatency"] = [round(ms, 3) for ms in observation.infer_ms]
    if observation.triton_calls:
        # 0 or 1 on every request that reached Triton, so an alarm can take the error rate (Average).
        for kind, name in ERROR_METRICS.items():
            values[name] = int(kind in observation.errors)
    values["RequestBytes"] = observation.bytes_in
    values["ResponseBytes"] = observation.bytes_out
    if observation.images:
        values["ImagesDecoded"] = observation.images
    if finished.cold:
        values["ColdStart"] = 1
    for figure, value in generation_figures(observation).items():
        values[_GENERATION[figure]] = int(value) if figure == "tokens_out" else value

    directives = [
        {"Namespace": namespace, "Dimensions": [["service"]], "Metrics": [_DEFINITIONS[n] for n in values]},
        {
            "Namespace": namespace,
            "Dimensions": _STATUS_DIMENSIONS,
            "Metrics": [_DEFINITIONS[n] for n in _BY_STATUS],
        },
    ]
    doc: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives},
        "service": service,
        "status_class": finished.status_class,
        "route": finished.route or "unmatched",
    }
    if observation.model:
        doc["model"] = observation.model
        directives.append(
            {
                "Namespace": namespace,
                "Dimensions": _MODEL_DIMENSIONS,
                "Metrics": [_DEFINITIONS[n] for n in _BY_MODEL if n in values],
            }
        )
    doc.update(values)
    # Searchable in the log line (CloudWatch Logs Insights), never a dimension.
    doc["request_id"] = observation.request_id
    if observation.api_key_id:
        doc["api_key_id"] = observation.api_key_id
    return doc
