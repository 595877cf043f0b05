"""Reading what the gateway emits, as CloudWatch and X-Ray would: EMF documents and access records from its
stdout lines, subsegments from a real UDP socket standing in for the X-Ray daemon, and a gateway under a
real uvicorn process whose stdout is kept."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from localdev.processes import stop_process
from localdev.tritonserver import free_port

ROOT = Path(__file__).resolve().parents[1]

# CloudWatch's units (PutMetricData's StandardUnit), which EMF metric definitions must use.
_UNITS = """Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes Bits Kilobits
Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second Gigabytes/Second
Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second Terabits/Second Count/Second
None"""
CLOUDWATCH_UNITS = frozenset(_UNITS.split())


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line that is a JSON object, in order."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def emf_documents(text: str) -> list[dict[str, Any]]:
    """The EMF documents among the lines, each checked against the EMF specification."""
    docs = [doc for doc in json_lines(text) if "_aws" in doc]
    for doc in docs:
        check_emf(doc)
    return docs


def access_records(text: str) -> list[dict[str, Any]]:
    """The gateway's access records among the lines (JSON log records that carry a status)."""
    return [doc for doc in json_lines(text) if "_aws" not in doc and "status" in doc and "level" in doc]


def check_emf(doc: dict[str, Any]) -> None:
    """Fail unless ``doc`` is what the EMF specification says CloudWatch turns into metrics."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and abs(meta["Timestamp"] / 1000 - time.time()) < 3600
    assert 1 <= len(meta["CloudWatchMetrics"]) <= 100
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(doc[key], str) and doc[key], f"dimension {key} has no string value"
        for metric in directive["Metrics"]:
            assert metric["Unit"] in CLOUDWATCH_UNITS
            value = doc[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values and all(isinstance(v, int | float) for v in values), metric["Name"]


def metric(doc: dict[str, Any], name: str) -> tuple[str, list[float], list[list[str]]]:
    """(unit, values, every dimension set) of one metric of an EMF document."""
    unit, sets = "", []
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for definition in directive["Metrics"]:
            if definition["Name"] == name:
                unit = definition["Unit"]
                sets.extend(directive["Dimensions"])
    assert unit, f"{name} is not a metric of this document"
    value = doc[name]
    return unit, value if isinstance(value, list) else [value], sets


def metric_names(doc: dict[str, Any]) -> set[str]:
    """Names of the metrics an EMF document defines."""
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


@dataclass
class XRayDaemon:
    """A UDP socket on 127.0.0.1 receiving what an X-Ray SDK sends to its daemon."""

    sock: socket.socket
    datagrams: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def segments(self, want: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The segment documents received so far (waiting until ``want`` have arrived, or ``timeout``)."""
        ends = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, min(0.2, ends - time.monotonic())))
            try:
                self.datagrams.append(self.sock.recv(65536))
            except TimeoutError:
                if len(self.datagrams) >= want or time.monotonic() > ends:
                    break
        out = []
        for datagram in self.datagrams:
            header, _, body = datagram.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            out.append(json.loads(body))
        return out


@contextmanager
def xray_daemon() -> Iterator[XRayDaemon]:
    """A stand-in X-Ray daemon on a free loopback UDP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield XRayDaemon(sock)


@dataclass
class GatewayProcess:
    """A gateway under ``python -m uvicorn`` in its own process; ``output()`` is its stdout so far."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def mark(self) -> int:
        """A place in the output: ``output(since=mark)`` is what came after it."""
        return len(self.lines)

    def output(self, since: int = 0) -> str:
        return "".join(self.lines[since:])

    def wait_for(self, found: Callable[[str], bool], since: int = 0, timeout: float = 10.0) -> str:
        """The output after ``since``, once ``found(output)`` holds (or ``timeout`` passes: the caller
        asserts)."""
        ends = time.monotonic() + timeout
        while not found(self.output(since)) and time.monotonic() < ends:
            time.sleep(0.02)
        return self.output(since)

    def read(self) -> None:
        """Collect stdout lines until the process closes it (run in a thread)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)


@contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[GatewayProcess]:
    """The gateway as ``./dev.sh run`` serves it (uvicorn, its own process), configured by ``env``."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port)]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    gateway = GatewayProcess(f"http://127.0.0.1:{port}", process)
    reader = threading.Thread(target=gateway.read, daemon=True)
    reader.start()
    try:
        began = time.monotonic()
        while True:
            try:
                # A generous timeout: a first request may load more of the app than /health needs, and a
                # retried probe would leave a second record behind.
                httpx.get(f"{gateway.url}/docs", timeout=20)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() - began > 20:
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.05)
        # The probe's own lines (EMF, then the access record) come just after its answer: let both land
        # before a test takes its mark, or the probe's record would be counted as the test's.
        gateway.wait_for(lambda out: any(r.get("route") == "/docs" for r in access_records(out)))
        yield gateway
    finally:
        stop_process(process, signal.SIGTERM, 10)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
