"""Temporary files named after the process that writes them, so that a later run can remove the
ones a killed writer left behind (a download's `.part`, a record's `.tmp`) and never touch a live
writer's.

The owner is `<host>-<pid>`: the host as the first 8 hex digits of the sha256 of its name, since a
results folder or a cache on a shared file system is written from several machines and a process
id means something on its own machine only. A file of another host, or of a name without an owner
(written by an older segbench), is left alone. Stdlib only: records use this and import no torch.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Iterable

# The random part is hex digits, so the owner is the third component from the end.
_OWNED = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>\d{1,7})\.[a-z0-9_]+\.[a-z]+$")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owned_temp_file(directory: Path, name: str, suffix: str) -> tuple[int, Path]:
    """A new file `.<name>.<host>-<pid>.<random><suffix>` in `directory`; returns (fd, path).

    Opened with mode 0666 for the umask to trim, as any new file: mkstemp's 0600 would survive the
    rename into place and hide records and cached weights from the rest of a team."""
    while True:
        path = Path(directory) / f".{name}.{_host()}-{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def remove_abandoned(candidates: Iterable[Path]) -> None:
    """Delete each candidate written by a process of this host that no longer runs."""
    if os.name != "posix":  # os.kill(pid, 0) would send Ctrl-C on Windows; keep everything there
        return
    host = _host()
    for path in candidates:
        owner = _OWNED.search(path.name)
        if owner and owner["host"] == host and not _running(int(owner["pid"])):
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True
