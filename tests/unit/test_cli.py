"""The certmodel CLI in local mode: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from factories import make_version

from certmodel.runtime.cli.main import main
from certmodel.runtime.errors import ExitCode
from certmodel.runtime.format.store import Store

WEIGHTS = "adapter/adapter_model.safetensors"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def corrupt(store: Store, dna: str) -> None:
    path = store.version_path(dna) / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_a_good_version_exits_0(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    dna = make_version(store).dna
    assert run(capsys, "verify", dna, "--root", str(store.root))[:2] == (0, f"OK      {dna}\n")


def test_verify_a_corrupt_version_exits_1_and_names_the_file(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    dna = make_version(store).dna
    corrupt(store, dna)
    code, out, _ = run(capsys, "verify", dna, "--root", str(store.root))
    assert code == ExitCode.FAILED
    assert f"{store.version_path(dna) / WEIGHTS}: sha256" in out


def test_verify_all_json(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_version(store, seed=1).dna
    bad = make_version(store, seed=2).dna
    corrupt(store, bad)
    code, out, _ = run(capsys, "verify", "--all", "--json", "--root", str(store.root))
    assert code == ExitCode.FAILED
    by_dna = {r["dna"]: r for r in json.loads(out)}
    assert by_dna[good]["ok"] is True
    assert by_dna[bad]["problems"] == [
        {"kind": "digest", "path": WEIGHTS, "detail": by_dna[bad]["problems"][0]["detail"]}
    ]


def test_promote_refuses_a_corrupt_version_and_leaves_current(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make_version(store, seed=1).dna
    bad = make_version(store, seed=2).dna
    assert run(capsys, "promote", good, "--root", str(store.root))[0] == 0
    corrupt(store, bad)
    code, out, err = run(capsys, "promote", bad, "--root", str(store.root))
    assert code == ExitCode.REFUSED
    assert err.startswith(f"certmodel: error: refusing {bad}: ") and WEIGHTS in err
    assert err.count("\n") == 1
    code, out, _ = run(capsys, "current", "--json", "--root", str(store.root))
    assert json.loads(out)["target"]["dna"] == good


def test_promote_rollback_current_and_list(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_version(store, seed=1, eval_loss=1.25).dna
    b = make_version(store, seed=2).dna
    root = ["--root", str(store.root)]
    assert run(capsys, "promote", a, *root)[1] == f"CURRENT -> {a} (revision 1)\n"
    assert run(capsys, "promote", b, *root)[0] == 0
    code, out, _ = run(capsys, "list", *root)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["DNA", "KIND", "BASE", "EVAL", "LOSS", "CREATED"]
    assert any(line.startswith(f"* {b}") for line in lines)
    assert any(line.startswith(f"  {a}") and "1.2500" in line for line in lines)
    assert run(capsys, "rollback", *root)[1] == f"rolled back, CURRENT -> {a} (revision 3)\n"
    code, out, _ = run(capsys, "current", *root)
    assert out.splitlines()[0] == f"{a}  (revision 3)"
    assert "rollback" in out.splitlines()[1]
    listed = json.loads(run(capsys, "list", "--json", *root)[1])
    assert {(v["dna"], v["current"]) for v in listed} == {(a, True), (b, False)}


def test_rollback_of_a_corrupt_previous_version_is_refused(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_version(store, seed=1).dna
    b = make_version(store, seed=2).dna
    root = ["--root", str(store.root)]
    run(capsys, "promote", a, *root)
    run(capsys, "promote", b, *root)
    corrupt(store, a)
    code, _, err = run(capsys, "rollback", *root)
    assert code == ExitCode.REFUSED and a in err
    assert json.loads(run(capsys, "current", "--json", *root)[1])["target"]["dna"] == b


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["show", "tiny-base-lora-000000000000"], ExitCode.NOT_FOUND, "not found"),
        (["verify", "../../etc"], ExitCode.USAGE, "is not a DNA name"),
        (["promote", "tiny-base-lora-000000000000"], ExitCode.NOT_FOUND, "not found"),
        (["rollback"], ExitCode.REFUSED, "nothing to roll back to"),
        (["current"], ExitCode.NOT_FOUND, "no CURRENT pointer"),
    ],
)
def test_user_errors_are_one_line_with_a_code(
    store: Store, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    got, _out, err = run(capsys, *argv, "--root", str(store.root))
    assert got == code
    assert message in err and err.startswith("certmodel: error: ") and err.count("\n") == 1


def test_show_json_is_the_manifest(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_version(store)
    _, out, _ = run(capsys, "show", manifest.dna, "--json", "--root", str(store.root))
    assert json.loads(out)["content_digest"] == manifest.content_digest


def test_the_root_comes_from_the_environment(
    store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_version(store)
    monkeypatch.setenv("CERTMODEL_ROOT", str(store.root))
    assert run(capsys, "list")[0] == 0
    monkeypatch.delenv("CERTMODEL_ROOT")
    code, _, err = run(capsys, "list")
    assert code == ExitCode.USAGE and "pass --root or set CERTMODEL_ROOT" in err


def test_the_installed_command_prints_no_traceback(store: Store, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("certmodel")
    proc = subprocess.run(
        [str(exe), "verify", "../x", "--root", str(store.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == ExitCode.USAGE
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("certmodel: error:")
