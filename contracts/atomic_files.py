"""One way to write a file that others may read at any moment: whole or not at all, with its mode from the start.

The data goes to a fresh temporary file in the same directory (created 0600 by `tempfile.mkstemp`, then
given ``mode`` before any byte is written), is flushed and fsynced, and then takes the target's name:
``os.replace`` (a reader sees the old file or the new one, never half of one), or, with
``replace=False``, only if no file has that name yet (another process that made it first wins).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o600, *, replace: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # only if absent
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: an exclusive create does the same
            with contextlib.suppress(FileExistsError):
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                with os.fdopen(fd2, "wb") as f:
                    f.write(data)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
