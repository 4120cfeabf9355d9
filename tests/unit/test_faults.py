"""The fault-injection points (runtime/faults.py) and how a full disk is reported.

The actions that end a process (``kill``, ``hang``) run in a child process, as the fault
tests use them; the full-disk tests here cover the conversion alone (the real ENOSPC, on a
real full file system, is tests/faults/test_runtime_faults.py).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from certmodel.runtime import faults
from certmodel.runtime.cli import main as main_module
from certmodel.runtime.errors import ExitCode, NoSpaceError, no_space_error

CHILD = "from certmodel.runtime import faults; faults.point('x.y'); print('passed x.y')"


def run_child(spec: str) -> subprocess.Popen[str]:
    env = {**os.environ, faults.ENV: spec}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_no_fault_switched_on_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.point("publish.before-rename")
    monkeypatch.setenv(faults.ENV, "publish.after-rename, train.after-checkpoint:kill")
    faults.point("publish.before-rename")  # another point: nothing happens


@pytest.mark.parametrize("spec", ["a.b,x.y", "x.y:raise"])
def test_a_named_point_raises(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv(faults.ENV, spec)
    with pytest.raises(faults.InjectedFault, match=r"injected fault at x\.y$"):
        faults.point("x.y")


def test_an_unknown_action_still_fires_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, "x.y:explode")
    with pytest.raises(faults.InjectedFault, match="unknown action 'explode'"):
        faults.point("x.y")


def test_kill_is_a_real_sigkill() -> None:
    child = run_child("x.y:kill")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL and out == ""


def test_hang_announces_itself_and_blocks_until_killed() -> None:
    child = run_child("x.y:hang")
    assert child.stderr is not None
    line = child.stderr.readline()
    assert line.strip() == faults.HANG_MESSAGE.format(name="x.y", pid=child.pid)
    time.sleep(0.3)
    assert child.poll() is None  # still there, going nowhere
    child.kill()
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL and "passed" not in out


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device", "/models/.staging/x/adapter.json"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
    ],
)
def test_a_full_disk_becomes_one_actionable_error(exc: BaseException) -> None:
    full = no_space_error(exc)
    assert isinstance(full, NoSpaceError) and full.exit_code == ExitCode.FAILED
    assert str(full).startswith("no space left on the device") and "free space" in str(full)
    if isinstance(exc, OSError) and exc.filename:
        assert "writing /models/.staging/x/adapter.json" in str(full)


def test_a_full_disk_is_found_behind_a_wrapping_exception() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise ValueError("saving failed") from inner
    except ValueError as outer:
        assert isinstance(no_space_error(outer), NoSpaceError)


@pytest.mark.parametrize(
    "exc", [OSError(errno.ENOENT, "No such file"), ValueError("x"), RuntimeError("os error 2)")]
)
def test_other_errors_are_not_a_full_disk(exc: BaseException) -> None:
    assert no_space_error(exc) is None


def test_the_cli_prints_a_full_disk_as_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def full(_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "CURRENT"))

    monkeypatch.setattr("certmodel.runtime.cli.store_cmd.cmd_list", full)
    monkeypatch.setattr(main_module, "COMMAND_MODULES", ["certmodel.runtime.cli.store_cmd"])
    assert main_module.main(["list", "--root", str(tmp_path)]) == ExitCode.FAILED
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"certmodel: error: no space left on the device writing {tmp_path / 'CURRENT'}:"
        " free space on the volume (or grow it) and run the command again"
    ]


def test_the_cli_keeps_the_traceback_of_other_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(_args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("certmodel.runtime.cli.store_cmd.cmd_list", broken)
    monkeypatch.setattr(main_module, "COMMAND_MODULES", ["certmodel.runtime.cli.store_cmd"])
    with pytest.raises(OSError, match="Input/output error"):
        main_module.main(["list", "--root", str(tmp_path)])
