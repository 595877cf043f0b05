"""The tensor types the gateway passes around: a named numpy tensor, an output to ask for, Triton's answer,
and the v2 datatypes as numpy dtypes. Codecs (``codecs``), checks (``checks``) and the answer's encoding
(``results``) build on these."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import BadRequest

# v2 datatype -> numpy dtype, pinned little-endian: the v2 binary and gRPC raw forms are little-endian.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}
_DATATYPES_BY_KIND = {dtype.str: name for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor; BYTES tensors hold an object array of ``bytes``."""

    name: str
    datatype: str
    array: Array

    @property
    def shape(self) -> list[int]:
        """The tensor's dimensions."""
        return list(self.array.shape)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """An output to ask Triton for; ``class_count`` > 0 asks for its top-k classification instead."""

    name: str
    class_count: int = 0


def datatype_of(array: Array) -> str:
    """The v2 datatype of a numpy array (object and string arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    name = _DATATYPES_BY_KIND.get(array.dtype.newbyteorder("<").str)
    if name is None:
        raise BadRequest(f"numpy dtype {array.dtype} has no v2 datatype")
    return name


def element_count(shape: Sequence[int]) -> int:
    """How many elements a tensor of ``shape`` has."""
    return math.prod(shape)


@dataclass(frozen=True, slots=True)
class InferResult:
    """Triton's answer: which model and version ran, and the output tensors."""

    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]
