"""Which model names and version strings can reach Triton at all.

Triton reads a version string by its leading digits (``1abc``, ``01``, ``+1`` and ``1e5`` all meant version
1 to it), and a name is a directory of its model repository. Only canonical forms pass, so each model
version has one spelling (and one metadata cache entry), and a name with a NUL byte or a path separator
never reaches Triton."""

from __future__ import annotations

import re

from service.errors import BadRequest

# Triton's versions are int64 directory names: digits, no leading zero, within 2**63.
_VERSION = re.compile(r"0|[1-9][0-9]{0,17}")
# A directory name on the file systems Triton's repositories live on: 255 bytes at most.
MAX_NAME_BYTES = 255
_NOT_IN_NAMES = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")


def check_model_ref(
    name: str, version: str, name_field: str = "model", version_field: str = "version"
) -> None:
    """400 naming the field for a model name or version string Triton could not serve."""
    if not name:
        raise BadRequest(f"{name_field}: a model name is needed")
    if len(name.encode("utf-8", errors="surrogatepass")) > MAX_NAME_BYTES:
        raise BadRequest(
            f"{name_field}: a model name has at most {MAX_NAME_BYTES} bytes, got {len(name.encode())}"
        )
    if _NOT_IN_NAMES.search(name) or name in (".", ".."):
        raise BadRequest(
            f"{name_field}: {name!r} is not a model name (no control characters, slashes or backslashes)"
        )
    if version and not _VERSION.fullmatch(version):
        shown = version if len(version) <= 40 else version[:40] + "..."
        raise BadRequest(
            f"{version_field}: {shown!r} is not a version number (digits, no leading zero, e.g. 1)"
        )
