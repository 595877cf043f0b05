"""``POST /infer``: the caller's tensors, or images preprocessed to fit the model, run on Triton.

The body decides: JSON with ``inputs`` (tensors) or ``image``/``images`` (base64 files); a raw ``image/*``
body, or ``multipart/form-data`` file parts, with the model, version and top_k in the query. The route reads,
decodes, calls the data plane and encodes; what it needs beyond FastAPI it imports on first use, so a cold
start answering ``/health`` never loads the pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import BadRequest, UnsupportedMediaType
from service.protocol.headers import IMAGE_TYPES
from service.routes.common import (
    ERROR_RESPONSES,
    SECURITY,
    RequestRoute,
    error_response,
    json_response,
    read_body,
    schema_ref,
)
from service.routes.plane import inference

if TYPE_CHECKING:
    from service.protocol.request import ImageRequest, InferenceRequest, Limits

router = APIRouter(tags=["inference"], route_class=RequestRoute)

# curl -d sends form encoding and fetch() text/plain unless told otherwise; both carry JSON here.
_JSON_TYPES = frozenset({"", "application/json", "application/x-www-form-urlencoded", "text/plain"})
_QUERY = frozenset({"model", "version", "top_k"})
_BINARY = {"type": "string", "format": "binary"}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


# The route reads its query and body itself (no parameter resolution on the hot path); OpenAPI says what.
_OPENAPI: dict[str, Any] = {
    **SECURITY,
    "parameters": [
        _query("model", "image uploads: the model", {"type": "string", "minLength": 1}),
        _query("version", "image uploads: the model version", {"type": "string"}),
        _query("top_k", "image uploads: answer the k best classes", {"type": "integer", "minimum": 1}),
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": schema_ref("InferRequest")},
            **{media: {"schema": _BINARY} for media in IMAGE_TYPES},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": _BINARY, "description": "image files"}
                    },
                    "required": ["images"],
                }
            },
        },
    },
}


@router.post(
    "/infer",
    summary="Run a model on tensors or images",
    responses={
        200: {
            "description": "Successful Response",
            "content": {
                "application/json": {
                    "schema": {"anyOf": [schema_ref("InferResponse"), schema_ref("ImageInferResponse")]}
                }
            },
        },
        **ERROR_RESPONSES,
        415: error_response("The content type is not JSON, an image or a form"),
    },
    openapi_extra=_OPENAPI,
)
async def infer(request: Request) -> Response:
    """JSON tensors (`inputs`, as `data` or base64 `b64`; omitted `outputs` mean all), JSON images (`image`
    or `images`, base64 JPEG/PNG/WebP), a raw image body (`curl --data-binary @cat.jpg -H 'content-type:
    image/jpeg'`) or multipart files. Images are resized (bilinear) and scaled to the model's image input;
    `top_k` answers each image's k best classes, otherwise its raw outputs."""
    from service.protocol.infer_json import encode_infer_json

    plane, deadline = inference(request)
    body = await read_body(request, plane.settings)
    decoded = await plane.offload(lambda: _decode(request, body, plane.limits), len(body))
    result = await plane.infer(decoded, deadline)
    return json_response(encode_infer_json(result, decoded.answer))


def _decode(request: Request, body: bytes, limits: Limits) -> InferenceRequest | ImageRequest:
    """The decoder the content type names: JSON (tensors or base64 images), an image, or a form."""
    from service.protocol.image_request import ImageQuery, decode_image_upload
    from service.protocol.infer_json import decode_infer_json

    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    # Other query parameters are ignored (API Gateway's test events carry one): validated only when asked.
    asked = request.scope.get("query_string") and not _QUERY.isdisjoint(request.query_params)
    query = ImageQuery.of(request.query_params) if asked else ImageQuery()
    if media in IMAGE_TYPES or media == "multipart/form-data":
        return decode_image_upload(body, content_type, query, limits)
    if media in _JSON_TYPES or media.endswith("+json"):
        if query.given():
            raise BadRequest(
                "model, version and top_k go in the query only for image uploads; put them in the JSON"
            )
        return decode_infer_json(body, limits)
    raise UnsupportedMediaType(
        f"content-type {media!r} is not read here; send application/json, {', '.join(IMAGE_TYPES)} "
        "or multipart/form-data"
    )
