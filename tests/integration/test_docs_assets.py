"""/docs and /redoc load every asset from the gateway itself: no other host is named in their pages."""

from __future__ import annotations

import gzip
import re

import httpx
import pytest

PAGES = ("/docs", "/redoc")


def asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", PAGES)
def test_pages_name_no_other_host(client: httpx.Client, page: str):
    response = client.get(page)
    assert response.status_code == 200
    urls = asset_urls(response.text)
    assert urls, response.text
    assert all(url.startswith("/docs/assets/") for url in urls), urls
    assert "://" not in response.text.replace("http://www.w3.org", "")
    # Nor may the page's scripts fetch images from elsewhere (ReDoc's footer logo), and Swagger UI sends
    # the document to no validator.
    assert response.headers["content-security-policy"] == "img-src 'self' data: blob:"
    if page == "/docs":
        assert '"validatorUrl": null' in response.text


def test_assets_are_served_with_their_types_and_cached_for_good(client: httpx.Client):
    urls = {url for page in PAGES for url in asset_urls(client.get(page).text)}
    types = {}
    for url in urls:
        response = client.get(url, headers={"accept-encoding": "identity"})
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "content-encoding" not in response.headers
        types[url.rsplit("/", 1)[1]] = response.headers["content-type"]
    assert types == {
        "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        "swagger-ui.css": "text/css; charset=utf-8",
        "redoc.standalone.js": "text/javascript; charset=utf-8",
        "favicon.png": "image/png",
    }


def test_scripts_are_gzipped_for_browsers_that_take_it(client: httpx.Client):
    [script] = [u for u in asset_urls(client.get("/docs").text) if u.endswith("swagger-ui-bundle.js")]
    plain = client.get(script, headers={"accept-encoding": "identity"}).content
    # httpx would inflate it: read the bytes as they come over the wire.
    with client.stream("GET", script, headers={"accept-encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        wire = b"".join(response.iter_raw())
    assert gzip.decompress(wire) == plain
    assert len(wire) < len(plain) / 2


def test_unknown_assets_and_stale_versions_are_404(client: httpx.Client):
    [script] = [u for u in asset_urls(client.get("/docs").text) if u.endswith("swagger-ui-bundle.js")]
    stale = re.sub(r"/assets/[^/]+/", "/assets/0.0.1/", script)
    for url in (stale, script.replace("swagger-ui-bundle.js", "../../../app.py"), "/docs/assets/x/y.js"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert list(response.json()) == ["error"]
