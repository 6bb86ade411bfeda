"""The dashboard page as files (index.html and its script app.js):
self-contained, safe, and with the stable element ids browser tests rely on
(listed in envoy/README.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from uba.gateway.config import APP_JS, INDEX_HTML, SOURCE_DIR

PAGE = INDEX_HTML.read_text(encoding="utf-8")
SCRIPT = APP_JS.read_text(encoding="utf-8")

STABLE_IDS = """
server-info window-select refresh-button last-updated app-status
panel-incidents incidents-summary incidents-status-filter incidents-unavailable incidents-error
incidents-empty incidents-list panel-incident incident-close incident-placeholder incident-error
incident-detail incident-head incident-signals incident-formula incident-timeline-caption
incident-timeline
total-events total-users total-login-failures total-api-calls total-anomalies total-open-alerts
hourly-chart severity-chart detector-chart risky-users risky-users-empty
alerts-status-filter stream-status alerts-unavailable alerts-error alerts-empty alerts-list
logs-form logs-user logs-type logs-start logs-end logs-page-size logs-apply logs-reset logs-error
logs-table logs-body logs-empty logs-first logs-prev logs-next logs-page-info
export-csv export-json export-ndjson
baseline-form baseline-user baseline-show baseline-message baseline-view baseline-heatmap
baseline-summary toast
""".split()
SCRIPT_IDS = ["hourly-svg", "baseline-heatmap-svg"]


@pytest.mark.parametrize("element_id", STABLE_IDS)
def test_stable_ids_are_in_the_page(element_id):
    assert len(re.findall(rf'\bid="{element_id}"', PAGE)) == 1


@pytest.mark.parametrize("element_id", STABLE_IDS + SCRIPT_IDS)
def test_stable_ids_are_documented(element_id):
    assert f"`{element_id}`" in (SOURCE_DIR / "README.md").read_text()


def test_chart_ids_drawn_by_script():
    for element_id in SCRIPT_IDS:
        assert f'id: "{element_id}"' in SCRIPT


def test_page_is_self_contained():
    # One script, from the gateway itself; no other resource.
    assert re.findall(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=\"([^\"]*)\"", PAGE, re.I) == [
        "/app.js"
    ]
    for text in (PAGE, SCRIPT):
        assert "@import" not in text and "url(" not in text
    assert re.findall(r"https?://[^\s\"')]+", PAGE) == []
    urls = re.findall(r"https?://[^\s\"')]+", SCRIPT)
    assert urls == ["http://www.w3.org/2000/svg"]  # the SVG namespace name, never fetched


def test_no_inline_script_or_event_handler_attributes():
    # The Content-Security-Policy allows scripts from /app.js only: inline
    # code would not run.
    assert re.findall(r"<script[^>]*>", PAGE) == ['<script src="/app.js">']
    assert not re.search(r"<script[^>]*>\s*[^<\s]", PAGE)
    assert not re.search(r"\son[a-z]+\s*=", PAGE, re.I)
    assert "javascript:" not in PAGE.lower()


def test_page_uses_only_the_rest_api():
    fetched = set(re.findall(r'API \+ "(/[^"?]*)', SCRIPT)) | set(
        re.findall(r'api\("(/[^"?]*)', SCRIPT)
    )
    assert fetched and all(path.endswith("/") for path in fetched), fetched
    assert 'const API = "/api/behavior-analytics";' in SCRIPT


def test_server_data_never_goes_through_html_parsing():
    # text goes in with textContent / text nodes only
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ):
        assert sink not in SCRIPT


def test_export_links_never_carry_paging_parameters():
    # ExportLogs has no page_size/page_token: the gateway would answer 400.
    body = SCRIPT[SCRIPT.index("function updateExportLinks") :]
    body = body[: body.index("\n  }\n")]
    assert "page_" not in body and "logFilters()" in body


def test_page_fits_the_direct_response_limit():
    from uba.gateway.config import GatewayConfig

    for path in (INDEX_HTML, APP_JS):
        assert path.stat().st_size < GatewayConfig(upstream="127.0.0.1:1").max_page_bytes // 4


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_script_parses(tmp_path: Path):
    script = tmp_path / "page.js"
    script.write_text(SCRIPT, encoding="utf-8")
    result = subprocess.run(
        ["node", "--check", str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
