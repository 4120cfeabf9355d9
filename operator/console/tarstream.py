"""A certified version as an uncompressed tar stream, produced chunk by chunk.

The archive holds ``<dna>/certified.json`` (and ``certified.sig`` when signed) and exactly the
files the manifest lists, under ``<dna>/``, so ``tar -x`` gives a folder that `certmodel verify`
accepts. Headers come from :class:`tarfile.TarInfo` (PAX format, what ``tarfile.open(mode="w|")``
writes); file bodies are read in 1 MiB chunks, so a multi-gigabyte model never sits in memory.

Each file is hashed while it streams: if its bytes no longer match the manifest (changed after
the verification that allowed the download), the stream stops with :class:`TarStreamError`
before the file's end, and the client gets a truncated archive instead of a corrupt one.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from certmodel.runtime.format.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 1 << 20


class TarStreamError(Exception):
    """The version changed or was unsafe while it was being streamed."""


@dataclass(frozen=True)
class Member:
    rel: str
    size: int
    sha256: str | None = None
    """Expected digest (manifest files); None for the manifest and signature themselves."""


def safe_rel(rel: str) -> str:
    """``rel`` if it is a plain relative path inside the version folder, else raise."""
    p = PurePosixPath(rel)
    if (
        not rel
        or "\\" in rel
        or p.is_absolute()
        or any(s in ("", ".", "..") for s in rel.split("/"))
    ):
        raise TarStreamError(f"manifest path {rel!r} is not a plain relative path")
    return rel


def version_members(version_dir: Path, manifest: Manifest) -> list[Member]:
    """What the archive of a verified version holds: metadata first, then the manifest's files."""
    out = []
    for name in (MANIFEST_NAME, SIGNATURE_NAME):
        path = version_dir / name
        if path.is_file() and not path.is_symlink():
            out.append(Member(name, path.stat().st_size))
    out.extend(Member(safe_rel(e.path), e.size, e.sha256) for e in manifest.files)
    return out


def archive_size(prefix: str, members: list[Member], *, mtime: int = 0) -> int:
    """The exact length of :func:`tar_chunks`' output: sent as Content-Length, so a client
    notices an archive that stops early."""
    total = 2 * BLOCK
    for m in members:
        total += len(_header(f"{prefix}/{m.rel}", m.size, mtime)) + m.size + (-m.size % BLOCK)
    return total + (-total % RECORD)


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_inside(version_dir: Path, rel: str) -> int:
    """A read-only descriptor of the regular file ``version_dir/rel``, opened one path part at a
    time without following a symbolic link anywhere below ``version_dir`` (a folder swapped for
    a link after verification cannot lead the stream out of the version)."""
    parts = safe_rel(rel).split("/")
    try:
        dir_fd = os.open(version_dir, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        raise TarStreamError(f"{version_dir.name}: cannot open ({exc.strerror})") from exc
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise TarStreamError(f"{rel}: cannot open ({exc.strerror})") from exc
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TarStreamError(f"{rel}: not a regular file")
    return fd


def tar_chunks(
    version_dir: Path, prefix: str, members: list[Member], *, mtime: int = 0
) -> Generator[bytes, None, None]:
    """The archive, chunk by chunk. Blocking file reads: iterate it in a worker thread."""
    sent = 0
    for m in members:
        header = _header(f"{prefix}/{m.rel}", m.size, mtime)
        sent += len(header)
        yield header
        fd = open_inside(version_dir, m.rel)
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb") as handle:
            remaining = m.size
            while remaining:
                want = min(CHUNK, remaining)
                chunk = handle.read(want)
                while len(chunk) < want and (more := handle.read(want - len(chunk))):
                    chunk += more
                if len(chunk) < want:  # checked before a byte of it is sent
                    raise TarStreamError(f"{m.rel}: shorter than its manifest size {m.size}")
                digest.update(chunk)
                remaining -= len(chunk)
                if remaining == 0 and m.sha256 and digest.hexdigest() != m.sha256:
                    # Withhold the last chunk: the archive ends truncated, never corrupt.
                    raise TarStreamError(f"{m.rel}: changed since it was verified")
                sent += len(chunk)
                yield chunk
            if handle.read(1):
                raise TarStreamError(f"{m.rel}: longer than its manifest size {m.size}")
        if pad := -m.size % BLOCK:
            sent += pad
            yield bytes(pad)
    # Two zero blocks end the archive; tarfile pads a stream to whole records, and so do we.
    yield bytes(archive_size(prefix, members, mtime=mtime) - sent)
