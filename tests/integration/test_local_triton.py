"""The local Triton, the real server, answers like the production models would, and the launcher works.

Every numeric answer is checked against onnxruntime running the very same ONNX file, outside Triton.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from localdev.model_repo import MODEL_NAMES
from localdev.tritonserver import TritonServer

rng = np.random.default_rng(20240601)
OnnxSession = Callable[..., onnxruntime.InferenceSession]  # the ``onnx_session`` fixture

# name -> (versions, inputs, outputs) as clients see them: (tensor name, datatype, shape); -1 = batch.
EXPECTED_METADATA = {
    "densenet_onnx": (["1"], [("data_0", "FP32", [3, 224, 224])], [("fc6_1", "FP32", [1000])]),
    "classifier_batched": (["1", "2"], [("INPUT", "FP32", [-1, 3, 64, 64])], [("PROBS", "FP32", [-1, 10])]),
    "nhwc_uint8": (["1"], [("image", "UINT8", [-1, 96, 128, 3])], [("scores", "FP32", [-1, 5])]),
    "gray_fp16": (["1"], [("pixels", "FP16", [1, 32, 32])], [("logits", "FP32", [4])]),
    "text_bytes": (["1"], [("TEXT", "BYTES", [-1])], [("UPPER", "BYTES", [-1]), ("LENGTHS", "INT32", [-1])]),
    "slow_model": (["1"], [("DELAY_MS", "INT32", [1])], [("ECHO", "INT32", [1])]),
    "sleep_model": (["1"], [("X", "INT32", [-1, 1])], [("Y", "INT32", [-1, 1])]),
    "sleep_cached": (["1"], [("X", "INT32", [-1, 1])], [("Y", "INT32", [-1, 1])]),
    "sleep_patient": (["1"], [("X", "INT32", [-1, 1])], [("Y", "INT32", [-1, 1])]),
    "sleep_batched": (["1"], [("X", "INT32", [-1, 1])], [("Y", "INT32", [-1, 1])]),
    "text_gen": (
        ["1"],
        [("text_input", "BYTES", [1])]
        + [(name, "BOOL", [1]) for name in ("stream",)]
        + [("sampling_parameters", "BYTES", [1])]
        + [
            (name, "BOOL", [1])
            for name in (
                "exclude_input_in_output",
                "return_num_input_tokens",
                "return_num_output_tokens",
                "return_finish_reason",
            )
        ],
        [
            ("text_output", "BYTES", [-1]),
            ("num_input_tokens", "UINT32", [1]),
            ("num_output_tokens", "UINT32", [1]),
            ("finish_reason", "BYTES", [-1]),
        ],
    ),
    "text_gen_trtllm": (
        ["1"],
        [
            ("text_input", "BYTES", [1]),
            ("max_tokens", "INT32", [1]),
            ("stream", "BOOL", [1]),
            ("stop_words", "BYTES", [-1]),
            ("temperature", "FP32", [1]),
            ("top_p", "FP32", [1]),
        ],
        [("text_output", "BYTES", [-1])],
    ),
}


def infer(
    client: grpcclient.InferenceServerClient,
    model: str,
    name: str,
    x: npt.NDArray[Any],
    output: str,
    version: str = "",
) -> npt.NDArray[Any]:
    tensor = grpcclient.InferInput(name, list(x.shape), _datatype(x))
    tensor.set_data_from_numpy(x)
    result: npt.NDArray[Any] = client.infer(model, [tensor], model_version=version).as_numpy(output)
    return result


def _datatype(x: npt.NDArray[Any]) -> str:
    return {np.float32: "FP32", np.float16: "FP16", np.uint8: "UINT8", np.int32: "INT32"}[x.dtype.type]


def test_all_models_are_served(triton_grpc: grpcclient.InferenceServerClient) -> None:
    # What the session's Triton itself reports loaded: every generated model, every version, READY.
    index = triton_grpc.get_model_repository_index(as_json=True)["models"]
    served = {(m["name"], m.get("version", "")) for m in index if m.get("state") == "READY"}
    expected = {(name, v) for name, (versions, _, _) in EXPECTED_METADATA.items() for v in versions}
    assert served == expected
    assert set(MODEL_NAMES) == set(EXPECTED_METADATA)  # a new local model needs its metadata here


@pytest.mark.parametrize("model", sorted(EXPECTED_METADATA))
def test_model_ready_with_expected_metadata(
    triton_grpc: grpcclient.InferenceServerClient, model: str
) -> None:
    versions, inputs, outputs = EXPECTED_METADATA[model]
    for version in versions:
        assert triton_grpc.is_model_ready(model, version)
    meta = triton_grpc.get_model_metadata(model, as_json=True)
    assert sorted(meta["versions"]) == versions
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]] == inputs
    assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]] == outputs


@pytest.mark.parametrize(
    ("model", "scaling", "input_format"),
    [
        ("densenet_onnx", "INCEPTION", "FORMAT_NCHW"),
        ("classifier_batched", "VGG", "FORMAT_NCHW"),
        ("nhwc_uint8", "NONE", "FORMAT_NHWC"),
        ("gray_fp16", "NONE", "FORMAT_NCHW"),
    ],
)
def test_image_models_advertise_scaling_and_format(
    triton_grpc: grpcclient.InferenceServerClient, model: str, scaling: str, input_format: str
) -> None:
    config = triton_grpc.get_model_config(model).config
    assert config.parameters["image_scaling"].string_value == scaling
    assert config.input[0].format == config.input[0].Format.Value(input_format)
    assert config.output[0].label_filename


def test_densenet_matches_onnxruntime(
    triton_grpc: grpcclient.InferenceServerClient, onnx_session: OnnxSession
) -> None:
    x = rng.uniform(-1, 1, (3, 224, 224)).astype(np.float32)

    got = infer(triton_grpc, "densenet_onnx", "data_0", x, "fc6_1")

    want = onnx_session("densenet_onnx").run(None, {"data_0": x[np.newaxis]})[0]
    assert got.shape == (1000,)
    assert want.shape == (1, 1000, 1, 1)
    np.testing.assert_allclose(got, want.reshape(1000), rtol=1e-5)
    assert np.unique(got).size == 1000  # scores are distinct, so top-k is well defined


def test_densenet_classification_uses_production_labels(
    triton_grpc: grpcclient.InferenceServerClient, onnx_session: OnnxSession
) -> None:
    # GIVEN an image and the scores onnxruntime gives it
    x = rng.uniform(-1, 1, (3, 224, 224)).astype(np.float32)
    scores = onnx_session("densenet_onnx").run(None, {"data_0": x[np.newaxis]})[0].reshape(1000)
    labels = (Path(__file__).parents[2] / "models/densenet_onnx/densenet_labels.txt").read_text().splitlines()
    # WHEN Triton is asked for the top 3 classes (classification extension)
    tensor = grpcclient.InferInput("data_0", [3, 224, 224], "FP32")
    tensor.set_data_from_numpy(x)
    wanted = grpcclient.InferRequestedOutput("fc6_1", class_count=3)
    got = triton_grpc.infer("densenet_onnx", [tensor], outputs=[wanted]).as_numpy("fc6_1")
    # THEN it answers "score:index:label" for the three best, best first, labelled from the file
    top = np.argsort(scores)[::-1][:3]
    parsed = [entry.decode().split(":", 2) for entry in got]
    assert [int(index) for _, index, _ in parsed] == top.tolist()
    assert [label for _, _, label in parsed] == [labels[i] for i in top]
    np.testing.assert_allclose([float(score) for score, _, _ in parsed], scores[top], rtol=1e-5)


def test_classifier_batched_versions_match_onnxruntime(
    triton_grpc: grpcclient.InferenceServerClient, onnx_session: OnnxSession
) -> None:
    x = rng.uniform(-120, 150, (3, 3, 64, 64)).astype(np.float32)
    got = {}
    for version in (1, 2):
        got[version] = infer(triton_grpc, "classifier_batched", "INPUT", x, "PROBS", version=str(version))
        want = onnx_session("classifier_batched", version).run(None, {"INPUT": x})[0]
        assert got[version].shape == (3, 10)
        np.testing.assert_allclose(got[version], want, rtol=1e-5)
        np.testing.assert_allclose(got[version].sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(got[1], got[2], rtol=1e-2)


def test_dynamic_batching_answers_each_request(
    triton_grpc: grpcclient.InferenceServerClient, onnx_session: OnnxSession
) -> None:
    # GIVEN several concurrent requests of different batch sizes, which Triton may merge into one execute()
    inputs = [rng.uniform(-120, 150, (n, 3, 64, 64)).astype(np.float32) for n in (1, 2, 3, 1)]
    done: Queue[tuple[int, Any, Any]] = Queue()
    for i, x in enumerate(inputs):
        tensor = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        triton_grpc.async_infer(
            "classifier_batched", [tensor], callback=lambda result, error, i=i: done.put((i, result, error))
        )
    # WHEN all have answered
    answers = {}
    for _ in inputs:
        i, result, error = done.get(timeout=30)
        assert error is None, error
        answers[i] = result.as_numpy("PROBS")
    # THEN each got its own rows, from the latest version (2)
    session = onnx_session("classifier_batched", 2)
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(answers[i], session.run(None, {"INPUT": x})[0], rtol=1e-5)


def test_nhwc_uint8_matches_onnxruntime(
    triton_grpc: grpcclient.InferenceServerClient, onnx_session: OnnxSession
) -> None:
    x = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    got = infer(triton_grpc, "nhwc_uint8", "image", x, "scores")
    np.testing.assert_allclose(got, onnx_session("nhwc_uint8").run(None, {"image": x})[0], rtol=1e-5)
    # The model is position-sensitive: a horizontally flipped image scores differently.
    flipped = infer(triton_grpc, "nhwc_uint8", "image", np.ascontiguousarray(x[:, :, ::-1]), "scores")
    assert not np.allclose(got, flipped, rtol=1e-3)


def test_gray_fp16_matches_onnxruntime(
    triton_grpc: grpcclient.InferenceServerClient, onnx_session: OnnxSession
) -> None:
    x = rng.integers(0, 256, (1, 32, 32)).astype(np.float16)
    got = infer(triton_grpc, "gray_fp16", "pixels", x, "logits")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, onnx_session("gray_fp16").run(None, {"pixels": x})[0], rtol=1e-5)


def test_text_bytes_uppercases_and_counts_bytes(triton_grpc: grpcclient.InferenceServerClient) -> None:
    text = np.array(["hello", "Triton ✓", ""], dtype=np.object_)
    tensor = grpcclient.InferInput("TEXT", [3], "BYTES")
    tensor.set_data_from_numpy(text)

    result = triton_grpc.infer("text_bytes", [tensor])

    assert result.as_numpy("UPPER").tolist() == [b"HELLO", "TRITON ✓".encode(), b""]
    assert result.as_numpy("LENGTHS").tolist() == [5, len("Triton ✓".encode()), 0]


def test_slow_model_sleeps_then_echoes(triton_grpc: grpcclient.InferenceServerClient) -> None:
    began = time.monotonic()
    got = infer(triton_grpc, "slow_model", "DELAY_MS", np.array([300], dtype=np.int32), "ECHO")
    assert time.monotonic() - began >= 0.3
    assert got.tolist() == [300]


def test_slow_model_exceeds_a_client_deadline(triton_grpc: grpcclient.InferenceServerClient) -> None:
    tensor = grpcclient.InferInput("DELAY_MS", [1], "INT32")
    tensor.set_data_from_numpy(np.array([5000], dtype=np.int32))
    with pytest.raises(InferenceServerException) as raised:
        triton_grpc.infer("slow_model", [tensor], client_timeout=0.2)
    assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    # The second instance is free, so the next call is not stuck behind the sleeping one (which would take
    # ~5 s; a free instance answers in milliseconds: the bound leaves room for two busy cores).
    began = time.monotonic()
    assert infer(triton_grpc, "slow_model", "DELAY_MS", np.array([0], dtype=np.int32), "ECHO").tolist() == [0]
    assert time.monotonic() - began < 2.5


def test_stopped_server_comes_back_on_the_same_ports(triton_factory: Callable[..., TritonServer]) -> None:
    # GIVEN a private server with one model
    server = triton_factory(models=["text_bytes"])
    grpc_url, http_url = server.grpc_url, server.http_url
    assert server.is_ready()
    # WHEN it is stopped, it is neither running nor ready, and stop() may be repeated
    server.stop()
    server.stop()
    assert not server.is_running()
    assert not server.is_ready()
    # THEN restart brings it back where clients expect it
    server.restart()
    assert (server.grpc_url, server.http_url) == (grpc_url, http_url)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert client.is_model_ready("text_bytes")
        assert not client.is_model_ready("densenet_onnx")  # explicit mode loaded only what was asked
    finally:
        client.close()
