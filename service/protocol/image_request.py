"""Image uploads -> :class:`ImageRequest`: a raw ``image/*`` body, or ``multipart/form-data`` file parts, with
the model, version and top_k in the query. (Base64 images in JSON are ``infer_json``'s.) The body is split
only once the data plane has resolved the model, so an unknown model is 404 whatever the body holds."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import BadRequest, describe_validation_errors
from service.protocol.headers import IMAGE_TYPES
from service.protocol.multipart import parse_form
from service.protocol.request import ImageRequest, Images, Limits, ModelRef


class ImageQuery(BaseModel):
    """The query of an image upload (any other query parameter is ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, min_length=1, description="image uploads: the model")
    version: str | None = Field(None, description="image uploads: the model version")
    top_k: int | None = Field(None, ge=1, description="image uploads: answer the k best classes")

    @classmethod
    def of(cls, query: Mapping[str, str]) -> ImageQuery:
        """The query validated; 400 naming the parameter."""
        try:
            return cls.model_validate(query)
        except ValidationError as exc:
            raise BadRequest(describe_validation_errors(exc.errors(include_url=False))) from None

    def given(self) -> bool:
        """Whether any of the parameters was given."""
        return bool(self.model_fields_set)


def decode_image_upload(body: bytes, content_type: str, query: ImageQuery, limits: Limits) -> ImageRequest:
    """The request an image upload makes of the query's model: one raw image, or the form's file parts."""
    media = content_type.split(";", 1)[0].strip().lower()
    model, top_k = ModelRef(query.model, query.version or ""), query.top_k
    if media in IMAGE_TYPES:
        return ImageRequest(model, lambda: Images([("image", body)], top_k), len(body))
    return ImageRequest(model, lambda: Images(_form_images(body, content_type, limits), top_k), len(body))


def _form_images(body: bytes, content_type: str, limits: Limits) -> list[tuple[str, bytes | str]]:
    # One part past the limit is enough to refuse: the rest of a body of 160,000 empty parts is never read.
    parts = parse_form(body, content_type, max_parts=limits.max_images + 1)
    for part in parts:
        if part.filename is None and not part.content_type.startswith("image/"):
            raise BadRequest(
                f"multipart part {part.name!r} is not a file; give model, version and top_k in the query"
            )
    if not parts:
        raise BadRequest("multipart body has no file parts")
    return [(f"images[{i}]", part.data) for i, part in enumerate(parts)]
