"""The Triton instance's model loading, rehearsed with real parts: the real tritonserver reads an s3://
model repository from a local S3 server (moto's), laid out as deploy/scripts/sync-models.sh uploads it;
every S3 request it made is read back from the server and must be allowed by the instance role's policy as
the template renders it."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from iam_policy import ALLOW, IMPLICIT_DENY, Request, evaluate
from instance_role import instance_policy_statements
from local_s3 import CREDENTIALS, LocalS3, S3Call, sync_models
from user_data import SAMPLES

from localdev.tritonserver import TritonServer

BUCKET = SAMPLES["ModelBucket"]
# The model the rehearsal serves: the production name, as the python-backend stand-in this Triton can run.
MODEL = "densenet_onnx"


class S3TritonServer(TritonServer):
    """localdev's tritonserver with its model repository on S3 and the instance's AWS credentials."""

    def __init__(self, repository_url: str, scratch: Path, **kwargs: Any) -> None:
        super().__init__(scratch, **kwargs)
        self.repository_url = repository_url

    def command(self) -> list[str]:
        return [
            f"--model-repository={self.repository_url}" if arg.startswith("--model-repository=") else arg
            for arg in super().command()
        ]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **CREDENTIALS}


def stand_in_models(model_repository: Path, dest: Path, *names: str) -> Path:
    """A models/ directory like the repository's, holding the local stand-ins of ``names``."""
    for name in names:
        shutil.copytree(model_repository / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def local_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(tmp_path_factory.mktemp("moto") / "moto_server.log") as server:
        yield server


def allowed_calls(calls: list[S3Call], statements: list[dict[str, Any]]) -> list[tuple[S3Call, Request, str]]:
    return [(call, call.iam_request(), evaluate(statements, call.iam_request())) for call in calls]


def test_triton_loads_the_s3_repository_and_the_instance_role_allows_every_call(
    local_s3: LocalS3, model_repository: Path, translated: dict[str, Any], tmp_path: Path
) -> None:
    prefix = translated["Parameters"]["ModelPrefix"]["Default"]
    models = stand_in_models(model_repository, tmp_path / "models", MODEL)
    # What sync-models.sh must leave out: a script beside the models, a model's notes, caches, dotfiles.
    (models / "fetch_densenet.sh").write_text("#!/bin/sh\n")
    for stray in ("README.md", "__pycache__/model.cpython-311.pyc", ".DS_Store", "1/convert.py"):
        (models / MODEL / stray).parent.mkdir(parents=True, exist_ok=True)
        (models / MODEL / stray).write_text("not a model file")
    synced = sync_models(local_s3, models, BUCKET, prefix, tmp_path / "sync")
    assert synced == [
        f"{prefix}/{MODEL}/1/model.onnx",
        # The local stand-in is a python-backend model: its model.py is the model and is synced.
        f"{prefix}/{MODEL}/1/model.py",
        f"{prefix}/{MODEL}/config.pbtxt",
        f"{prefix}/{MODEL}/densenet_labels.txt",
    ]
    mark = local_s3.mark()
    # No model list: Triton loads the whole repository at start, as the user data runs it.
    server = S3TritonServer(
        local_s3.triton_url(BUCKET, prefix), tmp_path / "unused", log_dir=tmp_path, startup_timeout=90
    )
    with server, httpclient.InferenceServerClient(server.http_address) as client:
        pixels = httpclient.InferInput("data_0", [3, 224, 224], "FP32")
        pixels.set_data_from_numpy(np.zeros((3, 224, 224), dtype=np.float32))
        result = client.infer(MODEL, [pixels], outputs=[httpclient.InferRequestedOutput("fc6_1")])
        assert result.as_numpy("fc6_1").shape == (1000,)
    calls = local_s3.calls(mark)
    judged = allowed_calls(calls, instance_policy_statements(translated))
    (tmp_path / "s3-calls.json").write_text(
        json.dumps([[c.method, c.target, c.status, r.action, d] for c, r, d in judged], indent=1)
    )
    actions = {(call.method, request.action) for call, request, _ in judged}
    # What Triton's S3 client does: HeadBucket, listings under the prefix, object reads.
    assert {("HEAD", "s3:ListBucket"), ("GET", "s3:ListBucket"), ("GET", "s3:GetObject")} <= actions
    denied = sorted(
        {f"{c.method} {c.target} -> {r.action}: {decision}" for c, r, decision in judged if decision != ALLOW}
    )
    assert not denied, "S3 calls the instance role denies:\n" + "\n".join(denied)


def test_the_role_lists_no_other_prefix_and_reads_nothing_outside_the_model_prefix(
    translated: dict[str, Any],
) -> None:
    statements = instance_policy_statements(translated)
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    for refused in (
        Request("s3:ListBucket", bucket_arn, {"s3:prefix": "secrets/"}),
        Request("s3:ListBucket", bucket_arn, {"s3:prefix": "modelsX/"}),
        Request("s3:ListBucket", "arn:aws:s3:::another-bucket"),
        Request("s3:GetObject", f"{bucket_arn}/secrets/key"),
        Request("s3:GetObject", f"arn:aws:s3:::another-bucket/models/{MODEL}/config.pbtxt"),
        Request("s3:PutObject", f"{bucket_arn}/models/{MODEL}/config.pbtxt"),
        Request("s3:DeleteObject", f"{bucket_arn}/models/{MODEL}/config.pbtxt"),
    ):
        assert evaluate(statements, refused) == IMPLICIT_DENY, refused
