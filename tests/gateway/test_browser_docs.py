"""The API reference page (/docs/) in real Chromium, through the real
gateway and server: Swagger UI lists every operation of the document the
gateway serves, without a console error or a Content-Security-Policy
violation, fetches nothing beyond the gateway, and "Try it out" with the
key calls the API."""

from __future__ import annotations

import json

import pytest

from gateway.browser_support import PageWatch, chromium_context, require_browser
from uba.gateway.config import OPENAPI_JSON

DOCUMENT = json.loads(OPENAPI_JSON.read_text())
OPERATIONS = sum(len(methods) for methods in DOCUMENT["paths"].values())
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    require_browser()
    with chromium_context(tmp_path_factory.mktemp("chromium-docs")) as context:
        yield context


def test_reference_page_lists_every_operation_and_calls_the_api(browser_context, gateway):
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.add_init_script(CSP_WATCH)
    watch = PageWatch().attach(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    origin = f"http://{gateway.address}"
    try:
        response = page.goto(f"{origin}/docs/", wait_until="domcontentloaded")
        assert response is not None and response.status == 200
        operations = page.locator(".opblock")
        expect(operations).to_have_count(OPERATIONS)
        expect(page.locator(".info .title")).to_contain_text("uba REST API")

        # Authorize with the key, then run GetCapabilities from the page.
        page.locator("button.authorize").first.click()
        page.locator(".auth-container input").fill(f"Bearer {gateway.upstream.api_key}")
        page.locator(".auth-btn-wrapper button.authorize").click()
        page.locator(".btn-done").click()
        capabilities = page.locator("#operations-BehaviorAnalyticsService-GetCapabilities")
        capabilities.locator(".opblock-summary").click()
        capabilities.locator("button.try-out__btn").click()
        capabilities.locator("button.execute").click()
        status = capabilities.locator(".live-responses-table tr.response .response-col_status")
        expect(status).to_have_text("200")
        body = capabilities.locator(".live-responses-table tr.response .microlight").first
        expect(body).to_contain_text("analyticsMode")

        watch.assert_clean()
        assert page.evaluate("window.__cspViolations") == []
        outside = [url for url in requested if not url.startswith(f"{origin}/")]
        assert outside == [], outside
        assert f"{origin}/api/behavior-analytics/openapi.json" in requested
        assert f"{origin}/api/behavior-analytics/capabilities" in requested
    finally:
        watch.stop()
        page.close()
