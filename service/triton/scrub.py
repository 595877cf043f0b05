"""What of Triton's own error text may reach a 4xx answer: its first line, without addresses or paths."""

from __future__ import annotations

import re

# Upstream text a 4xx may carry: its first line, this long at most.
_DETAIL_CHARS = 300
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+-]+){2,}[\\/]?")
# IPv4 with an optional port; IPv6 in brackets (a colon inside, so a shape like [3] is no address).
_ADDRESS = re.compile(
    r"\b(?:ipv4:)?(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"
    r"|(?:ipv6:)?\[[0-9a-fA-F]*:[0-9a-fA-F:.]*\](?::\d+)?"
)


def scrub(text: str, url: str, host: str) -> str:
    """``text`` fit for an answer: its first line, ``url``/``host`` and any address or file path replaced."""
    text = text.strip().splitlines()[0] if text.strip() else "Triton refused the request"
    text = text.replace(url, "triton").replace(host, "triton")
    text = _ADDRESS.sub("triton", _PATH.sub("<path>", text))
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."
