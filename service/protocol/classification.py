"""Triton's classification extension and the per-image answer of image requests.

Asked for an output with ``class_count`` k, Triton answers it as BYTES ``"score:index:label"`` strings, best
first, with the label taken from the output's ``label_filename`` (``"score:index"`` when it has none)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.errors import BadRequest, UpstreamError
from service.protocol.metadata import ModelInfo, TensorMetadata
from service.protocol.results import json_output, result_body
from service.protocol.tensors import InferResult, OutputSpec, Tensor, element_count


def classification_output(info: ModelInfo, top_k: int, field: str = "top_k") -> OutputSpec:
    """The output to ask for the ``top_k`` best classes of: the model's only (or only labelled) output."""
    model = info.metadata.name
    outputs = info.metadata.outputs
    candidates = outputs if len(outputs) == 1 else [o for o in outputs if o.name in info.labelled_outputs]
    if len(candidates) != 1:
        names = ", ".join(repr(o.name) for o in outputs)
        raise BadRequest(
            f"{field}: model {model!r} has outputs {names}; top_k needs exactly one with a label file"
        )
    output = candidates[0]
    check_classifiable(output, field)
    if output.name not in info.labelled_outputs:
        raise BadRequest(
            f"{field}: output {output.name!r} of model {model!r} has no labels (no label_filename in its "
            "config); leave out top_k for the raw output"
        )
    dims = output.shape[1:] if info.max_batch_size > 0 else output.shape
    if all(d >= 0 for d in dims):
        classes = element_count(dims)
        if not 1 <= top_k <= classes:
            raise BadRequest(
                f"{field}: must be between 1 and {classes} (the classes of output {output.name!r}), "
                f"got {top_k}"
            )
    return OutputSpec(output.name, class_count=top_k)


def check_classifiable(output: TensorMetadata, field: str) -> None:
    """Refuse to ask for the classes of a BYTES output: Triton 2.51 crashes on it (the whole server, for
    every caller), where it classifies numeric outputs as asked."""
    if output.datatype == "BYTES":
        raise BadRequest(f"{field}: output {output.name!r} is BYTES; only numeric outputs can be classified")


def parse_classes(tensor: Tensor) -> list[list[dict[str, Any]]]:
    """Triton's ``"score:index:label"`` strings as ``{"label", "index", "score"}``, one list per image."""
    array = tensor.array
    rows = array.reshape(-1, array.shape[-1] if array.ndim else 1)
    return [[_parse_class(item, tensor.name) for item in row] for row in rows]


def _parse_class(item: Any, output: str) -> dict[str, Any]:
    text = item.decode(errors="replace") if isinstance(item, bytes) else str(item)
    # The label is last and may itself hold colons.
    parts = text.split(":", 2)
    try:
        score, index = float(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise UpstreamError(
            f"Triton's classification of {output!r} is not 'score:index:label'",
            detail=f"got {text[:200]!r}",
        ) from None
    return {"label": parts[2] if len(parts) == 3 else "", "index": index, "score": score}


def encode_image_results(
    results: Sequence[InferResult], *, batched: bool, classes_of: str | None = None
) -> dict[str, Any]:
    """The image answer: one entry per image, in order, across Triton calls of one image (``batched``
    False) or of a batch of images each (True). ``classes_of`` names the output Triton classified."""
    entries: list[dict[str, Any]] = []
    for result in results:
        if classes_of is not None:
            tensor = next(t for t in result.outputs if t.name == classes_of)
            entries.extend({"top_k": row} for row in parse_classes(tensor))
            continue
        count = result.outputs[0].array.shape[0] if batched and result.outputs else 1
        for i in range(count):
            outputs = [
                json_output(t.name, t.datatype, t.array[i] if batched else t.array) for t in result.outputs
            ]
            entries.append({"outputs": outputs})
    return result_body(results[0], entries, key="results")
