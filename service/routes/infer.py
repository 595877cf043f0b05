"""``POST /infer``: the caller's tensors, or images preprocessed to fit the model, run on Triton.

The body decides: JSON with ``inputs`` (tensors) or ``image``/``images`` (base64 files); a raw ``image/*``
body, or ``multipart/form-data`` file parts, with the model, version and top_k in the query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.errors import BadRequest, UnsupportedMediaType, describe_validation_errors
from service.images import call_inputs, check_image_count, decode_base64, image_input, load_image
from service.protocol.classification import classification_output, encode_image_results
from service.protocol.multipart import parse_form
from service.protocol.schemas import (
    ErrorBody,
    ImageInferRequest,
    ImageInferResponse,
    InferRequest,
    InferResponse,
    TensorInferRequest,
)
from service.protocol.tensors import OutputSpec, check_inputs, check_outputs, decode_input, encode_result
from service.routes.common import (
    ERROR_RESPONSES,
    ApiKey,
    DeadlineDep,
    SettingsDep,
    TritonDep,
    json_response,
    lookup_model,
    parse_json,
    raw_json_body,
    read_body,
)
from service.settings import Settings
from service.triton import Deadline, TritonClient

router = APIRouter(tags=["inference"])

# curl -d sends form encoding and fetch() text/plain unless told otherwise; both carry JSON here.
_JSON_TYPES = frozenset({"", "application/json", "application/x-www-form-urlencoded", "text/plain"})
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
_IMAGE_KEYS = frozenset({"image", "images"})


def _openapi_body() -> dict[str, Any]:
    extra = raw_json_body(InferRequest)
    binary = {"type": "string", "format": "binary"}
    content = extra["requestBody"]["content"]
    content.update({media: {"schema": binary} for media in IMAGE_TYPES})
    content["multipart/form-data"] = {
        "schema": {
            "type": "object",
            "properties": {"images": {"type": "array", "items": binary, "description": "image files"}},
            "required": ["images"],
        }
    }
    return extra


@router.post(
    "/infer",
    summary="Run a model on tensors or images",
    response_model=InferResponse | ImageInferResponse,
    responses={
        **ERROR_RESPONSES,
        415: {"model": ErrorBody, "description": "The content type is not JSON, an image or a form"},
    },
    openapi_extra=_openapi_body(),
)
async def infer(
    request: Request,
    settings: SettingsDep,
    triton: TritonDep,
    deadline: DeadlineDep,
    _key: ApiKey,
    model: Annotated[str | None, Query(min_length=1, description="image uploads: the model")] = None,
    version: Annotated[str | None, Query(description="image uploads: the model version")] = None,
    top_k: Annotated[int | None, Query(ge=1, description="image uploads: answer the k best classes")] = None,
) -> Response:
    """JSON tensors (`inputs`, as `data` or base64 `b64`; omitted `outputs` mean all), JSON images (`image`
    or `images`, base64 JPEG/PNG/WebP), a raw image body (`curl --data-binary @cat.jpg -H 'content-type:
    image/jpeg'`) or multipart files. Images are resized (bilinear) and scaled to the model's image input;
    `top_k` answers each image's k best classes, otherwise its raw outputs."""
    body = await read_body(request, settings)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    # Decoding and the gRPC calls block: keep them off the event loop.
    if media in IMAGE_TYPES:
        uploads = [("image", body)]
        return await run_in_threadpool(
            _infer_images, uploads, model, version, top_k, "", settings, triton, deadline
        )
    if media == "multipart/form-data":
        return await run_in_threadpool(
            _infer_form,
            body,
            request.headers["content-type"],
            model,
            version,
            top_k,
            settings,
            triton,
            deadline,
        )
    if media in _JSON_TYPES or media.endswith("+json"):
        if model is not None or version is not None or top_k is not None:
            raise BadRequest(
                "model, version and top_k go in the query only for image uploads; put them in the JSON"
            )
        return await run_in_threadpool(_infer_json, body, settings, triton, deadline)
    raise UnsupportedMediaType(
        f"content-type {media!r} is not read here; send application/json, {', '.join(IMAGE_TYPES)} "
        "or multipart/form-data"
    )


def _infer_json(body: bytes, settings: Settings, triton: TritonClient, deadline: Deadline) -> Response:
    request = _parse_json_body(body)
    if isinstance(request, TensorInferRequest):
        return _infer_tensors(request, settings, triton, deadline)
    images = request.encoded_images()
    check_image_count(len(images), settings.max_images)
    uploads = [(field, decode_base64(text, field)) for field, text in images]
    return _infer_images(
        uploads, request.model, request.version, request.top_k, request.id or "", settings, triton, deadline
    )


def _parse_json_body(body: bytes) -> TensorInferRequest | ImageInferRequest:
    # Tensor bodies are the large ones: parse them once, straight into their model; an image body costs a
    # second parse, of a few strings.
    try:
        return TensorInferRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    top_level = {(e["type"], e["loc"][0]) for e in errors if len(e["loc"]) == 1}
    if not any(("extra_forbidden", key) in top_level for key in _IMAGE_KEYS):
        if [(e["type"], e["loc"]) for e in errors] == [("missing", ("inputs",))]:
            raise BadRequest("the body needs 'inputs' (tensors) or 'image'/'images' (base64 images)")
        raise BadRequest(describe_validation_errors(errors))
    if ("missing", "inputs") not in top_level:
        raise BadRequest("the body mixes 'inputs' (tensors) with 'image'/'images'; give one or the other")
    return parse_json(ImageInferRequest, body)


def _infer_tensors(
    request: TensorInferRequest, settings: Settings, triton: TritonClient, deadline: Deadline
) -> Response:
    model = request.model or settings.default_model
    version = request.version or ""
    info = lookup_model(triton, settings, model, version, deadline)
    # Names, datatypes and shapes first: a mismatch is the clearer message than the byte count it causes.
    check_inputs(request.inputs, info)
    tensors = [decode_input(tensor, f"inputs[{i}]") for i, tensor in enumerate(request.inputs)]
    if request.outputs:
        names = [output.name for output in request.outputs]
        check_outputs(names, info)
    else:
        names = [output.name for output in info.metadata.outputs]
    result = triton.infer(
        model, version, tensors, [OutputSpec(name) for name in names], deadline, request.id or ""
    )
    b64 = frozenset(output.name for output in request.outputs or () if output.b64)
    return json_response(encode_result(result, b64))


def _infer_form(
    body: bytes,
    content_type: str,
    model: str | None,
    version: str | None,
    top_k: int | None,
    settings: Settings,
    triton: TritonClient,
    deadline: Deadline,
) -> Response:
    uploads = _form_images(body, content_type, settings)
    return _infer_images(uploads, model, version, top_k, "", settings, triton, deadline)


def _form_images(body: bytes, content_type: str, settings: Settings) -> list[tuple[str, bytes]]:
    # One part past the limit is enough to refuse: the rest of a body of 160,000 empty parts is never read.
    parts = parse_form(body, content_type, max_parts=settings.max_images + 1)
    for part in parts:
        if part.filename is None and not part.content_type.startswith("image/"):
            raise BadRequest(
                f"multipart part {part.name!r} is not a file; give model, version and top_k in the query"
            )
    if not parts:
        raise BadRequest("multipart body has no file parts")
    check_image_count(len(parts), settings.max_images)
    return [(f"images[{i}]", part.data) for i, part in enumerate(parts)]


def _infer_images(
    uploads: Sequence[tuple[str, bytes]],
    model: str | None,
    version: str | None,
    top_k: int | None,
    request_id: str,
    settings: Settings,
    triton: TritonClient,
    deadline: Deadline,
) -> Response:
    name, version = model or settings.default_model, version or ""
    info = lookup_model(triton, settings, name, version, deadline)
    target = image_input(info, settings.image_scaling)
    if top_k is not None:
        outputs = [classification_output(info, top_k)]
    else:
        outputs = [OutputSpec(output.name) for output in info.metadata.outputs]
    arrays = [load_image(data, target, field, settings.max_image_pixels) for field, data in uploads]
    results = triton.infer_many(name, version, call_inputs(arrays, target), outputs, deadline, request_id)
    classes_of = outputs[0].name if top_k is not None else None
    return json_response(
        encode_image_results(results, batched=target.max_batch_size > 0, classes_of=classes_of)
    )
