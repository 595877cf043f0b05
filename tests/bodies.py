"""Request bodies several test modules send: densenet on zeros (base64), and the slow model's delay."""

from __future__ import annotations

import base64

import numpy as np

PIXELS = base64.b64encode(np.zeros((3, 224, 224), np.float32).tobytes()).decode()
DENSENET = {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": [3, 224, 224], "b64": PIXELS}]}


def slow(ms: int) -> dict[str, object]:
    """An /infer body that keeps slow_model busy for ``ms`` milliseconds."""
    return {
        "model": "slow_model",
        "inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1], "data": [ms]}],
    }
