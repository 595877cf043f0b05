"""Triton python-backend model for BYTES tensors: uppercases each string and reports its byte length."""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _upper(value: bytes) -> bytes:
    # Uppercase as text when the bytes are UTF-8 so clients see "é" -> "É"; raw bytes only get ASCII.
    try:
        return value.decode("utf-8").upper().encode("utf-8")
    except UnicodeDecodeError:
        return value.upper()


class TritonPythonModel:
    """TEXT [-1] BYTES -> UPPER [-1] BYTES, LENGTHS [-1] INT32 (byte length of each input element)."""

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer each request independently."""
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            items = [bytes(item) for item in text.reshape(-1)]
            upper = np.array([_upper(item) for item in items], dtype=np.object_).reshape(text.shape)
            lengths = np.array([len(item) for item in items], dtype=np.int32).reshape(text.shape)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("UPPER", upper), pb_utils.Tensor("LENGTHS", lengths)]
                )
            )
        return responses
