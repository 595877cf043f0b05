"""/docs in a real headless Chromium with every non-local request blocked: the page renders from the
gateway's own assets, Authorize offers x-api-key, and "Try it out -> Execute" on POST /infer with the
default example answers 200 with labels. Once under uvicorn, once through the Lambda handler under /api."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from service.app import create_app
from service.settings import Settings

KEY = "browser-test-key"
OPERATIONS = sum(len(ops) for ops in create_app(Settings()).openapi()["paths"].values())
# Swagger UI renders on a 2-core machine shared with other work: generous, bounded waits.
TIMEOUT_MS = 60_000


class Offline:
    """A page whose requests may only go to 127.0.0.1; every other one is aborted and remembered."""

    def __init__(self, browser: Browser, screenshot: Path) -> None:
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.blocked: list[str] = []
        self.sent: list[Request] = []
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("request", self._sent)
        self.screenshot = screenshot

    def _sent(self, request: Request) -> None:
        self.sent.append(request)

    def _route(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


@pytest.fixture
def offline(browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Offline]:
    """An offline page; a screenshot of it is saved under the test's tmp dir, passing or failing."""
    page = Offline(browser, tmp_path / "docs.png")
    yield page
    page.page.screenshot(path=str(page.screenshot), full_page=True)
    print(f"screenshot: {page.screenshot}")
    page.context.close()


def try_the_default_infer_example(offline: Offline, docs_url: str, infer_path: str) -> None:
    page = offline.page
    page.goto(docs_url)

    # The page rendered from local assets: every operation listed.
    expect(page.locator(".opblock")).to_have_count(OPERATIONS)

    # Authorize offers the API Gateway key header.
    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".modal-ux")
    expect(dialog).to_contain_text("x-api-key")
    dialog.locator("input").fill(KEY)
    dialog.locator("button.modal-btn.authorize").click()
    expect(dialog).to_contain_text("Authorized")
    dialog.locator("button.btn-done").click()

    # Try it out -> Execute on POST /infer, with the default example as the page fills it in.
    operation = page.locator("#operations-inference-infer_infer_post")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    with page.expect_response(lambda r: urlsplit(r.url).path == infer_path) as answer:
        operation.locator("button.execute").click()
    assert answer.value.status == 200

    # The answer as the page shows it: 200 and the labels of the model's top classes.
    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("200")
    shown = json.loads(live.locator(".response-col_description .microlight").first.inner_text())
    assert [c["label"] for c in shown["results"][0]["top_k"]], shown
    assert re.fullmatch(r"[A-Z][A-Z ,'-]+", shown["results"][0]["top_k"][0]["label"])

    [sent] = [r for r in offline.sent if urlsplit(r.url).path == infer_path]
    assert sent.headers.get("x-api-key") == KEY
    assert offline.blocked == []


def test_docs_offline_under_uvicorn(offline: Offline, gateway_url: str):
    try_the_default_infer_example(offline, f"{gateway_url}/docs", "/infer")


def test_docs_offline_through_the_lambda_handler_under_the_stage(offline: Offline, api_gateway_url: str):
    try_the_default_infer_example(offline, f"{api_gateway_url}/docs", "/api/infer")
    assets = [urlsplit(r.url).path for r in offline.sent if "/docs/assets/" in r.url]
    assert assets and all(path.startswith("/api/docs/assets/") for path in assets), assets


def test_redoc_offline_under_uvicorn(offline: Offline, gateway_url: str):
    offline.page.goto(f"{gateway_url}/redoc")
    page = offline.page
    expect(page.locator("h1").first).to_contain_text("Triton Lambda Gateway")
    expect(page.locator("h2", has_text="Run a model on tensors or images")).to_be_visible()
    expect(page.locator("h2", has_text="Run the model (v2 JSON or binary tensors)").first).to_be_visible()
    assert offline.blocked == []
