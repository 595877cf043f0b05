"""``POST /infer``: the caller's tensors, or images preprocessed to fit the model, run on Triton.

The body decides: JSON with ``inputs`` (tensors) or ``image``/``images`` (base64 files); a raw ``image/*``
body, or ``multipart/form-data`` file parts, with the model, version and top_k in the query. This module
only parses and answers; :mod:`service.dataplane` resolves the model first, then runs the request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.dataplane import DataPlane, ImageOutcome, ImageRequest
from service.errors import BadRequest, UnsupportedMediaType
from service.images import check_image_count, decode_base64
from service.protocol.classification import encode_image_results
from service.protocol.infer_body import fast_tensor_request, read_infer_body_keys, tensor_request
from service.protocol.multipart import parse_form
from service.protocol.prescan import check_against_model, guard
from service.protocol.results import encode_result
from service.protocol.schemas import (
    ErrorBody,
    ImageInferRequest,
    ImageInferResponse,
    InferRequest,
    InferResponse,
)
from service.routes.common import (
    ERROR_RESPONSES,
    ApiKey,
    json_response,
    off_loop,
    parse_json,
    raw_json_body,
    read_body,
)
from service.routes.plane import InferenceDep
from service.settings import Settings
from service.triton import Deadline

router = APIRouter(tags=["inference"])

# curl -d sends form encoding and fetch() text/plain unless told otherwise; both carry JSON here.
_JSON_TYPES = frozenset({"", "application/json", "application/x-www-form-urlencoded", "text/plain"})
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")


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
    inference: InferenceDep,
    _key: ApiKey,
    model: Annotated[str | None, Query(min_length=1, description="image uploads: the model")] = None,
    version: Annotated[str | None, Query(description="image uploads: the model version")] = None,
    top_k: Annotated[int | None, Query(ge=1, description="image uploads: answer the k best classes")] = None,
) -> Response:
    """JSON tensors (`inputs`, as `data` or base64 `b64`; omitted `outputs` mean all), JSON images (`image`
    or `images`, base64 JPEG/PNG/WebP), a raw image body (`curl --data-binary @cat.jpg -H 'content-type:
    image/jpeg'`) or multipart files. Images are resized (bilinear) and scaled to the model's image input;
    `top_k` answers each image's k best classes, otherwise its raw outputs."""
    plane, deadline = inference.plane, inference.deadline
    body = await read_body(request, plane.settings)
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    # Decoding and the gRPC calls block: keep them off the event loop.
    if media in IMAGE_TYPES or media == "multipart/form-data":

        def uploads() -> ImageRequest:
            if media in IMAGE_TYPES:
                return ImageRequest([("image", body)], top_k)
            return ImageRequest(_form_images(body, content_type, plane.settings), top_k)

        outcome = await off_loop(request, plane.infer_images, model, version, uploads, deadline)
        return _image_answer(outcome)
    if media in _JSON_TYPES or media.endswith("+json"):
        if model is not None or version is not None or top_k is not None:
            raise BadRequest(
                "model, version and top_k go in the query only for image uploads; put them in the JSON"
            )
        return await off_loop(request, _infer_json, body, plane, deadline)
    raise UnsupportedMediaType(
        f"content-type {media!r} is not read here; send application/json, {', '.join(IMAGE_TYPES)} "
        "or multipart/form-data"
    )


def _infer_json(body: bytes, plane: DataPlane, deadline: Deadline) -> Response:
    # The SIMD fast path reads a well-formed body once, within the guard's limits. Anything else: size
    # limits first, like MAX_BODY_BYTES (even reading the keys parses the whole body); then the model (an
    # unknown one is 404 whatever else the body holds); then the schema the keys name.
    element_limit = plane.settings.element_limit
    fast = fast_tensor_request(body, element_limit)
    if fast is not None:
        keys, request = fast
        ran = plane.infer_tensors(keys.model, keys.version, lambda: request, deadline)
        return json_response(encode_result(ran.result, ran.request.b64_outputs))
    outline = guard(body, element_limit)
    keys = read_infer_body_keys(body)
    if keys.kind == "images":
        outcome = plane.infer_images(
            keys.model, keys.version, lambda: _json_images(body, plane.settings), deadline
        )
        return _image_answer(outcome)

    ran = plane.infer_tensors(
        keys.model,
        keys.version,
        lambda: tensor_request(body, keys),
        deadline,
        lambda info: check_against_model(outline, info),
    )
    return json_response(encode_result(ran.result, ran.request.b64_outputs))


def _json_images(body: bytes, settings: Settings) -> ImageRequest:
    request = parse_json(ImageInferRequest, body)
    images = request.encoded_images()
    check_image_count(len(images), settings.max_images)
    uploads = [(field, decode_base64(text, field)) for field, text in images]
    return ImageRequest(uploads, request.top_k, request.id or "")


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


def _image_answer(outcome: ImageOutcome) -> Response:
    return json_response(
        encode_image_results(outcome.results, batched=outcome.batched, classes_of=outcome.classified)
    )
