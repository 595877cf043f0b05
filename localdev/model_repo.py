"""Generate the local Triton model repository: python-backend stand-ins for the production models.

Production serves ``models/`` with the onnxruntime backend, which the pip-installed tritonserver lacks, so
every local model is a python-backend ``model.py``; the ONNX-shaped ones run a small ``model.onnx`` with
onnxruntime. Clients see the production names, datatypes and shapes. The build is deterministic and
idempotent: files are rewritten only when their bytes change, so a running Triton is never disturbed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import onnx

from localdev import onnx_graphs
from localdev.paths import PRODUCTION_MODELS


@dataclass(frozen=True)
class LocalModel:
    """One model directory: its config, its python-backend module, ONNX graph per version, label files."""

    name: str
    config: str
    python_model: str  # module in localdev.python_models copied to <version>/model.py
    versions: Mapping[int, Callable[[], onnx.ModelProto] | None]
    labels: Mapping[str, Callable[[], str]] = field(default_factory=dict)


def _lines(*labels: str) -> Callable[[], str]:
    return lambda: "".join(f"{label}\n" for label in labels)


def _production_densenet_labels() -> str:
    # The same 1000 ImageNet labels production serves, so classification answers read the same locally.
    return (PRODUCTION_MODELS / "densenet_onnx" / "densenet_labels.txt").read_text(encoding="utf-8")


def _instances(count: int) -> str:
    return f"instance_group [ {{ count: {count} kind: KIND_CPU }} ]"


def _queue_policy(timeout_us: int) -> str:
    # Triton sheds what waited past the timeout (UNAVAILABLE "Request timeout expired", which the gateway
    # answers 503 "overloaded") instead of queueing until the caller's deadline. A max_queue_size instead
    # collapses throughput on 2.51 (43 of 800 requests served at 2x capacity, docs/fleet.md), so none is set.
    # allow_timeout_override lets the gateway pass a shorter timeout (the caller's remaining deadline).
    return (
        "dynamic_batching {\n"
        "  default_queue_policy {\n"
        "    timeout_action: REJECT\n"
        f"    default_timeout_microseconds: {timeout_us}\n"
        "    allow_timeout_override: true\n"
        "  }\n"
        "}"
    )


# Deterministic models only: Triton answers a repeated request (same inputs, same outputs asked) from its
# cache without running the model. Needs --cache-config on the server; without it the flag does nothing.
RESPONSE_CACHE = "response_cache { enable: true }"


def _scaling(mode: str) -> str:
    # Read by the gateway to pick pixel scaling for image requests, as Triton's image_client does.
    return f'parameters {{ key: "image_scaling" value: {{ string_value: "{mode}" }} }}'


DENSENET_CONFIG = f"""\
name: "densenet_onnx"
backend: "python"
max_batch_size: 0
input [
  {{
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape {{ shape: [ 1, 3, 224, 224 ] }}
  }}
]
output [
  {{
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape {{ shape: [ 1, 1000, 1, 1 ] }}
    label_filename: "densenet_labels.txt"
  }}
]
{_instances(1)}
{_scaling("INCEPTION")}
# Production's policy and cache; a longer queue timeout here, where one CPU instance serves every test's
# images on a shared 2-core machine and must not shed a fan-out of 16 (production: 1 s).
{_queue_policy(5_000_000)}
{RESPONSE_CACHE}
"""

CLASSIFIER_BATCHED_CONFIG = f"""\
name: "classifier_batched"
backend: "python"
max_batch_size: 8
version_policy: {{ all {{ }} }}
dynamic_batching {{ }}
input [
  {{
    name: "INPUT"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 64, 64 ]
  }}
]
output [
  {{
    name: "PROBS"
    data_type: TYPE_FP32
    dims: [ 10 ]
    label_filename: "labels.txt"
  }}
]
{_instances(1)}
{_scaling("VGG")}
"""

NHWC_UINT8_CONFIG = f"""\
name: "nhwc_uint8"
backend: "python"
max_batch_size: 4
input [
  {{
    name: "image"
    data_type: TYPE_UINT8
    format: FORMAT_NHWC
    dims: [ 96, 128, 3 ]
  }}
]
output [
  {{
    name: "scores"
    data_type: TYPE_FP32
    dims: [ 5 ]
    label_filename: "labels.txt"
  }}
]
{_instances(1)}
{_scaling("NONE")}
"""

GRAY_FP16_CONFIG = f"""\
name: "gray_fp16"
backend: "python"
max_batch_size: 0
input [
  {{
    name: "pixels"
    data_type: TYPE_FP16
    format: FORMAT_NCHW
    dims: [ 1, 32, 32 ]
  }}
]
output [
  {{
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 4 ]
    label_filename: "labels.txt"
  }}
]
{_instances(1)}
{_scaling("NONE")}
"""

TEXT_BYTES_CONFIG = f"""\
name: "text_bytes"
backend: "python"
max_batch_size: 0
input [
  {{
    name: "TEXT"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }}
]
output [
  {{
    name: "UPPER"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }},
  {{
    name: "LENGTHS"
    data_type: TYPE_INT32
    dims: [ -1 ]
  }}
]
{_instances(1)}
"""

SLOW_MODEL_CONFIG = f"""\
name: "slow_model"
backend: "python"
max_batch_size: 0
input [
  {{
    name: "DELAY_MS"
    data_type: TYPE_INT32
    dims: [ 1 ]
  }}
]
output [
  {{
    name: "ECHO"
    data_type: TYPE_INT32
    dims: [ 1 ]
  }}
]
# Two instances: a call left sleeping by a timed-out test does not hold up the next test's call.
{_instances(2)}
"""


# The sleep models' queue timeout: 150 ms = 7.5 executions, so at 2x capacity a burst sheds within ~150 ms
# while ~42-46 of 50 req/s are still served (measured, docs/fleet.md "Overload").
def _sleep_config(name: str, *, cache: bool, queue_timeout_us: int = 150_000) -> str:
    return f"""\
name: "{name}"
backend: "python"
max_batch_size: 1
input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }} ]
# One instance sleeping {SLEEP_MS} ms per execution: at most {1000 // SLEEP_MS} inferences/s per Triton.
{_instances(1)}
parameters {{ key: "sleep_ms" value: {{ string_value: "{SLEEP_MS}" }} }}
{_queue_policy(queue_timeout_us)}
{RESPONSE_CACHE if cache else ""}
"""


SLEEP_MS = 20

# The sleep model batching whatever arrives within a second, up to 128 requests: the size of the batches
# Triton ran (its batch statistics) is how many requests a gateway had open at once.
SLEEP_BATCHED_CONFIG = f"""\
name: "sleep_batched"
backend: "python"
max_batch_size: 128
input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }} ]
{_instances(1)}
parameters {{ key: "sleep_ms" value: {{ string_value: "{SLEEP_MS}" }} }}
dynamic_batching {{ max_queue_delay_microseconds: 1000000 }}
"""


def _optional(name: str, datatype: str) -> str:
    return f'  {{ name: "{name}" data_type: {datatype} dims: [ 1 ] optional: true }}'


def _text_config(name: str, inputs: list[str], outputs: list[str]) -> str:
    # Decoupled, as vLLM's and TensorRT-LLM's backends are: one response per generated word, then an empty
    # final one; clients reach it through gRPC's ModelStreamInfer (or Triton's HTTP generate_stream).
    extra_inputs = ",\n".join(inputs)
    extra_outputs = "".join(f",\n{output}" for output in outputs)
    return f"""\
name: "{name}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [
  {{ name: "text_input" data_type: TYPE_STRING dims: [ 1 ] }},
{extra_inputs}
]
output [
  {{ name: "text_output" data_type: TYPE_STRING dims: [ -1 ] }}{extra_outputs}
]
{_instances(1)}
parameters {{ key: "token_delay_ms" value: {{ string_value: "{TOKEN_DELAY_MS}" }} }}
"""


TOKEN_DELAY_MS = 10
# vLLM backend's contract (triton-inference-server/vllm_backend): sampling parameters as one JSON string.
TEXT_GEN_CONFIG = _text_config(
    "text_gen",
    [
        _optional("stream", "TYPE_BOOL"),
        _optional("sampling_parameters", "TYPE_STRING"),
        _optional("exclude_input_in_output", "TYPE_BOOL"),
        _optional("return_num_input_tokens", "TYPE_BOOL"),
        _optional("return_num_output_tokens", "TYPE_BOOL"),
        _optional("return_finish_reason", "TYPE_BOOL"),
    ],
    [
        '  { name: "num_input_tokens" data_type: TYPE_UINT32 dims: [ 1 ] }',
        '  { name: "num_output_tokens" data_type: TYPE_UINT32 dims: [ 1 ] }',
        '  { name: "finish_reason" data_type: TYPE_STRING dims: [ -1 ] }',
    ],
)
# TensorRT-LLM's ensemble contract (tensorrtllm_backend's all_models/inflight_batcher_llm/ensemble), without
# its batch dimension: sampling parameters as tensors of their own.
TEXT_GEN_TRTLLM_CONFIG = _text_config(
    "text_gen_trtllm",
    [
        '  { name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] }',
        _optional("stream", "TYPE_BOOL"),
        '  { name: "stop_words" data_type: TYPE_STRING dims: [ -1 ] optional: true }',
        _optional("temperature", "TYPE_FP32"),
        _optional("top_p", "TYPE_FP32"),
    ],
    [],
)
# A Hugging Face tokenizer_config.json as text models ship it; the gateway renders its chat_template.
TEXT_GEN_TOKENIZER_CONFIG = json.dumps(
    {
        "chat_template": (
            "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
            "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
        )
    },
    indent=2,
)

MODELS: tuple[LocalModel, ...] = (
    LocalModel(
        "densenet_onnx",
        DENSENET_CONFIG,
        "onnx_runner",
        {1: lambda: onnx_graphs.densenet_like(seed=121)},
        {"densenet_labels.txt": _production_densenet_labels},
    ),
    LocalModel(
        "classifier_batched",
        CLASSIFIER_BATCHED_CONFIG,
        "onnx_runner",
        {
            1: lambda: onnx_graphs.batched_classifier(seed=1),
            2: lambda: onnx_graphs.batched_classifier(seed=2),
        },
        {
            "labels.txt": _lines(
                "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
            )
        },
    ),
    LocalModel(
        "nhwc_uint8",
        NHWC_UINT8_CONFIG,
        "onnx_runner",
        {1: lambda: onnx_graphs.nhwc_uint8_classifier(seed=5)},
        {"labels.txt": _lines("daisy", "dandelion", "rose", "sunflower", "tulip")},
    ),
    LocalModel(
        "gray_fp16",
        GRAY_FP16_CONFIG,
        "onnx_runner",
        {1: lambda: onnx_graphs.gray_fp16_classifier(seed=4)},
        {"labels.txt": _lines("circle", "square", "triangle", "star")},
    ),
    LocalModel("text_bytes", TEXT_BYTES_CONFIG, "text_bytes", {1: None}),
    LocalModel("slow_model", SLOW_MODEL_CONFIG, "slow_model", {1: None}),
    # Deterministic decoupled text models, one per input contract the gateway's /v1 speaks.
    LocalModel(
        "text_gen",
        TEXT_GEN_CONFIG,
        "text_stream",
        {1: None},
        {"tokenizer_config.json": lambda: TEXT_GEN_TOKENIZER_CONFIG},
    ),
    LocalModel("text_gen_trtllm", TEXT_GEN_TRTLLM_CONFIG, "text_stream", {1: None}),
    # The fleet's load model, and the same deterministic model with Triton's response cache on.
    LocalModel("sleep_model", _sleep_config("sleep_model", cache=False), "sleep_model", {1: None}),
    LocalModel("sleep_cached", _sleep_config("sleep_cached", cache=True), "sleep_model", {1: None}),
    # For the fleet's fault tests under steady load: a CPU stall of a shared CI machine must not make Triton
    # shed (a 2 s queue timeout), so every failure they see is the fault's.
    LocalModel(
        "sleep_patient",
        _sleep_config("sleep_patient", cache=False, queue_timeout_us=2_000_000),
        "sleep_model",
        {1: None},
    ),
    LocalModel("sleep_batched", SLEEP_BATCHED_CONFIG, "sleep_model", {1: None}),
)

MODEL_NAMES: tuple[str, ...] = tuple(model.name for model in MODELS)


def build_model_repository(dest: Path) -> Path:
    """Create or refresh the local model repository at ``dest``; return ``dest``. Safe to call repeatedly."""
    dest.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        model_dir = dest / model.name
        _write_if_changed(model_dir / "config.pbtxt", model.config.encode())
        for filename, text in model.labels.items():
            _write_if_changed(model_dir / filename, text().encode())
        code = resources.files("localdev.python_models").joinpath(f"{model.python_model}.py").read_bytes()
        for version, graph in model.versions.items():
            _write_if_changed(model_dir / str(version) / "model.py", code)
            if graph is not None:
                _write_if_changed(model_dir / str(version) / "model.onnx", graph().SerializeToString())
    return dest


def onnx_path(repository: Path, model: str, version: int = 1) -> Path:
    """Path of the ONNX file a local model version runs, for comparing Triton with onnxruntime directly."""
    path = repository / model / str(version) / "model.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {model!r} an ONNX-backed local model?")
    return path


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside and rename: a Triton polling this repository never reads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; keep the repository readable, like any checkout
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
