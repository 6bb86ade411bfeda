"""The dashboard's defences in a real browser (headless Chromium via
Playwright, the real Envoy in front of the real server on SQLite):

* its Content-Security-Policy allows no inline script, and the page works
  under it without a single violation;
* its key cookie is a credential only for requests from the dashboard's own
  origin: a page served from another local port (same site, so
  SameSite=Strict lets the cookie travel) that points the browser at the
  log download gets 401, while the dashboard's own download still works;
* over HTTPS the cookie is __Host-uba_key (Secure, Path=/).

Chromium comes from Debian, Playwright from the dev extra (see
browser_support.py); where CI=true a missing browser fails the run.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.server import ServerProcess

from gateway.browser_support import PageWatch, chromium_context, require_browser
from gateway.gateway_support import API, start_gateway

pytestmark = pytest.mark.timeout(240)

# Collects what the browser reports as Content-Security-Policy violations.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    require_browser()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """(server, gateway address) of a real server behind a real Envoy."""
    server = ServerProcess(tmp_path_factory.mktemp("uba-browser-security")).start()
    process = start_gateway(server.address, tmp_path_factory.mktemp("gateway"))
    try:
        yield server, process.listen_address
    finally:
        process.stop()
        server.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    # The HTTPS test's CA is not in the browser's store: certificate errors
    # are ignored (the other tests speak plain HTTP).
    with chromium_context(
        tmp_path_factory.mktemp("chromium-profile"), ignore_https_errors=True
    ) as context:
        yield context


def open_dashboard(browser_context, server, address):
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.add_init_script(CSP_WATCH)
    page.add_init_script(f"sessionStorage.setItem('uba.apiKey', {json.dumps(server.api_key)})")
    watch = PageWatch().attach(page)
    response = page.goto(f"http://{address}/", wait_until="domcontentloaded")
    assert response is not None and response.status == 200
    expect(page.locator("#app-status")).to_have_attribute("data-state", "online")
    expect(page.locator("#total-events")).not_to_have_text("–")
    # The live feed authenticates with the cookie: it is up.
    expect(page.locator("#stream-status")).to_have_attribute("data-state", "live")
    return page, watch, response


def test_csp_allows_no_inline_script_and_the_page_runs_without_violations(browser_context, gateway):
    server, address = gateway
    page, watch, response = open_dashboard(browser_context, server, address)
    try:
        csp = {
            d.split()[0]: d.split()[1:]
            for d in response.headers["content-security-policy"].split(";")
            if d.strip()
        }
        assert "'unsafe-inline'" not in csp["script-src"] and csp["script-src"] == ["'self'"]
        assert "'unsafe-eval'" not in csp["script-src"]
        # Work the page a little: filter the log, open the export links' targets.
        page.locator("#refresh-button").click()
        page.locator("#logs-apply").click()
        page.wait_for_timeout(500)
        assert page.evaluate("window.__cspViolations") == []
        # ... and the policy holds: inline script added now does not run.
        ran = page.evaluate("""() => {
            window.__inlineRan = false;
            const s = document.createElement("script");
            s.textContent = "window.__inlineRan = true";
            document.body.append(s);
            return window.__inlineRan;
        }""")
        assert ran is False
        watch.problems = [
            p for p in watch.problems if "Content Security Policy" not in p
        ]  # the probe above
        watch.assert_clean()
    finally:
        watch.stop()
        page.close()


class _OtherOrigin(BaseHTTPRequestHandler):
    """A page on another port of the same host: it points the browser at the
    gateway's log download in two ways, with credentials."""

    target = ""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = f"""<!doctype html><title>elsewhere</title>
<iframe src="{self.target}&user_id=via-iframe"></iframe>
<script>
fetch("{self.target}&user_id=via-fetch", {{mode: "no-cors", credentials: "include"}});
</script>""".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_key_cookie_works_for_the_dashboard_only_not_for_another_local_origin(
    browser_context, gateway
):
    server, address = gateway
    page, watch, _ = open_dashboard(browser_context, server, address)
    download = f"http://{address}{API}/logs/download/?format=csv"
    try:
        # The dashboard's own download (a same-origin request carrying the cookie) works.
        own = page.evaluate(
            "async (href) => (await fetch(href)).status", f"{API}/logs/download/?format=csv"
        )
        assert own == 200
        with page.expect_download() as info:
            page.locator("#export-csv").click()
        assert info.value.failure() is None
        cookies = {c["name"]: c for c in browser_context.cookies(f"http://{address}{API}/")}
        assert "uba_key" in cookies and cookies["uba_key"]["sameSite"] == "Strict"
    finally:
        watch.stop()
        page.close()

    _OtherOrigin.target = download
    other = ThreadingHTTPServer(("127.0.0.1", 0), _OtherOrigin)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    attacker = browser_context.new_page()
    statuses: dict[str, int] = {}
    attacker.on(
        "response",
        lambda r: (
            statuses.__setitem__(r.url.rsplit("via-", 1)[1], r.status)
            if "/logs/download/" in r.url and "via-" in r.url
            else None
        ),
    )
    try:
        attacker.goto(f"http://127.0.0.1:{other.server_address[1]}/", wait_until="load")
        deadline = 100
        while len(statuses) < 2 and deadline:
            attacker.wait_for_timeout(100)
            deadline -= 1
        # A top-level navigation from that page, too.
        navigation = attacker.goto(download + "&user_id=via-navigation")
        assert navigation is not None
        statuses["navigation"] = navigation.status
    finally:
        attacker.close()
        other.shutdown()
        other.server_close()
    # The browser sent the cookie each time (same site); the gateway did not take it.
    assert statuses == {"iframe": 401, "fetch": 401, "navigation": 401}


def test_over_https_the_page_sets_a_secure_host_only_cookie_and_its_feed_works(
    browser_context, tmp_path
):
    """Under TLS the page keeps its key in __Host-uba_key (Secure, Path=/),
    the only name the gateway takes there; the live feed and the download
    authenticate with it."""
    from playwright.sync_api import expect
    from support.certs import CertificateAuthority

    ca = CertificateAuthority("uba browser test CA")
    issued = ca.issue(tmp_path, "server", server=True)
    server = ServerProcess(
        tmp_path / "data",
        extra_args=[
            "--tls-cert",
            str(issued.cert),
            "--tls-key",
            str(issued.key),
            "--gateway-listen",
            "127.0.0.1:0",
        ],
    ).start()
    page = None
    try:
        deadline = time.monotonic() + 60
        while "gateway on https://" not in server.log() and time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log()
            time.sleep(0.1)
        address = server.log().split("gateway on https://", 1)[1].split()[0]
        page = browser_context.new_page()
        page.add_init_script(f"sessionStorage.setItem('uba.apiKey', {json.dumps(server.api_key)})")
        page.goto(f"https://{address}/", wait_until="domcontentloaded")
        expect(page.locator("#stream-status")).to_have_attribute(
            "data-state", "live", timeout=20_000
        )
        cookies = {c["name"]: c for c in browser_context.cookies(f"https://{address}/")}
        assert "__Host-uba_key" in cookies, cookies
        cookie = cookies["__Host-uba_key"]
        assert cookie["secure"] and cookie["path"] == "/" and cookie["sameSite"] == "Strict"
        own = page.evaluate(
            "async (href) => (await fetch(href)).status", f"{API}/logs/download/?format=csv"
        )
        assert own == 200
    finally:
        if page is not None:
            page.close()
        server.stop()
