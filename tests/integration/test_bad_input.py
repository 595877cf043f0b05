"""A battery of bad inputs against a real gateway process (uvicorn, its own pid) and the real Lambda handler:
bodies, headers, images, v2 binary framing, compressed bodies, version strings and names, Lambda events.

Every answer must be a 4xx ``{"error": "<string>"}`` within 2 s that adds at most ~100 MB to the peak RSS of
the process that served it (VmHWM from /proc, reset before each case) and names no internal address or path.
``pytest -s -k battery`` prints the table (case, status, ms, peak RSS delta)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from localdev.processes import stop_process
from localdev.tritonserver import TritonServer, free_port
from tests.battery import Row, check_answer, measured, print_table
from tests.image_reference import encode, photo

REPO = Path(__file__).resolve().parents[2]

ZERO_B64 = base64.b64encode(np.zeros(3 * 224 * 224, np.float32).tobytes()).decode()


def dense(**tensor: Any) -> dict[str, Any]:
    base = {"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "b64": ZERO_B64}
    return {"inputs": [{**base, **tensor}]}


def numbers(count: int, element: bytes = b"0") -> bytes:
    """A JSON array of ``count`` elements, built as bytes (a Python list would cost the test the memory)."""
    return b"[" + b",".join([element] * count) + b"]"


def tensor_body(data: bytes, shape: str = "[3,224,224]", extra: bytes = b"") -> bytes:
    head = b'{"inputs":[{"name":"data_0","datatype":"FP32","shape":' + shape.encode()
    return head + b',"data":' + data + b"}]" + extra + b"}"


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one row of data (a decompression bomb's shape)."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16)).save(out, "PNG")
    raw = bytearray(out.getvalue())
    raw[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    return bytes(raw)


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, "JPEG")
    return out.getvalue()


def photo_jpeg(progressive: bool = False) -> bytes:
    """A photo-like 640x480 JPEG: a cut through it falls inside the entropy-coded scan data."""
    return encode(photo(640, 480, 8), "JPEG", quality=90, progressive=progressive)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(jpeg())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def empty_parts(count: int) -> bytes:
    part = b'content-disposition: form-data; name="images"; filename="x.jpg"\r\n\r\n'
    return b"--b\r\n" + b"\r\n--b\r\n".join([part] * count) + b"\r\n--b--\r\n"


def v2_binary(header: dict[str, Any], binary: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + binary, {"Inference-Header-Content-Length": str(len(head))}


def dense_binary(binary_data_size: object, sections: bytes):
    """A v2 binary request for densenet's one input declaring ``binary_data_size``, with ``sections``."""
    header = {
        "inputs": [
            {
                "name": "data_0",
                "datatype": "FP32",
                "shape": [3, 224, 224],
                "parameters": {"binary_data_size": binary_data_size},
            }
        ]
    }
    return lambda: v2_binary(header, sections)


# -- the cases -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Http:
    """One bad HTTP request: built lazily (some are megabytes), sent to the gateway process."""

    name: str
    method: str
    path: str
    build: Callable[[], tuple[bytes | Iterator[bytes] | None, dict[str, str]]]
    status: int = 400


def json_case(name: str, path: str, body: Any, status: int = 400) -> Http:
    return Http(
        name, "POST", path, lambda: (json.dumps(body).encode(), {"content-type": "application/json"}), status
    )


def raw_case(
    name: str, path: str, body: bytes | Callable[[], bytes], headers: dict[str, str], status: int = 400
) -> Http:
    return Http(name, "POST", path, lambda: (body() if callable(body) else body, headers), status)


V2 = "/v2/models/densenet_onnx/infer"
JSON = {"content-type": "application/json"}
GZIP = {"content-type": "application/json", "content-encoding": "gzip"}
BOMB = 8 * 1024 * 1024 - 64  # "0," elements: ~16 MB of JSON, just under MAX_INFLATED_BYTES

HTTP_CASES = [
    # bodies
    raw_case("empty body", "/infer", b"", JSON),
    raw_case("not JSON", "/infer", b'{"inputs": [', JSON),
    raw_case("JSON array, not object", "/infer", b"[1, 2, 3]", JSON),
    json_case("old Chalice body", "/infer", {"name": "Test inference"}),
    json_case("unknown input name", "/infer", dense(name="pixels")),
    json_case("unknown datatype", "/infer", dense(datatype="FP99")),
    json_case("negative dimension", "/infer", dense(shape=[3, -224, 224])),
    json_case("shape of 2**70 elements", "/infer", dense(shape=[2**70])),
    json_case("b64 not base64", "/infer", dense(b64="not*base64")),
    json_case("b64 of the wrong length", "/infer", dense(b64="AAAA")),
    json_case("data and b64 both", "/infer", dense(data=[0.5])),
    json_case(
        "strings as FP32 data",
        "/infer",
        {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}]},
    ),
    # simdjson refuses an integer below -2**63 with a RuntimeError, not the ValueError of other numbers
    json_case(
        "integer below -2**63 in data",
        "/infer",
        {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": [2], "data": [-(2**70), 1]}]},
    ),
    json_case(
        "integer below -2**63 in v2 data",
        V2,
        {"inputs": [{"name": "data_0", "datatype": "INT64", "shape": [1], "data": [-(2**70)]}]},
    ),
    json_case(
        "ragged nested data",
        "/infer",
        {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": [2, 2], "data": [[1], [2, 3]]}]},
    ),
    raw_case(
        "9 MB of JSON numbers for a 150528-element input",
        "/infer",
        lambda: tensor_body(numbers(4_500_000)),
        JSON,
    ),
    raw_case(
        "junk field of 4M values",
        "/infer",
        lambda: tensor_body(numbers(150_528), extra=b',"junk":' + numbers(4_000_000)),
        JSON,
    ),
    raw_case(
        "declared shape to match 4M numbers",
        "/infer",
        lambda: tensor_body(numbers(4_000_000), "[4000000]"),
        JSON,
        413,
    ),
    raw_case("8 MB of empty strings as data", "/infer", lambda: tensor_body(numbers(2_500_000, b'""')), JSON),
    json_case("top_k in the query of a JSON body", "/infer?top_k=3", dense()),
    # names and versions
    json_case("model name with a NUL byte", "/infer", {"model": "densenet_onnx\u0000x", **dense()}, 404),
    json_case("model name of 300 characters", "/infer", {"model": "m" * 300, **dense()}, 404),
    json_case("model name with a slash", "/infer", {"model": "../densenet_onnx", **dense()}, 404),
    json_case("version 1abc in the body", "/infer", {"version": "1abc", **dense()}),
    json_case("version 01 in the body", "/infer", {"version": "01", **dense()}),
    json_case("unknown model", "/infer", {"model": "resnet50", **dense()}, 404),
    Http("version 1abc in a v2 path", "GET", "/v2/models/densenet_onnx/versions/1abc", lambda: (None, {})),
    Http("version 01 in a v2 path", "GET", "/v2/models/densenet_onnx/versions/01", lambda: (None, {})),
    Http("version +1 in a v2 path", "GET", "/v2/models/densenet_onnx/versions/+1", lambda: (None, {})),
    Http(
        "version 1e5 in a v2 path", "GET", "/v2/models/densenet_onnx/versions/1e5/config", lambda: (None, {})
    ),
    Http("version of 40 digits", "GET", "/v2/models/densenet_onnx/versions/" + "9" * 40, lambda: (None, {})),
    Http("NUL in a v2 model name", "GET", "/v2/models/densenet_onnx%00x", lambda: (None, {}), 404),
    Http("control character in /ready", "GET", "/v2/models/densenet%07onnx/ready", lambda: (None, {}), 404),
    # headers
    raw_case("unsupported content-type", "/infer", b"<xml/>", {"content-type": "application/xml"}, 415),
    raw_case("body over MAX_BODY_BYTES", "/infer", lambda: b" " * (10 * 1024 * 1024 + 1), JSON, 413),
    Http(
        "chunked body over MAX_BODY_BYTES",
        "POST",
        "/infer",
        lambda: ((b" " * 1024 * 1024 for _ in range(12)), JSON),
        413,
    ),
    raw_case("multipart without a boundary", "/infer", b"--b--", {"content-type": "multipart/form-data"}),
    # images
    raw_case("text sent as image/jpeg", "/infer", b"hello, not a JPEG", {"content-type": "image/jpeg"}),
    raw_case("truncated JPEG", "/infer", lambda: jpeg()[:200], {"content-type": "image/jpeg"}),
    raw_case("JPEG cut in its scan", "/infer", lambda: photo_jpeg()[:60_000], {"content-type": "image/jpeg"}),
    raw_case(
        "progressive JPEG cut in its scans",
        "/infer",
        lambda: photo_jpeg(progressive=True)[:60_000],
        {"content-type": "image/jpeg"},
    ),
    raw_case(
        "JPEG claiming 65500x65500 pixels",
        "/infer",
        lambda: jpeg_declaring(65_500, 65_500),
        {"content-type": "image/jpeg"},
    ),
    raw_case(
        "JPEG claiming 8000x8000 pixels",
        "/infer",
        lambda: jpeg_declaring(8_000, 8_000),
        {"content-type": "image/jpeg"},
    ),
    raw_case(
        "PNG claiming 60000x60000 pixels",
        "/infer",
        lambda: png_header(60_000, 60_000),
        {"content-type": "image/png"},
    ),
    json_case("JSON image not base64", "/infer", {"image": "%%%"}),
    json_case("17 JSON images", "/infer", {"images": [base64.b64encode(jpeg()).decode()] * 17}),
    raw_case(
        "130,000 empty multipart parts",
        "/infer",
        lambda: empty_parts(130_000),
        {"content-type": "multipart/form-data; boundary=b"},
    ),
    raw_case(
        "multipart text field",
        "/infer",
        b'--b\r\ncontent-disposition: form-data; name="top_k"\r\n\r\n3\r\n--b--\r\n',
        {"content-type": "multipart/form-data; boundary=b"},
    ),
    # v2 JSON, classification, binary framing
    json_case(
        "classification 2**63",
        V2,
        {
            "inputs": dense()["inputs"],
            "outputs": [{"name": "fc6_1", "parameters": {"classification": 2**63}}],
        },
    ),
    json_case(
        "classification 2**70",
        V2,
        {
            "inputs": dense()["inputs"],
            "outputs": [{"name": "fc6_1", "parameters": {"classification": 2**70}}],
        },
    ),
    json_case(
        "request parameter 2**64", V2, {"inputs": dense()["inputs"], "parameters": {"priority": 2**64}}
    ),
    raw_case("header length not a number", V2, b"{}", {"Inference-Header-Content-Length": "abc"}),
    raw_case("header length past the body", V2, b"{}", {"Inference-Header-Content-Length": "99"}),
    Http("binary_data_size past the body", "POST", V2, dense_binary(602112, b"\0" * 16)),
    Http("binary_data_size true", "POST", V2, dense_binary(True, b"")),
    Http("bytes after the binary inputs", "POST", V2, dense_binary(602112, b"\0" * 602120)),
    # compressed bodies
    raw_case(
        "65 kB gzip inflating to 16 MB of numbers",
        V2,
        lambda: gzip.compress(tensor_body(numbers(BOMB)), 9),
        GZIP,
    ),
    raw_case(
        "gzip inflating past MAX_INFLATED_BYTES",
        V2,
        lambda: gzip.compress(b" " * (64 * 1024 * 1024), 9),
        GZIP,
        413,
    ),
    raw_case(
        "gzip junk field of 4M values",
        V2,
        lambda: gzip.compress(tensor_body(b"[0]", "[1]", b',"junk":' + numbers(4_000_000)), 9),
        GZIP,
    ),
    raw_case(
        "deflate bomb of nested arrays",
        V2,
        lambda: zlib.compress(b'{"inputs":' + b"[" * 2_000_000 + b"]" * 2_000_000 + b"}", 9),
        {"content-encoding": "deflate"},
    ),
    raw_case("gzip that is not gzip", V2, b"\x1f\x8b not really", GZIP),
    raw_case("truncated gzip", V2, lambda: gzip.compress(json.dumps(dense()).encode())[:100], GZIP),
    raw_case("brotli", V2, b"\x00", {"content-encoding": "br"}, 415),
]


# -- the machinery -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_process(triton: TritonServer) -> Iterator[tuple[str, int]]:
    """A gateway in its own uvicorn process, so its peak RSS is its own: (base URL, pid)."""
    port = free_port()
    env = {**os.environ, "TRITON_GRPC_URL": triton.grpc_url, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.app:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        began = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() - began < 30, "the gateway did not start"
            time.sleep(0.1)
        yield url, process.pid
    finally:
        stop_process(process, signal.SIGTERM, 10)


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    print_table(rows)


@pytest.mark.parametrize("case", HTTP_CASES, ids=[case.name for case in HTTP_CASES])
def test_battery_http(gateway_process, triton: TritonServer, table, case: Http):
    url, pid = gateway_process
    content, headers = case.build()
    with httpx.Client(base_url=url, timeout=30) as client, measured(pid) as seen:
        response = client.request(case.method, case.path, content=content, headers=headers)
    table.append(Row(case.name, response.status_code, seen.seconds, seen.grown_mb))
    check_answer(response.status_code, case.status, response.content, seen, [str(triton.grpc_port)])


def test_battery_has_at_least_40_cases():
    assert len(HTTP_CASES) >= 40  # and tests/lambda/test_bad_events.py's events besides
