"""The Node.js client's own tests (`node --test`) against a live server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"


@pytest.mark.parametrize(
    "uba_server", ["sqlite"], indirect=True
)  # the client does not care about storage
def test_node_client(uba_server):
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are required in CI")
        pytest.skip("node/npm not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        # The lock file pins exact versions and records no download URLs.
        ci = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ci.returncode == 0, ci.stdout + ci.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    env["UBA_TEST_SERVER"] = uba_server.address
    env["UBA_TEST_API_KEY"] = uba_server.api_key
    run = subprocess.run(
        [node, "--test", "test/"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# skipped 0" in run.stdout
