"""Requests checked against a model's metadata: input names, datatypes and shapes, and output names. The
one place where "does this request fit the model" is decided, before any tensor is decoded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from service.errors import BadRequest
from service.protocol.metadata import ModelInfo


class TensorSpec(Protocol):
    """Anything with a tensor's name, datatype and shape: a decoded tensor or a request's description."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> list[int]: ...


def check_inputs(tensors: Sequence[TensorSpec], info: ModelInfo, field: str = "inputs") -> None:
    """Refuse inputs the model does not take, missing inputs, and wrong datatypes or shapes."""
    seen: set[str] = set()
    for index, tensor in enumerate(tensors):
        where = f"{field}[{index}]"
        spec = info.input(tensor.name)
        if spec is None:
            names = ", ".join(repr(t.name) for t in info.metadata.inputs)
            raise BadRequest(
                f"{where}.name: model {info.metadata.name!r} has no input {tensor.name!r}; it takes {names}"
            )
        if tensor.name in seen:
            raise BadRequest(f"{where}.name: input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        if tensor.datatype != spec.datatype:
            raise BadRequest(
                f"{where}.datatype: input {spec.name!r} is {spec.datatype}, got {tensor.datatype}"
            )
        if not shape_fits(tensor.shape, spec.shape):
            raise BadRequest(
                f"{where}.shape: input {spec.name!r} takes {spec.shape} (-1 is free), got {tensor.shape}"
            )
    missing = [
        t.name for t in info.metadata.inputs if t.name not in seen and t.name not in info.optional_inputs
    ]
    if missing:
        wanted = "; ".join(
            f"{t.name!r} ({t.datatype} {t.shape})" for t in info.metadata.inputs if t.name in missing
        )
        raise BadRequest(f"{field}: missing input {wanted}")


def check_outputs(names: Sequence[str], info: ModelInfo, field: str = "outputs") -> None:
    """Refuse outputs the model does not produce."""
    for index, name in enumerate(names):
        if info.output(name) is None:
            known = ", ".join(repr(t.name) for t in info.metadata.outputs)
            raise BadRequest(
                f"{field}[{index}].name: model {info.metadata.name!r} has no output {name!r}; it has {known}"
            )


def shape_fits(shape: Sequence[int], spec: Sequence[int]) -> bool:
    """True when ``shape`` has the rank of ``spec`` and equals it wherever ``spec`` is not -1."""
    return len(shape) == len(spec) and all(
        want < 0 or want == got for got, want in zip(shape, spec, strict=True)
    )
