"""Files only their owner may read: routing-engine configs (BGP and OSPF
passwords are in them verbatim), routeflow's state records and sockets.

Written so that they are never readable by others, not even for a moment:
created with mode 0600 (directories 0700) rather than chmod-ed afterwards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
#: A directory shared by several owners' private ones (``/run/routeflow``): others may
#: pass through it to what is theirs (FRR's user to its run directory), not list it.
SHARED_DIR_MODE = 0o711


def private_dir(path: Path, owner: str | None = None, mode: int = DIR_MODE) -> None:
    """``path`` and its missing parents as directories; ``path`` itself ``mode`` (0700)
    and, with ``owner``, that user's (an engine that drops root must reach its files)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        shutil.chown(path, owner, owner)


def write_private(path: Path, text: str, owner: str | None = None) -> None:
    """Write ``text`` to ``path`` (mode 0600, ``owner``'s if given) through a
    temporary file and a rename: a crash never leaves half a file behind."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, FILE_MODE)  # an existing temporary file keeps its old mode through O_CREAT
    if owner is not None:
        shutil.chown(tmp, owner, owner)
    os.replace(tmp, path)
