"""Which model names and version strings can reach Triton at all.

Triton reads a version string by its leading digits (``1abc``, ``01``, ``+1`` and ``1e5`` all meant version
1 to it), and a name is a directory of its model repository. Only canonical forms pass, so each model
version has one spelling (and one metadata cache entry), and a name with a NUL byte or a path separator
never reaches Triton (it is answered 404, as a model that is not served). A malformed version is 400, but
only of a model that exists: the data plane asks Triton first, so an unknown model is 404 whatever else."""

from __future__ import annotations

import re

from service.errors import BadRequest, ModelNotFound

# Triton's versions are int64 directory names: digits, no leading zero, within 2**63.
_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")
# A directory name on the file systems Triton's repositories live on: 255 bytes at most.
MAX_NAME_BYTES = 255
_NOT_IN_NAMES = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")


def check_model_name(name: str) -> None:
    """404 for a model name Triton could not serve: it is not served here, like an unknown one (the message
    says why)."""
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if not name or size > MAX_NAME_BYTES or _NOT_IN_NAMES.search(name) or name in (".", ".."):
        shown = repr(name) if len(name) <= 60 else repr(name[:60]) + "..."
        raise ModelNotFound(
            f"model {shown} is not served here: a model name has 1 to {MAX_NAME_BYTES} bytes, no control "
            "characters, slashes or backslashes"
        )


def check_version(version: str, *, strict: bool = False, field: str = "version") -> bool:
    """Whether a version string is canonical ("" is: Triton's policy picks); ``strict``: 400 naming the
    field when it is not."""
    if not version or _VERSION.fullmatch(version):
        return True
    if strict:
        shown = version if len(version) <= 40 else version[:40] + "..."
        raise BadRequest(f"{field}: {shown!r} is not a version number (digits, no leading zero, e.g. 1)")
    return False
