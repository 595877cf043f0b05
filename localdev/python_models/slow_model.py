"""Triton python-backend model that sleeps ``DELAY_MS`` milliseconds, then echoes it: for deadline tests."""

from __future__ import annotations

import time
from typing import Any

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """DELAY_MS [1] INT32 -> ECHO [1] INT32, after sleeping that long."""

    def execute(self, requests: list[Any]) -> list[Any]:
        """Sleep for each request in turn; the config gives two instances so one slow call blocks no other."""
        responses = []
        for request in requests:
            delay = pb_utils.get_input_tensor_by_name(request, "DELAY_MS").as_numpy()
            time.sleep(max(int(delay.reshape(-1)[0]), 0) / 1000.0)
            echo = pb_utils.Tensor("ECHO", delay.copy())
            responses.append(pb_utils.InferenceResponse(output_tensors=[echo]))
        return responses
