"""The data dir and the store's files: private to the user Tasuki runs as.

What lives there (the SQLite store with webhook secrets, encrypted but beside its run logs; the
generated keys; the mirror cache) is nobody else's to read: a folder Tasuki makes is 0700 and a
file 0600 from the moment it exists (never created readable and narrowed afterwards). A store
file found more open (an older Tasuki made it) is narrowed when Tasuki opens it; a folder that
exists already is left as it is (TASUKI_DATA_DIR may name a folder that is not Tasuki's alone).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner can enter (made, with its missing parents, if need be)."""
    path = Path(path)
    if not path.is_dir():
        # Parents it makes are private too: mkdir's mode applies to the last folder only.
        for folder in reversed([path, *path.parents]):
            if not folder.exists():
                folder.mkdir(mode=DIR_MODE, exist_ok=True)
                folder.chmod(DIR_MODE)  # the umask may have taken bits away, never added: exact now
    return path


def private_file(path: Path) -> Path:
    """`path` as a file only its owner can read and write (made empty if missing: created with
    that mode, so there is no moment it is readable by others)."""
    path = Path(path)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    os.close(fd)
    _narrow(path, FILE_MODE)
    return path


def narrow_if_there(path: Path) -> None:
    """A file Tasuki did not create itself (SQLite's -wal and -shm files), narrowed if it exists."""
    try:
        _narrow(Path(path), FILE_MODE)
    except FileNotFoundError:
        pass


def _narrow(path: Path, mode: int) -> None:
    if path.stat().st_mode & 0o777 & ~mode:
        path.chmod(mode)
