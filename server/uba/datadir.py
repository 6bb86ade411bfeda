"""The data directory is the owner's alone: the SQLite database and its WAL,
the admin key, trained models, and Envoy's configuration and log (which
records full query strings) are readable by no other user.

`uba serve` and `uba gateway` call `make_private` before they create
anything: from then on the process, and Envoy as its child, create files
0600 and directories 0700 (the umask), whatever the umask they started with.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
# What uba itself keeps in the data dir. Only these are narrowed when an
# older version (or a wider umask) left them readable by others: the data
# dir may be one the operator shares with other things.
OWN_FILES = ("uba.db", "uba.db-wal", "uba.db-shm", "uba.db-journal", "admin.key")
OWN_TREES = ("gateway", "models")


def make_private(data_dir: str | Path) -> list[str]:
    """Sets the owner-only umask, creates the data dir (0700) if it does
    not exist, and narrows uba's own files in an existing one to the owner.
    Returns what it warned about (also logged)."""
    os.umask(PRIVATE_UMASK)
    root = Path(data_dir)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    warnings = []
    narrowed = [str(p) for p in _own_paths(root) if _narrow(p)]
    if narrowed:
        warnings.append(
            "narrowed to owner-only access (they were readable by other users): "
            f"{', '.join(narrowed)}"
        )
    mode = root.stat().st_mode
    if mode & 0o077:
        warnings.append(
            f"the data dir {root} is open to other users (mode {stat.S_IMODE(mode):04o}); "
            f"consider: chmod 700 {root}"
        )
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def _own_paths(root: Path):
    for name in OWN_FILES:
        yield root / name
    for name in OWN_TREES:
        tree = root / name
        if tree.is_dir() and not tree.is_symlink():
            yield tree
            for folder, dirs, files in os.walk(tree):  # does not follow symbolic links
                for entry in (*dirs, *files):
                    yield Path(folder) / entry


def _narrow(path: Path) -> bool:
    """Removes group and other access from one of our files or directories
    (never through a symbolic link, never another user's file)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or not st.st_mode & 0o077:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    return True


def write_private_file(path: Path, text: str) -> None:
    """Writes `text` to `path`, owner-only, never through anything planted
    there: the text goes to a new file in the same directory, created with
    O_EXCL|O_NOFOLLOW and mode 0600 (mkstemp), which then replaces `path`
    by rename. A symbolic link at `path` is replaced itself; its target is
    left untouched."""
    if path.is_symlink():
        log.warning(
            "%s is a symbolic link (to %s): replacing the link, leaving its target untouched",
            path,
            os.readlink(path),
        )
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
