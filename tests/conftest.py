"""Shared fixtures: real servers on real ports, on SQLite and PostgreSQL.

Where CI=true, a PostgreSQL that does not answer fails the run instead of
skipping its half of the suite.

Tiers (pytest markers, set here from where a test lives so no test can forget
its own): `unit` for tests/unit and the modules that mark themselves
`pytestmark = pytest.mark.unit` (in-process, no server: `make test-fast`);
`fault` for tests/faults; `browser` for the Chromium tests; `gateway` for the
rest of tests/gateway (real Envoy); `e2e` for everything else (a real server
process on real ports).

`make test` runs the suite in enhanced mode, then again in basic mode
(without numpy, scipy and scikit-learn) for what differs between the two:
the `unit` tier, and the modules that mark themselves `both_modes` because
their subject depends on the analytics mode (detection, ingest and what it
answers, incidents, the evaluation, the REST contract's answers). The rest
(delivery, the event log, faults, Envoy, the page, TLS, the CLI...) does
not: it runs in the enhanced pass and is skipped, saying so, in the basic
one.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from support import postgres
from support.server import ServerProcess

BACKENDS = ("sqlite", "postgresql")
TESTS = Path(__file__).parent
BROWSER_MODULES = ("test_browser.py", "test_browser_security.py", "test_browser_docs.py")


def _tier(item: pytest.Item) -> str:
    if item.get_closest_marker("unit"):
        return "unit"
    parts = item.path.relative_to(TESTS).parts
    if parts[0] == "unit":
        return "unit"
    if parts[0] == "faults":
        return "fault"
    if parts[0] == "gateway":
        return "browser" if item.path.name in BROWSER_MODULES else "gateway"
    return "e2e"


BASIC_MODE = importlib.util.find_spec("sklearn") is None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item)
        if not item.get_closest_marker(tier):
            item.add_marker(tier)
        if BASIC_MODE and tier != "unit" and not item.get_closest_marker("both_modes"):
            item.add_marker(
                pytest.mark.skip(reason="independent of the analytics mode: runs in enhanced mode")
            )


def _require_postgres() -> None:
    why = postgres.available()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and does not answer: {why}")
        pytest.skip(f"PostgreSQL not available: {why}")


@pytest.fixture(scope="session")
def pg_available() -> None:
    _require_postgres()


@pytest.fixture
def make_database_url():
    """Makes a fresh database of the backend; returns its URL ('' = the
    embedded default in the data dir). Databases are dropped afterwards."""
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return ""
        _require_postgres()
        url = postgres.create_database()
        created.append(url)
        return url

    yield make
    for url in created:
        postgres.drop_database(url)


@pytest.fixture(scope="module", params=BACKENDS)
def uba_server(request, tmp_path_factory):
    """A running server with a fresh database, shared by one test module."""
    backend = request.param
    url = ""
    if backend == "postgresql":
        _require_postgres()
        url = postgres.create_database()
    server = ServerProcess(tmp_path_factory.mktemp(f"uba-{backend}"), url).start()
    server.backend = backend
    yield server
    server.stop()
    if url:
        postgres.drop_database(url)


@pytest.fixture
def stub(uba_server):
    return uba_server.stub
