"""The generated local model repository and the production one are well-formed, without a server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from localdev.model_repo import MODEL_NAMES, build_model_repository, onnx_path
from localdev.paths import PRODUCTION_MODELS

ONNX_MODELS = {"densenet_onnx": [1], "classifier_batched": [1, 2], "nhwc_uint8": [1], "gray_fp16": [1]}
ORT_TYPES = {
    model_config_pb2.TYPE_FP32: "tensor(float)",
    model_config_pb2.TYPE_FP16: "tensor(float16)",
    model_config_pb2.TYPE_UINT8: "tensor(uint8)",
}


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_repository(tmp_path_factory.mktemp("repo"))


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_config_is_valid_model_config(repo: Path, model: str) -> None:
    config = parse_config(repo / model / "config.pbtxt")
    assert config.name == model
    assert config.backend == "python"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    for output in config.output:
        if output.label_filename:
            labels = (repo / model / output.label_filename).read_text().splitlines()
            assert len(labels) == output.dims[-1]
    for version_dir in (p for p in (repo / model).iterdir() if p.is_dir()):
        assert (version_dir / "model.py").is_file()


@pytest.mark.parametrize(("model", "version"), [(m, v) for m, vs in ONNX_MODELS.items() for v in vs])
def test_onnx_file_is_valid_and_matches_config(repo: Path, model: str, version: int) -> None:
    path = onnx_path(repo, model, version)
    onnx.checker.check_model(str(path), full_check=True)
    config = parse_config(repo / model / "config.pbtxt")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # What Triton hands the model: the config's reshape if any, else [batch] + dims when batching.
    inputs = zip(config.input, session.get_inputs(), strict=True)
    outputs = zip(config.output, session.get_outputs(), strict=True)
    for spec, actual in [*inputs, *outputs]:
        assert actual.name == spec.name
        dims = list(spec.reshape.shape) if spec.HasField("reshape") else list(spec.dims)
        expected = [-1, *dims] if config.max_batch_size > 0 else dims
        assert [d if isinstance(d, int) else -1 for d in actual.shape] == expected
    assert session.get_inputs()[0].type == ORT_TYPES[config.input[0].data_type]


def test_build_is_deterministic_and_idempotent(repo: Path, tmp_path: Path) -> None:
    other = build_model_repository(tmp_path / "other")
    files = sorted(p.relative_to(repo) for p in repo.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for name in files:
        assert (repo / name).read_bytes() == (other / name).read_bytes(), name
    mtimes = {name: (other / name).stat().st_mtime_ns for name in files}
    build_model_repository(other)
    assert {name: (other / name).stat().st_mtime_ns for name in files} == mtimes


def test_classifier_versions_have_different_weights(repo: Path) -> None:
    one, two = (onnx.load(str(onnx_path(repo, "classifier_batched", v))) for v in (1, 2))
    w1 = onnx.numpy_helper.to_array(one.graph.initializer[0])
    w2 = onnx.numpy_helper.to_array(two.graph.initializer[0])
    assert not np.allclose(w1, w2)


def test_production_densenet_config_is_triton_example_plus_scaling() -> None:
    config = parse_config(PRODUCTION_MODELS / "densenet_onnx" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 0
    assert config.parameters["image_scaling"].string_value == "INCEPTION"
    labels = (PRODUCTION_MODELS / "densenet_onnx" / "densenet_labels.txt").read_text().splitlines()
    assert len(labels) == 1000
    assert (labels[0], labels[999]) == ("TENCH", "TOILET TISSUE")


def test_local_densenet_has_production_interface(repo: Path) -> None:
    # GIVEN the production config and the local stand-in's
    prod = parse_config(PRODUCTION_MODELS / "densenet_onnx" / "config.pbtxt")
    local = parse_config(repo / "densenet_onnx" / "config.pbtxt")
    # THEN everything a client or the gateway can observe is the same; only how it runs differs
    assert local.max_batch_size == prod.max_batch_size
    assert list(local.input) == list(prod.input)
    assert list(local.output) == list(prod.output)
    assert dict(local.parameters) == dict(prod.parameters)
    assert (repo / "densenet_onnx" / "densenet_labels.txt").read_bytes() == (
        PRODUCTION_MODELS / "densenet_onnx" / "densenet_labels.txt"
    ).read_bytes()


def _shedding_policy(config: model_config_pb2.ModelConfig) -> model_config_pb2.ModelQueuePolicy:
    assert config.HasField("dynamic_batching"), config.name
    policy = config.dynamic_batching.default_queue_policy
    # Shed by queue time (REJECT after a timeout the gateway may shorten), never by queue size: on 2.51 a
    # max_queue_size collapsed throughput under overload (docs/fleet.md, "Overload").
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.allow_timeout_override
    assert policy.max_queue_size == 0
    return policy


def test_production_densenet_sheds_by_queue_time_and_caches() -> None:
    config = parse_config(PRODUCTION_MODELS / "densenet_onnx" / "config.pbtxt")
    policy = _shedding_policy(config)
    # Under the gateway's 10 s deadline, so Triton sheds before the caller gives up.
    assert 0 < policy.default_timeout_microseconds < 10_000_000
    assert config.response_cache.enable


def test_local_densenet_sheds_and_caches_like_production(repo: Path) -> None:
    local = parse_config(repo / "densenet_onnx" / "config.pbtxt")
    assert _shedding_policy(local).default_timeout_microseconds > 0
    assert local.response_cache.enable


@pytest.mark.parametrize(
    ("model", "cached", "queue_timeout_us"),
    [("sleep_model", False, 150_000), ("sleep_cached", True, 150_000), ("sleep_patient", False, 2_000_000)],
)
def test_sleep_models_cost_time_one_execution_at_a_time(
    repo: Path, model: str, cached: bool, queue_timeout_us: int
) -> None:
    config = parse_config(repo / model / "config.pbtxt")
    # One instance, one request per execution: 20 ms each caps one Triton at 50 inferences/s on any CPU.
    assert config.max_batch_size == 1
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (1, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    ]
    assert config.parameters["sleep_ms"].string_value == "20"
    assert _shedding_policy(config).default_timeout_microseconds == queue_timeout_us
    assert config.response_cache.enable == cached
