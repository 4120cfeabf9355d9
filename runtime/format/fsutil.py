"""Durable file-system primitives: fsync of files and directories, atomic file replacement.

A rename is atomic but not durable until the parent directory is fsynced; a file's bytes are
not durable until the file is fsynced. Publication and pointer moves use these helpers so that
a crash at any point leaves either the old state or the new one, never a mix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush one file's bytes to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames, creations) to stable storage."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path, *, normalise_modes: bool = False) -> None:
    """Fsync every file and directory under ``root`` (bottom-up, so entries land before parents).

    With ``normalise_modes``, files become 0644 and folders 0755 first: a version is read by
    inference pods that may run as another user than the trainer that wrote it.
    """
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            if normalise_modes:
                os.chmod(Path(dirpath) / name, FILE_MODE)
            fsync_file(Path(dirpath) / name)
        if normalise_modes:
            os.chmod(dirpath, DIR_MODE)
        fsync_dir(Path(dirpath))


FILE_MODE = 0o644
DIR_MODE = 0o755
"""Published files are readable by every user: inference pods may run as another user."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Written to a temporary file in the same directory (same file system, so the rename is
    atomic), fsynced, renamed over the target, then the directory is fsynced.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)  # mkstemp creates 0600
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
