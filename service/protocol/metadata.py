"""What models and the server look like: v2 metadata, and what the gateway keeps of a model's config."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class TensorMetadata(BaseModel):
    """Name, datatype and shape of a model input or output; ``-1`` marks a free dimension."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """KServe v2 model metadata."""

    name: str
    versions: list[str] = []
    platform: str = ""
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelInfo(BaseModel):
    """What the gateway knows of a model: its v2 metadata and the parts of its config that shape requests."""

    model_config = ConfigDict(frozen=True)

    metadata: ModelMetadata
    max_batch_size: int = 0
    optional_inputs: frozenset[str] = frozenset()
    input_formats: dict[str, str] = {}
    parameters: dict[str, str] = {}
    labelled_outputs: frozenset[str] = frozenset()
    config: dict[str, Any] = {}

    def input(self, name: str) -> TensorMetadata | None:
        """The input called ``name``, if the model has one."""
        return next((t for t in self.metadata.inputs if t.name == name), None)

    def output(self, name: str) -> TensorMetadata | None:
        """The output called ``name``, if the model has one."""
        return next((t for t in self.metadata.outputs if t.name == name), None)


class ServerMetadata(BaseModel):
    """KServe v2 server metadata (``GET /v2``): the extensions listed are those the gateway serves."""

    name: str
    version: str
    extensions: list[str]
