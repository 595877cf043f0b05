"""Triton python-backend model whose cost is time, not CPU: each execution sleeps, then echoes its input.

One instance and ``max_batch_size: 1`` make one Triton serve at most 1000 / ``sleep_ms`` inferences per
second however many cores it has, so the fleet's capacity scales with the number of Tritons even on a
2-core machine, and a burst fills the dynamic batcher's queue as it would on a GPU.
"""

from __future__ import annotations

import json
import time
from typing import Any

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """X [1] INT32 -> Y [1] INT32 (the same values), after sleeping ``sleep_ms`` (a config parameter)."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read ``sleep_ms`` from the model config's parameters."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self._sleep = float(parameters.get("sleep_ms", {}).get("string_value", "20")) / 1000.0

    def execute(self, requests: list[Any]) -> list[Any]:
        """One sleep per execution, whatever the batcher handed over (one request at max_batch_size 1)."""
        time.sleep(self._sleep)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("Y", x.copy())]))
        return responses
