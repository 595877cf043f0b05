"""``multipart/form-data`` bodies (RFC 7578) split into their parts, with the standard library only.

The body is already in memory (at most ``MAX_BODY_BYTES``), so finding the boundaries is a few ``bytes.find``
calls; each part's few header lines go to :mod:`email`'s header parser for the quoting rules."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import collapse_rfc2231_value

from service.errors import BadRequest

_HEADERS = BytesHeaderParser()


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a form: its field name, file name (for file parts), content type and bytes."""

    name: str
    filename: str | None
    content_type: str
    data: bytes


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise BadRequest("multipart/form-data needs a boundary parameter in its content-type")
    return boundary


def parse_form(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """Every part of a ``multipart/form-data`` body, in order; 400 when the framing is broken, or as soon
    as a part past ``max_parts`` appears (its headers unread: a body of many tiny parts costs nothing)."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise BadRequest("multipart body: the boundary of its content-type never appears")
    parts: list[Part] = []
    position = start + len(delimiter)
    while not body.startswith(b"--", position):
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            raise BadRequest("multipart body: truncated after a boundary")
        if len(parts) == max_parts:
            raise BadRequest(f"multipart body: more than {max_parts} parts; the rest is not read")
        end = body.find(b"\r\n" + delimiter, line_end)
        if end < 0:
            raise BadRequest("multipart body: truncated, the closing boundary is missing")
        parts.append(_part(body[line_end + 2 : end], len(parts)))
        position = end + 2 + len(delimiter)
    return parts


def _part(raw: bytes, index: int) -> Part:
    if raw.startswith(b"\r\n"):
        head, data = b"", raw[2:]
    else:
        head, separator, data = raw.partition(b"\r\n\r\n")
        if not separator:
            raise BadRequest(f"multipart part {index}: its headers never end")
    headers = _HEADERS.parsebytes(head)
    name = headers.get_param("name", header="content-disposition")
    if name is None:
        raise BadRequest(f"multipart part {index}: no name in its content-disposition")
    return Part(
        name=collapse_rfc2231_value(name),
        filename=headers.get_filename(),
        content_type=headers.get_content_type() if "content-type" in headers else "",
        data=data,
    )
