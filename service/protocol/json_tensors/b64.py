"""The reader's base64 fast path: a body of base64 tensors read without a JSON parser walking the base64.

A JSON parser reads a string byte by byte to find its end and undo its escapes: ~0.2 ms for densenet's
800 kB of base64 (pydantic's parser, msgspec's and orjson's alike), which has no escapes to undo. When no
byte of the body is a backslash, every quote is a string's boundary, so the strings are found by
``bytes.find`` (memchr); each long string that is the value of a ``"b64"`` key is cut out, the rest of the
body (a few hundred bytes, with a placeholder in each cut string's place) is validated by the request's
own schema, and each cut string is base64-decoded straight from the body.

It only answers a body it reads exactly as the precise path would, and hands anything else back (None): a
backslash, many strings, a placeholder that did not end up as an input's ``b64`` (a ``"b64"`` key inside
``parameters``, a duplicate key), invalid base64. The precise path then reads it and explains what is
wrong, in its own words."""

from __future__ import annotations

import binascii
from typing import TypeVar

import pybase64
from pydantic import ValidationError

from service.protocol.schemas import V2InferRequest

R = TypeVar("R", bound=V2InferRequest)

# Strings shorter than this are left to the parser: cutting them would save nothing.
_LONG_STRING = 4096
# More strings than this and the hop from quote to quote (a Python loop) could cost more than it saves.
_MAX_STRINGS = 256
# What is left once the long strings are cut: at most this is parsed here, so it holds fewer values than the
# outline check (``outline.guard``) allows outside tensor data, and its parse never costs more than ~5 MB.
# A bigger rest goes to the precise path, guard first.
_MAX_REST_BYTES = 65536
# A cut string's stand-in begins with "\u0000", which no string of a body without backslashes or NUL bytes
# holds: a parsed string starting with it is one of ours.
_MARK = "\x00"


def read_b64(body: bytes, schema: type[R]) -> tuple[R, dict[int, bytes]] | None:
    """The body validated as ``schema`` with its long base64 inputs decoded (by input index); None for any
    body this path would not read exactly as the precise path does."""
    cut = _cut_b64_strings(body)
    if cut is None:
        return None
    shadow, texts = cut
    if len(shadow) > _MAX_REST_BYTES:
        return None
    try:
        request = schema.model_validate_json(shadow)
    except ValidationError:
        return None
    decoded: dict[int, bytes] = {}
    used: list[int] = []
    for index, tensor in enumerate(request.inputs):
        if tensor.b64 is None or not tensor.b64.startswith(_MARK):
            continue
        which = int(tensor.b64[1:])
        used.append(which)
        try:
            decoded[index] = pybase64.b64decode(texts[which], validate=True)
        except (binascii.Error, ValueError):
            return None  # the precise path names the field and the fault
    if sorted(used) != list(range(len(texts))):
        return None
    return request, decoded


def _cut_b64_strings(body: bytes) -> tuple[bytes, list[memoryview]] | None:
    """The body with each long ``"b64"`` string value replaced by ``"\\u0000<k>"``, and the k-th string's
    text; None when there is nothing to cut or the quotes cannot be trusted to be the strings' ends."""
    # No backslash: no escaped quote, so every quote ends or starts a string. No NUL byte: no string of
    # the body can look like a placeholder.
    if b"\\" in body or b"\x00" in body:
        return None
    view = memoryview(body)
    parts: list[bytes | memoryview] = []
    texts: list[memoryview] = []
    copied = 0  # the body up to here is in parts
    key_start = key_end = -1  # the previous string's quotes
    at = body.find(b'"')
    for _ in range(_MAX_STRINGS):
        if at == -1:
            break
        end = body.find(b'"', at + 1)
        if end == -1:
            return None  # unterminated: the precise path says so
        if end - at - 1 >= _LONG_STRING and _follows_b64_key(body, key_start, key_end, at):
            parts += (view[copied:at], f'"\\u0000{len(texts)}"'.encode())
            texts.append(view[at + 1 : end])
            copied = end + 1
        key_start, key_end = at, end
        at = body.find(b'"', end + 1)
    if at != -1 or not texts:
        return None  # more strings than are worth hopping over, or nothing to cut
    parts.append(view[copied:])
    return b"".join(parts), texts


def _follows_b64_key(body: bytes, key_start: int, key_end: int, at: int) -> bool:
    # The previous string is "b64" and only a colon (and JSON whitespace) lies between it and this one;
    # lengths first, so a long previous string is never copied to be compared.
    return (
        key_end - key_start == 4
        and body.startswith(b"b64", key_start + 1)
        and at - key_end <= 16
        and body[key_end + 1 : at].strip(b" \t\r\n") == b":"
    )
