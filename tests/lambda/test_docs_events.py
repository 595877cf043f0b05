"""/docs through the real Mangum handler under the /api stage: the page names assets under /api/, and the
assets come back as API Gateway needs them (text as text, gzip and PNG base64-encoded)."""

from __future__ import annotations

import gzip
import re
from importlib import resources

from tests.lambda_events import LambdaContext, load_event, raw_body


def asset_event(url: str, accept_encoding: str | None) -> dict:
    # API Gateway's REST event: the resource path without the stage, the caller's path with it.
    event = load_event("docs")
    assert url.startswith("/api/")
    event["path"] = event["pathParameters"]["proxy"] = url.removeprefix("/api")
    event["requestContext"]["path"] = url
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers.pop("Accept-Encoding", None)
    if accept_encoding is not None:
        event["headers"]["Accept-Encoding"] = accept_encoding
        event["multiValueHeaders"]["Accept-Encoding"] = [accept_encoding]
    return event


def page_assets(lambda_handler) -> dict[str, str]:
    response = lambda_handler(load_event("docs"), LambdaContext())
    assert response["statusCode"] == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response["body"])
    return {url.rsplit("/", 1)[1]: url for url in urls}


def packaged(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


def test_the_page_loads_its_assets_under_the_stage(lambda_handler):
    assets = page_assets(lambda_handler)
    assert set(assets) == {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}
    assert all(url.startswith("/api/docs/assets/") for url in assets.values())


def test_scripts_come_back_as_text_or_as_base64_gzip(lambda_handler):
    url = page_assets(lambda_handler)["swagger-ui-bundle.js"]
    plain = lambda_handler(asset_event(url, None), LambdaContext())
    assert plain["statusCode"] == 200
    assert plain["isBase64Encoded"] is False
    assert plain["body"].encode() == packaged("swagger-ui-bundle.js")
    assert plain["headers"]["cache-control"] == "public, max-age=31536000, immutable"

    zipped = lambda_handler(asset_event(url, "gzip, deflate, br"), LambdaContext())
    assert zipped["isBase64Encoded"] is True
    assert zipped["headers"]["content-encoding"] == "gzip"
    assert gzip.decompress(raw_body(zipped)) == packaged("swagger-ui-bundle.js")


def test_the_favicon_is_binary(lambda_handler):
    url = page_assets(lambda_handler)["favicon.png"]
    response = lambda_handler(asset_event(url, "gzip"), LambdaContext())
    assert response["isBase64Encoded"] is True
    assert response["headers"]["content-type"] == "image/png"
    assert raw_body(response) == packaged("favicon.png")
