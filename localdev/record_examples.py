"""Record the OpenAPI document's 200 answers from the real service: ``python -m localdev.record_examples``.

Starts a local Triton, sends every request example of the document (and every GET, with the path parameters'
examples) to the gateway in process, and writes the answers to ``service/openapi_answers.json``, which the
document shows as its 200 examples. ``--image`` prints a freshly made example JPEG as base64 instead.
``tests/integration/test_openapi_examples.py`` sends the same calls and expects the same answers."""

from __future__ import annotations

import argparse
import base64
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSWERS = Path(__file__).resolve().parents[1] / "service" / "openapi_answers.json"


@dataclass(frozen=True)
class ExampleCall:
    """One call the document's examples describe: the operation, the concrete path, and the body."""

    operation: str  # "METHOD /path/{template}", as the document's keys
    name: str  # the request example's name, "default" for a GET
    method: str
    path: str
    body: Any = None


def example_calls(document: dict[str, Any]) -> Iterator[ExampleCall]:
    """Every request example of ``document`` (JSON bodies), and one call of every GET, ready to send."""
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    path = path.replace(f"{{{parameter['name']}}}", str(parameter["example"]))
            key = f"{method.upper()} {template}"
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if method == "get":
                yield ExampleCall(key, "default", "GET", path)
            for name, example in content.get("examples", {}).items():
                yield ExampleCall(key, name, method.upper(), path, example["value"])


def example_jpeg() -> bytes:
    """A 32x32 JPEG of a sun over grass, ~500 bytes, small enough to read."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (32, 32), (70, 130, 180))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 25, 25), fill=(240, 200, 40))
    draw.rectangle((0, 24, 32, 32), fill=(60, 140, 60))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70, optimize=True)
    return out.getvalue()


def record() -> dict[str, dict[str, Any]]:
    """The 200 answers of every example call, from a gateway in front of a fresh local Triton."""
    # Imported here: the test client (httpx) and the service are needed only when recording.
    from starlette.testclient import TestClient

    from localdev.model_repo import build_model_repository
    from localdev.tritonserver import TritonServer
    from service.app import create_app
    from service.settings import Settings

    if not ANSWERS.exists():
        ANSWERS.write_text("{}\n")  # the document reads it; the first recording starts from nothing
    recorded: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, TritonServer(build_model_repository(Path(tmp))) as triton:
        app = create_app(Settings(triton_grpc_url=triton.grpc_url))
        with TestClient(app) as client:
            for call in example_calls(app.openapi()):
                response = client.request(call.method, call.path, json=call.body)
                if response.status_code != 200:
                    raise SystemExit(f"{call}: {response.status_code} {response.text}")
                if response.content:
                    recorded.setdefault(call.operation, {})[call.name] = response.json()
    return recorded


def main() -> None:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m localdev.record_examples", description=__doc__)
    parser.add_argument("--image", action="store_true", help="print a new example JPEG as base64 and exit")
    if parser.parse_args().image:
        print(base64.b64encode(example_jpeg()).decode())
        return
    ANSWERS.write_text(json.dumps(record(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {ANSWERS}")


if __name__ == "__main__":
    main()
