"""The OpenAPI document's examples: request bodies that run on the served models, and one error example of
each status in the words the gateway writes. Their 200 answers are recorded from the real service into
``openapi_answers.json`` by ``python -m localdev.record_examples``; a test sends every example again."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# A 32x32 JPEG (a sun over grass, 515 bytes), made once by `python -m localdev.record_examples --image`.
EXAMPLE_JPEG = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAoHBwgHBgoICAgLCgoLDhgQDg0NDh0VFhEYIx8lJCIfIiEmKzcvJik0KSEiMEEx"
    "NDk7Pj4+JS5ESUM8SDc9Pjv/2wBDAQoLCw4NDhwQEBw7KCIoOzs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7Ozs7"
    "Ozs7Ozs7Ozs7Ozs7Ozv/wAARCAAgACADASIAAhEBAxEB/8QAGAAAAwEBAAAAAAAAAAAAAAAAAAQGBwX/xAAgEAACAgIBBQEA"
    "AAAAAAAAAAABAwIEABEhExQxYaGR/8QAFwEBAQEBAAAAAAAAAAAAAAAAAAEEBf/EAB8RAAICAgIDAQAAAAAAAAAAAAECBBEA"
    "IQUUEjFRof/aAAwDAQACEQMRAD8AXxitRtXN9BMpgeT4H6cKNbvLqkb0Jnk+hyfmWSlLQqKlREIRGgBk5blujSILY736AzJD"
    "h9i2Y0BkbZo2qeuumUAfB8j9GL5dNUt6pKbEThIaIORt6t2d1qN7EDwfR5HzHE8t3rRxTDevRGJkPr0ymwcKNns7qn62IHke"
    "jwfmWSmreqLVSE4SGwRmeYZyeTRJ7K9eJGvuvzJFmNHBWrBzQ2tWhUmtkIQiNknI29Z7y61+tCZ4HocD5nOwxxiJAZnryY6+"
    "a/cSpjSAFqgM/9k="
)
# gray_fp16's [1, 32, 32] FP16 input, 0.5 (0x3800, little-endian) in every pixel.
_GRAY_HALF = base64.b64encode(bytes.fromhex("0038") * 32 * 32).decode()


@dataclass(frozen=True)
class Example:
    """One named example: Swagger UI lists it by ``summary``; the first of a list is the default."""

    name: str
    summary: str
    value: Any


_BYTES_INPUT = {"name": "TEXT", "datatype": "BYTES", "shape": [2], "data": ["hello", "triton"]}

# Request bodies (application/json) by operation, "METHOD /path" as the document writes it.
REQUESTS: dict[str, list[Example]] = {
    "POST /infer": [
        Example(
            "image_top_k",
            "One base64 JPEG, its 2 best classes",
            {"model": "densenet_onnx", "image": EXAMPLE_JPEG, "top_k": 2},
        ),
        Example(
            "images_batched",
            "Two images as one batch to a batching model",
            {"model": "classifier_batched", "images": [EXAMPLE_JPEG, EXAMPLE_JPEG], "top_k": 3},
        ),
        Example(
            "tensor_json",
            "A tensor as JSON elements (BYTES strings)",
            {"model": "text_bytes", "inputs": [_BYTES_INPUT]},
        ),
        Example(
            "tensor_b64",
            "A tensor as base64 raw bytes, one output asked for",
            {
                "model": "gray_fp16",
                "inputs": [{"name": "pixels", "datatype": "FP16", "shape": [1, 32, 32], "b64": _GRAY_HALF}],
                "outputs": [{"name": "logits"}],
            },
        ),
    ],
    "POST /v2/models/{model}/infer": [
        Example("bytes", "v2 JSON tensors (model text_bytes)", {"inputs": [_BYTES_INPUT]}),
    ],
    "POST /v2/models/{model}/generate": [
        Example(
            "vllm",
            "A prompt for a vLLM-contract model (text_gen), 4 tokens",
            {"text_input": "Hello", "sampling_parameters": '{"max_tokens": 4}'},
        ),
    ],
    "POST /v2/models/{model}/versions/{version}/generate": [
        Example(
            "counts",
            "The same, with its token counts (text_gen, version 1)",
            {
                "text_input": "Hello",
                "sampling_parameters": '{"max_tokens": 4}',
                "return_num_output_tokens": True,
            },
        ),
    ],
    "POST /v2/models/{model}/versions/{version}/infer": [
        Example(
            "one_output",
            "v2 JSON tensors, one output (model text_bytes, version 1)",
            {"id": "example-1", "inputs": [_BYTES_INPUT], "outputs": [{"name": "UPPER"}]},
        ),
    ],
}

# Path parameters, by operation; the rest of the model routes show densenet_onnx, version 1.
PARAMETERS: dict[str, dict[str, str]] = {
    "POST /v2/models/{model}/infer": {"model": "text_bytes"},
    "POST /v2/models/{model}/versions/{version}/infer": {"model": "text_bytes", "version": "1"},
    "POST /v2/models/{model}/generate": {"model": "text_gen"},
    "POST /v2/models/{model}/versions/{version}/generate": {"model": "text_gen", "version": "1"},
    "POST /v2/models/{model}/generate_stream": {"model": "text_gen"},
    "POST /v2/models/{model}/versions/{version}/generate_stream": {"model": "text_gen", "version": "1"},
}
DEFAULT_PARAMETERS = {"model": "densenet_onnx", "version": "1"}


def _error(name: str, summary: str, message: str) -> Example:
    return Example(name, summary, {"error": message})


# A 5xx names its kind and the request id (API Gateway's, under Lambda), whose log line has the detail.
_REQUEST_ID = "(request id c6af9ac6-7b61-11e6-9a41-93e8deadbeef)"
_UNAVAILABLE = _error(
    "unavailable", "Triton cannot be reached", f"Triton is unavailable; try again shortly {_REQUEST_ID}"
)
_NOT_SERVED = _error(
    "not_served", "A model Triton lacks, or off the allow-list", "model 'resnet50' is not served here"
)

# One example per error status, in the gateway's words; a route's own list comes first where it has one.
ERRORS: dict[int, list[Example]] = {
    404: [_NOT_SERVED],
    413: [
        _error("too_large", "Over MAX_BODY_BYTES", "body of 10485761 bytes is over the 10485760-byte limit")
    ],
    502: [
        _error(
            "upstream",
            "Triton failed to run the request",
            f"Triton failed to run the request (INTERNAL) {_REQUEST_ID}",
        )
    ],
    503: [_UNAVAILABLE],
    504: [
        _error(
            "deadline",
            "Past TRITON_TIMEOUT_SECONDS",
            f"Triton did not answer within the 10.0 s deadline {_REQUEST_ID}",
        )
    ],
}
OPERATION_ERRORS: dict[str, dict[int, list[Example]]] = {
    "GET /health": {
        503: [
            Example(
                "unavailable",
                "Triton cannot be reached (the body says why, in the same words)",
                {
                    "status": "unhealthy",
                    "triton": "unavailable",
                    "default_model": "densenet_onnx",
                    "error": "Triton is unavailable; try again shortly",
                },
            )
        ]
    },
    "POST /infer": {
        400: [
            _error(
                "shape",
                "A tensor of the wrong shape",
                "inputs[0].shape: input 'data_0' takes [3, 224, 224] (-1 is free), got [1, 3, 224, 224]",
            ),
            _error("not_an_image", "An image that is not one", "image: not a JPEG, PNG or WebP image"),
        ],
        415: [
            _error(
                "media_type",
                "A body of another type",
                "content-type 'text/csv' is not read here; send application/json, image/jpeg, image/png, "
                "image/webp or multipart/form-data",
            )
        ],
    },
    "GET /v2/health/live": {400: [_error("not_live", "Triton says no", "Triton is not live")]},
    "GET /v2/health/ready": {400: [_error("not_ready", "Triton says no", "Triton is not ready")]},
    "GET /v2/models/{model}/ready": {
        400: [_error("not_ready", "Unknown to Triton, or not loaded", "model 'resnet50' is not ready")]
    },
    "POST /v2/models/{model}/infer": {
        400: [
            _error(
                "datatype",
                "A tensor of the wrong datatype",
                "inputs[0].datatype: input 'TEXT' is BYTES, got FP32",
            )
        ],
        415: [
            _error(
                "encoding",
                "A Content-Encoding other than gzip or deflate",
                "Content-Encoding 'br' is not supported; use gzip or deflate",
            )
        ],
    },
}
# Refused before Triton is asked (which would read "1abc" as version 1).
_BAD_VERSION = _error(
    "version",
    "A version that is not a number",
    "version: 'abc' is not a version number (digits, no leading zero, e.g. 1)",
)
OPERATION_ERRORS["GET /v2/models/{model}/versions/{version}"] = {400: [_BAD_VERSION]}
OPERATION_ERRORS["GET /v2/models/{model}/versions/{version}/config"] = {400: [_BAD_VERSION]}
OPERATION_ERRORS["GET /v2/models/{model}/versions/{version}/stats"] = {400: [_BAD_VERSION]}
OPERATION_ERRORS["GET /v2/models/{model}/versions/{version}/ready"] = {
    400: [
        _error("not_ready", "A version not loaded", "model 'densenet_onnx' version '7' is not ready"),
        _BAD_VERSION,
    ]
}
OPERATION_ERRORS["POST /v2/models/{model}/versions/{version}/infer"] = OPERATION_ERRORS[
    "POST /v2/models/{model}/infer"
]


@cache
def answers() -> dict[str, dict[str, Any]]:
    """The recorded 200 answers: operation -> example name (``default`` for a GET) -> body."""
    text = resources.files("service").joinpath("openapi_answers.json").read_text(encoding="utf-8")
    recorded: dict[str, dict[str, Any]] = json.loads(text)
    return recorded
