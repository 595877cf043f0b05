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
from service.protocol.b64_body import fast_b64_request
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
    OffLoop,
    cpu_offload,
    json_response,
    parse_json,
    raw_json_body,
    read_body,
)
from service.routes.lean import LeanRoute, lean
from service.routes.plane import Inference, InferenceDep, request_inference
from service.settings import Settings
from service.triton import Deadline

router = APIRouter(tags=["inference"], route_class=LeanRoute)

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


_QUERY_PARAMETERS = frozenset({"model", "version", "top_k"})


async def _lean_infer(request: Request) -> Response | None:
    # Without its query parameters infer() has nothing to validate (FastAPI ignores any others): all None.
    if request.scope.get("query_string") and not _QUERY_PARAMETERS.isdisjoint(request.query_params):
        return None
    return await _serve(request, request_inference(request), None, None, None)


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
@lean(_lean_infer)
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
    return await _serve(request, inference, model, version, top_k)


async def _serve(
    request: Request, inference: Inference, model: str | None, version: str | None, top_k: int | None
) -> Response:
    plane, deadline = inference.plane, inference.deadline
    body = await read_body(request, plane.settings)
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    # The Triton calls are awaited; decoding a big body or images runs off the event loop.
    if media in IMAGE_TYPES or media == "multipart/form-data":

        def uploads() -> ImageRequest:
            if media in IMAGE_TYPES:
                return ImageRequest([("image", body)], top_k)
            return ImageRequest(_form_images(body, content_type, plane.settings), top_k)

        outcome = await plane.infer_images(model, version, uploads, deadline, OffLoop(request))
        return _image_answer(outcome)
    if media in _JSON_TYPES or media.endswith("+json"):
        if model is not None or version is not None or top_k is not None:
            raise BadRequest(
                "model, version and top_k go in the query only for image uploads; put them in the JSON"
            )
        return await _infer_json(body, plane, deadline, cpu_offload(request, body), OffLoop(request))
    raise UnsupportedMediaType(
        f"content-type {media!r} is not read here; send application/json, {', '.join(IMAGE_TYPES)} "
        "or multipart/form-data"
    )


async def _infer_json(
    body: bytes, plane: DataPlane, deadline: Deadline, offload: OffLoop | None, images: OffLoop
) -> Response:
    # The fast paths (base64 decoded from the body itself; JSON numbers by SIMD) read a well-formed body
    # once, within the guard's limits. Anything else: size limits first, like MAX_BODY_BYTES (even reading
    # the keys parses the whole body); then the model (an unknown one is 404 whatever else the body holds);
    # then the schema the keys name.
    element_limit = plane.settings.element_limit

    def read() -> Any:
        fast = fast_b64_request(body) or fast_tensor_request(body, element_limit)
        return (fast, None, None) if fast else (None, guard(body, element_limit), read_infer_body_keys(body))

    fast, outline, keys = await offload(read) if offload else read()
    if fast is not None:
        keys, request = fast
        ran = await plane.infer_tensors(keys.model, keys.version, lambda: request, deadline, offload=offload)
        return json_response(encode_result(ran.result, ran.request.b64_outputs))
    if keys.kind == "images":
        outcome = await plane.infer_images(
            keys.model, keys.version, lambda: _json_images(body, plane.settings), deadline, images
        )
        return _image_answer(outcome)

    ran = await plane.infer_tensors(
        keys.model,
        keys.version,
        lambda: tensor_request(body, keys),
        deadline,
        lambda info: check_against_model(outline, info),
        offload,
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
