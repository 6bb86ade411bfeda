"""The OpenAPI document and the API reference page, as the gateway serves
them (real Envoy, no key needed), and what the page does without Swagger UI."""

from __future__ import annotations

import json

from gateway.fake_upstream import FakeUpstream
from gateway.gateway_support import API, Client
from uba.gateway import GatewayProcess
from uba.gateway import config as gateway_config


def test_the_document_is_served_as_committed_without_a_key(fake_gateway):
    response = fake_gateway.client.get(f"{API}/openapi.json")
    assert response.status == 200, response
    assert response.content_type == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.body == gateway_config.OPENAPI_JSON.read_bytes()
    document = response.json()
    assert document["swagger"] == "2.0"
    assert f"{API}/capabilities" in document["paths"]
    # A file, not a method: one spelling (with a slash, the transcoder's 404).
    assert fake_gateway.client.get(f"{API}/openapi.json/").status == 404


def test_the_reference_page_and_its_files_are_served(fake_gateway):
    client = fake_gateway.client
    redirect = client.get("/docs")
    assert redirect.status == 301 and redirect.headers["location"].endswith("/docs/")
    page = client.get("/docs/")
    assert page.status == 200 and page.content_type == "text/html"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert b'src="swagger-ui-bundle.js"' in page.body and b'src="docs.js"' in page.body
    ui = gateway_config.SWAGGER_UI_DIR
    for name, kind in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
    ):
        response = client.get(f"/docs/{name}")
        assert response.status == 200 and response.content_type == kind
        assert response.body == (ui / name).read_bytes()
    script = client.get("/docs/docs.js")
    assert script.status == 200 and b"/api/behavior-analytics/openapi.json" in script.body
    assert b"validatorUrl: null" in script.body
    assert client.get("/docs/petstore.json").status == 404


def test_without_swagger_ui_the_page_names_the_command(tmp_path, envoy_binary):
    with FakeUpstream() as upstream:
        process = GatewayProcess(
            upstream.address,
            "127.0.0.1:0",
            work_dir=tmp_path,
            concurrency=1,
            swagger_ui_dir=tmp_path / "not-installed",
        )
        process.start()
        try:
            process.wait_ready()
            client = Client(process.listen_address)
            page = client.get("/docs/")
            assert page.status == 503 and b"make tools" in page.body
            assert client.get("/docs/swagger-ui-bundle.js").status == 503
            # The document does not need Swagger UI.
            spec = client.get(f"{API}/openapi.json")
            assert spec.status == 200 and json.loads(spec.body)["info"]["title"]
        finally:
            process.stop()
