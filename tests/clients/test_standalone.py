"""The Python client stands alone: uba_client, the generated contract
(uba.v1) and the tiny shared id package (uba_ids) are all it needs of this
repository. The check copies exactly those
into an empty directory and imports the client there, in a fresh interpreter
that sees that directory and the third-party packages, not the server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import uba
import uba_client
import uba_ids

# Runs in the child. `-S` keeps site-packages' .pth files (the editable install
# of the whole server among them) from running; the third-party packages the
# client needs (grpcio, protobuf) are put on the path after the copy.
CHILD = textwrap.dedent(
    """
    import importlib.util, sys
    root, *third_party = sys.argv[1:]
    sys.path.extend(third_party)

    import uba, uba_client
    from uba_client import UbaClient, event, new_event_id

    assert uba.__file__.startswith(root), uba.__file__
    assert uba_client.__file__.startswith(root), uba_client.__file__
    assert importlib.util.find_spec("uba.domain") is None, "the server is visible"
    client = UbaClient("127.0.0.1:1", api_key="k", timeout=1.0)
    message = event("alice", "login_success", event_id=new_event_id())
    client.close()
    server_modules = sorted(
        m for m in sys.modules if m.startswith("uba.") and not m.startswith("uba.v1")
    )
    assert not server_modules, server_modules
    print("ok", message.user_id)
    """
)


def test_the_client_needs_only_the_contract(tmp_path: Path):
    server_package = Path(uba.__file__).parent
    assert (server_package / "__init__.py").read_text().strip() == "", (
        "uba/__init__.py must stay empty: the client ships it with the contract"
    )
    (tmp_path / "uba").mkdir()
    shutil.copy(server_package / "__init__.py", tmp_path / "uba" / "__init__.py")
    shutil.copytree(server_package / "v1", tmp_path / "uba" / "v1")
    shutil.copytree(Path(uba_client.__file__).parent, tmp_path / "uba_client")
    shutil.copytree(Path(uba_ids.__file__).parent, tmp_path / "uba_ids")

    paths = sysconfig.get_paths()
    third_party = sorted({paths["purelib"], paths["platlib"]})
    done = subprocess.run(
        [sys.executable, "-S", "-c", CHILD, str(tmp_path), *third_party],
        env={"PYTHONPATH": str(tmp_path), "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok alice"
