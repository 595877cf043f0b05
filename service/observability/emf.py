"""One request's metrics as one CloudWatch Embedded Metric Format document on stdout.

Powertools' EMF provider checks the names and units and serialises the alarmable aggregate (dimension
``service`` only); the per-status, per-route and per-model breakdowns are further directives of the same
document over a subset of its metrics: every metric of a directive is published under each of its dimension
sets, and each (metric, dimensions) pair is a billed custom metric."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from service.observability.observation import ERROR_METRICS, Finished, RequestObservation

_BY_STATUS = ("Requests", "Latency")
_BY_MODEL = ("Requests", "Latency", "TritonLatency", *ERROR_METRICS.values())


def write(observation: RequestObservation, finished: Finished, namespace: str, service: str) -> None:
    """Write the request's EMF line to stdout (the Lambda runtime sends it to CloudWatch Logs)."""
    sys.stdout.write(orjson.dumps(document(observation, finished, namespace, service)).decode() + "\n")
    sys.stdout.flush()


def document(
    observation: RequestObservation, finished: Finished, namespace: str, service: str
) -> dict[str, Any]:
    """The EMF document of one finished request."""
    emf = AmazonCloudWatchEMFProvider(namespace=namespace, service=service)
    emf.add_metric("Requests", "Count", 1)
    emf.add_metric("Latency", "Milliseconds", round(finished.ms, 3))
    for value in observation.infer_ms:
        emf.add_metric("TritonLatency", "Milliseconds", round(value, 3))
    if observation.triton_calls:
        # 0 or 1 on every request that reached Triton, so an alarm can take the error rate (Average).
        for kind, name in ERROR_METRICS.items():
            emf.add_metric(name, "Count", int(kind in observation.errors))
    emf.add_metric("RequestBytes", "Bytes", observation.bytes_in)
    emf.add_metric("ResponseBytes", "Bytes", observation.bytes_out)
    if observation.images:
        emf.add_metric("ImagesDecoded", "Count", observation.images)
    if finished.cold:
        emf.add_metric("ColdStart", "Count", 1)

    doc: dict[str, Any] = dict(emf.serialize_metric_set())
    directives: list[dict[str, Any]] = doc["_aws"]["CloudWatchMetrics"]
    definitions = {metric["Name"]: metric for metric in directives[0]["Metrics"]}
    doc.update(status_class=finished.status_class, route=finished.route or "unmatched")
    directives.append(
        {
            "Namespace": namespace,
            "Dimensions": [["service", "status_class"], ["service", "route", "status_class"]],
            "Metrics": [definitions[name] for name in _BY_STATUS],
        }
    )
    if observation.model:
        doc["model"] = observation.model
        directives.append(
            {
                "Namespace": namespace,
                "Dimensions": [["service", "model"]],
                "Metrics": [definitions[name] for name in _BY_MODEL if name in definitions],
            }
        )
    # Searchable in the log line (CloudWatch Logs Insights), never a dimension.
    doc["request_id"] = observation.request_id
    return doc
