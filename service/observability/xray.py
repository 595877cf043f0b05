"""X-Ray subsegments sent to the X-Ray daemon over UDP, as the X-Ray SDK sends them inside a Lambda.

Why not Powertools' Tracer (the X-Ray SDK): importing ``aws_xray_sdk.core`` builds two botocore clients for
its sampling rules and costs ~250 ms of cold start (the whole handler imports in ~450 ms), and brings
botocore (~30 MB) into the image. Under Lambda none of that is used: the Lambda service samples and owns the
segment, and the SDK only streams subsegments as documented here (the daemon protocol: a JSON header line,
then one segment document per datagram). ``bench/observability.py`` measures both.

Under Lambda (``LAMBDA_TASK_ROOT``) when the invocation's ``_X_AMZN_TRACE_ID`` is sampled; elsewhere
(uvicorn, a container) when the request's own ``X-Amzn-Trace-Id`` header is (a load balancer or API
Gateway in front, with tracing on, sends it), hanging from the caller's segment."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger("service.xray")

_HEADER = b'{"format":"json","version":1}\n'
_DEFAULT_DAEMON = ("127.0.0.1", 2000)
# A datagram past this is dropped by the daemon; a subsegment of ours is far smaller.
_MAX_DATAGRAM = 64 * 1024


@dataclass(slots=True)
class Subsegment:
    """One open subsegment: annotations are indexed (filter expressions), metadata is not."""

    name: str
    trace_id: str
    parent_id: str
    id: str = field(default_factory=lambda: os.urandom(8).hex())
    start_time: float = field(default_factory=time.time)
    namespace: str = "remote"
    annotations: dict[str, str | int | float | bool] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    fault: bool = False
    throttle: bool = False
    cause: str = ""

    def child(self, name: str, namespace: str = "remote") -> Subsegment:
        """A subsegment nested under this one (sent on its own, like this one); ``remote`` for a call to
        another service, ``""`` for work done here."""
        return Subsegment(name, self.trace_id, self.id, namespace=namespace)

    def document(self, end_time: float) -> dict[str, Any]:
        """The segment document, as the X-Ray API defines it, of this subsegment closed at ``end_time``."""
        doc: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "type": "subsegment",
            "start_time": self.start_time,
            "end_time": end_time,
        }
        if self.namespace:
            doc["namespace"] = self.namespace
        if self.annotations:
            doc["annotations"] = self.annotations
        if self.metadata:
            doc["metadata"] = {"gateway": self.metadata}
        for flag in ("error", "fault", "throttle"):
            if getattr(self, flag):
                doc[flag] = True
        if self.cause:
            doc["cause"] = {"exceptions": [{"id": os.urandom(8).hex(), "message": self.cause}]}
        return doc


def trace_context(request_header: str = "") -> tuple[str, str] | None:
    """(trace id, parent id) to hang this request's subsegments from, when X-Ray samples it; else None.

    Under Lambda the runtime sets ``_X_AMZN_TRACE_ID`` before each invocation; the parent is the segment the
    Lambda service records for it. Elsewhere the request's ``X-Amzn-Trace-Id`` header (``request_header``)
    names the caller's segment."""
    header = os.environ.get("_X_AMZN_TRACE_ID", "") if "LAMBDA_TASK_ROOT" in os.environ else request_header
    fields = dict(part.split("=", 1) for part in header.split(";") if "=" in part)
    root, parent = fields.get("Root"), fields.get("Parent")
    if not root or not parent or fields.get("Sampled") != "1":
        return None
    return root, parent


def send(subsegment: Subsegment, end_time: float | None = None) -> None:
    """Close ``subsegment`` and send it to the daemon; never raises (tracing must not fail a request)."""
    payload = _HEADER + orjson.dumps(subsegment.document(end_time or time.time()))
    if len(payload) > _MAX_DATAGRAM:
        log.debug("X-Ray subsegment %s too large (%d bytes): not sent", subsegment.name, len(payload))
        return
    try:
        _socket().sendto(payload, _daemon_address())
    except OSError as exc:
        # UDP to the local daemon: a failure here means no daemon, which costs the trace, not the request.
        log.debug("X-Ray subsegment not sent: %s", exc)


_sock: socket.socket | None = None
_daemon: tuple[str, tuple[str, int]] | None = None


def _socket() -> socket.socket:
    global _sock
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _sock.setblocking(False)
        atexit.register(_sock.close)
    return _sock


def _daemon_address() -> tuple[str, int]:
    """``AWS_XRAY_DAEMON_ADDRESS`` (``host:port``, or ``tcp:h:p udp:h:p`` as Lambda sets it), parsed once
    per value."""
    global _daemon
    raw = os.environ.get("AWS_XRAY_DAEMON_ADDRESS", "")
    if _daemon is None or _daemon[0] != raw:
        _daemon = (raw, _parse_daemon(raw))
    return _daemon[1]


def _parse_daemon(raw: str) -> tuple[str, int]:
    for part in raw.split():
        kind, _, rest = part.partition(":")
        if kind == "udp":
            part = rest
        elif kind == "tcp":
            continue
        host, _, port = part.rpartition(":")
        if host and port.isdigit():
            return host, int(port)
    return _DEFAULT_DAEMON
