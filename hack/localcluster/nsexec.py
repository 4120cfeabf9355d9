"""Set up one container's mounts inside a private mount namespace, then exec its command.

Run by the local node agent as::

    unshare -m --propagation private -- python nsexec.py SPEC.json

(stdlib only, run by path: it must not import the project). SPEC holds ``mounts`` (source,
target, readOnly), ``cwd``, ``argv``, ``env`` and ``scratch`` (a host folder this helper may use).

Why this exists: pod specs use absolute mountPaths (``/var/run/secrets/...``, ``/data``,
``/dev/termination-log``) that do not exist on the host. Bind mounts need an existing mount
point, and creating one on the host would touch the host's real paths. So when a mount point is
missing, the nearest existing ancestor is *shadowed* inside the namespace: a tmpfs is filled with
bind mounts of the ancestor's original entries and moved on top of it; the missing folders are
then created in that tmpfs. The host never sees any of it, and the namespace dies with the process.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src: str, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(
        src.encode(),
        dst.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount({src!r}, {dst!r}, {fstype!r}, {flags:#x}): {os.strerror(err)}")


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


class Mounter:
    """Applies mounts in order, shadowing missing mount points' ancestors as needed."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch
        # Folders whose changes never reach the host: our tmpfs roots (the folder itself only;
        # the bind mounts inside lead back to the host) and volume mount points (and below).
        self.tmpfs_roots: list[str] = []
        self.volumes: list[str] = []
        self._n = 0

    def shadow(self, anc: str) -> None:
        """Replace ``anc`` (in this namespace only) by a tmpfs of bind mounts of its entries."""
        self._n += 1
        stage = os.path.join(self.scratch, f"shadow-{self._n}")
        os.makedirs(stage, exist_ok=True)
        st = os.stat(anc)
        _mount("tmpfs", stage, "tmpfs", 0, f"mode={st.st_mode & 0o7777:o}")
        os.chown(stage, st.st_uid, st.st_gid)
        for name in os.listdir(anc):
            src, dst = os.path.join(anc, name), os.path.join(stage, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                continue
            if os.path.isdir(src):
                os.mkdir(dst)
            else:
                open(dst, "wb").close()
            _mount(src, dst, None, MS_BIND | MS_REC)
        if anc == "/":
            os.chdir(stage)
            _mount(".", "/", None, MS_MOVE)
            os.chroot(".")
            os.chdir("/")
        else:
            _mount(stage, anc, None, MS_MOVE)
        self.tmpfs_roots.append(anc)

    def ensure(self, target: str, is_dir: bool) -> None:
        """Create ``target`` (folder or empty file) without writing to the host's folders."""
        if os.path.lexists(target):
            return
        anc = os.path.dirname(target)
        while not os.path.exists(anc):
            anc = os.path.dirname(anc)
        anc = os.path.realpath(anc)
        if anc not in self.tmpfs_roots and not _under(anc, self.volumes):
            self.shadow(anc)
        if is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "wb").close()

    def bind(self, source: str, target: str, read_only: bool) -> None:
        target = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
        self.ensure(target, os.path.isdir(source))
        _mount(source, target, None, MS_BIND | MS_REC)
        if read_only:
            _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        self.volumes.append(os.path.realpath(target))


def _same(path: str, fd: int) -> bool:
    """Whether ``path`` still names the folder ``fd`` was opened on."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        spec: dict[str, Any] = json.load(f)
    mounter = Mounter(spec["scratch"])
    mounts = sorted(spec["mounts"], key=lambda m: m["target"].rstrip("/").count("/"))
    try:
        # Hold every source open first: a mount over /tmp (an emptyDir at /tmp, say) would
        # otherwise hide sources that live under the host's /tmp from the mounts after it.
        fds = [os.open(m["source"], os.O_PATH) for m in mounts]
        kept = [(p, os.open(p, os.O_PATH)) for p in spec.get("keep", []) if os.path.isdir(p)]
        for m, fd in zip(mounts, fds, strict=True):
            source = f"/proc/self/fd/{fd}"
            mounter.bind(source, os.path.normpath(m["target"]), bool(m.get("readOnly")))
        for fd in fds:
            os.close(fd)
        for path, fd in kept:
            if not _same(path, fd):  # hidden by a volume mounted over an ancestor
                mounter.bind(f"/proc/self/fd/{fd}", path, False)
            os.close(fd)
        # The agent's default working folder lives on the host and may now be hidden (an
        # emptyDir over /tmp): then start in "/", as a container without a WORKDIR does.
        os.chdir(spec["cwd"] if os.path.isdir(spec["cwd"]) else "/")
    except OSError as e:
        print(f"localcluster nsexec: container setup failed: {e}", file=sys.stderr)
        return 128
    cmd: list[str] = spec["argv"]
    env: dict[str, str] = spec["env"]
    try:
        os.execvpe(cmd[0], cmd, env)  # noqa: S606 - exec, not a shell, on purpose
    except OSError as e:
        print(f"localcluster nsexec: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        return 127
    return 0  # unreachable


if __name__ == "__main__":
    sys.exit(main(sys.argv))
