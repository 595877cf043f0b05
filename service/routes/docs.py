"""``/docs`` (Swagger UI) and ``/redoc``, served with their assets from the app itself: they work with no
internet, behind a private API Gateway endpoint, and under the stage prefix.

The JS/CSS come from the ``fastapi-offline`` wheel (Swagger UI 5 and ReDoc 2, copied from their npm
releases), a runtime dependency, so the Lambda image carries them. ``swagger-ui-bundle`` is not used: its
last release ships Swagger UI 4, which cannot read the OpenAPI 3.1 document FastAPI writes."""

from __future__ import annotations

import gzip
from functools import cache
from importlib import metadata, resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

router = APIRouter(include_in_schema=False)

# Served file -> media type. Text types go through Mangum as text, the PNG base64-encoded.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_CACHE_FOREVER = "public, max-age=31536000, immutable"
# ReDoc's footer shows Redocly's logo from their CDN: the browser is told not to fetch images from elsewhere,
# so the page asks no other host for anything (blob: is Swagger UI's way to show an image answer).
_NO_FOREIGN_IMAGES = {"Content-Security-Policy": "img-src 'self' data: blob:"}
# Swagger UI would send a public document's URL to validator.swagger.io for a badge.
_SWAGGER_UI = {"validatorUrl": None}


@cache
def _assets_version() -> str:
    # The URL carries the package's version, so a browser may keep an asset for good: a new release is a new
    # URL. Looked up on first use: reading the installed distributions costs a cold start milliseconds.
    return metadata.version("fastapi-offline")


def _asset_url(request: Request, name: str) -> str:
    # root_path is the API Gateway stage (or the custom domain's base path), set by RootPathMiddleware.
    return f"{request.scope.get('root_path', '').rstrip('/')}/docs/assets/{_assets_version()}/{name}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '').rstrip('/')}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the app's OpenAPI document, every asset from this app."""
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"),
        swagger_ui_parameters={**(request.app.swagger_ui_parameters or {}), **_SWAGGER_UI},
    )
    page.headers.update(_NO_FOREIGN_IMAGES)
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the app's OpenAPI document, without Google Fonts."""
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset_url(request, "favicon.png"),
        with_google_fonts=False,
    )
    page.headers.update(_NO_FOREIGN_IMAGES)
    return page


@router.get("/docs/assets/{version}/{name}")
async def asset(request: Request) -> Response:
    """One Swagger UI/ReDoc file, gzip-compressed when the caller takes it, cached by the browser."""
    # The path read here, not as typed parameters: those make FastAPI build fields at a cold start's import.
    version, name = request.path_params["version"], request.path_params["name"]
    media_type = _ASSETS.get(name)
    if media_type is None or version != _assets_version():
        raise HTTPException(404, f"no docs asset {version}/{name}")
    headers = {"Cache-Control": _CACHE_FOREVER, "Vary": "Accept-Encoding"}
    accepted = request.headers.get("accept-encoding", "").lower()
    if "gzip" in accepted and not name.endswith(".png"):
        # 1.5 MB of JS is ~0.45 MB gzipped: through Lambda (base64, as the bytes are binary) and on the wire.
        headers["Content-Encoding"] = "gzip"
        return Response(_gzipped(name), media_type=media_type, headers=headers)
    return Response(_read(name), media_type=media_type, headers=headers)


@cache
def _read(name: str) -> bytes:
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


@cache
def _gzipped(name: str) -> bytes:
    # mtime=0: the same bytes every time, in every process.
    return gzip.compress(_read(name), compresslevel=6, mtime=0)
