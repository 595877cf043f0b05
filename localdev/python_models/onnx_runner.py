"""Triton python-backend model that runs the ``model.onnx`` next to it with onnxruntime.

Stands in for Triton's onnxruntime backend, which the pip-installed tritonserver does not ship. Input and
output names come from the model's ``config.pbtxt`` and must equal the ONNX graph's; any ``reshape`` in the
config is applied by Triton before and after this code, exactly as for the onnxruntime backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One onnxruntime session per model instance; every request of a batch is run on it."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load ``<repository>/<version>/model.onnx`` and remember the tensor names from the config."""
        config = json.loads(args["model_config"])
        self.input_names: list[str] = [tensor["name"] for tensor in config["input"]]
        self.output_names: list[str] = [tensor["name"] for tensor in config["output"]]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = onnxruntime.SessionOptions()
        # Several instances and models share a laptop's cores; one thread each keeps them from fighting.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run each request on its own; with dynamic batching a request's tensors carry its batch dim."""
        return [self._run_one(request) for request in requests]

    def _run_one(self, request: Any) -> Any:
        try:
            feed = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names
            }
            results = self.session.run(self.output_names, feed)
        except Exception as exc:
            # Any failure becomes this request's error response; the other requests of the batch still run.
            return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(value))
            for name, value in zip(self.output_names, results, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)
