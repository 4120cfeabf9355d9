"""`certmodel validate`: every problem kind is named with its file, and fails the exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from legacy_factory import run_cli

from certmodel.runtime.errors import ExitCode
from certmodel.runtime.format.manifest import MANIFEST_NAME
from certmodel.runtime.format.pointer import POINTER_FILE
from certmodel.runtime.format.store import Store
from certmodel.runtime.localmode import promote_local

Capsys = pytest.CaptureFixture[str]


def validate(capsys: Capsys, store: Store, *flags: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = run_cli(capsys, "validate", "--root", store.root, "--json", *flags)
    return code, json.loads(out)


def only_finding(report: dict[str, Any]) -> dict[str, str]:
    assert len(report["findings"]) == 1, report["findings"]
    finding: dict[str, str] = report["findings"][0]
    return finding


@pytest.fixture
def live(store: Store) -> str:
    """A store with one adapter version, promoted."""
    dna = make_version(store).dna
    promote_local(store, dna)
    return dna


def test_a_clean_store_passes(store: Store, live: str, capsys: Capsys) -> None:
    make_version(store, seed=2)
    code, report = validate(capsys, store)
    assert code == ExitCode.OK
    assert report["ok"] is True and report["current"] == live and report["findings"] == []
    assert report["summary"] == {"versions": 2, "errors": 0, "warnings": 0}


def test_an_empty_store_passes(store: Store, capsys: Capsys) -> None:
    assert validate(capsys, store) == (
        ExitCode.OK,
        {
            "root": str(store.root),
            "ok": True,
            "current": None,
            "versions": [],
            "findings": [],
            "summary": {"versions": 0, "errors": 0, "warnings": 0},
        },
    )


def test_json_shape(store: Store, live: str, capsys: Capsys) -> None:
    _, report = validate(capsys, store)
    assert set(report) == {"root", "ok", "current", "versions", "findings", "summary"}
    assert report["versions"] == [
        {
            "dna": live,
            "ok": True,
            "kind": "adapter",
            "base_model": "tiny-base",
            "content_digest": store.read_manifest(live).content_digest,
        }
    ]


def test_a_corrupt_file_is_named(store: Store, live: str, capsys: Capsys) -> None:
    path = store.version_path(live) / "adapter/adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    found = [f for f in report["findings"] if f["subject"] == live]
    assert found == [{**found[0], "kind": "digest", "path": str(path), "severity": "error"}]
    # CURRENT now names a version that fails verification: reported too
    assert any(f["subject"] == "CURRENT" for f in report["findings"])
    code, out, _ = run_cli(capsys, "validate", "--root", store.root)
    assert code == ExitCode.FAILED and f"{path}: sha256" in out


def test_an_invalid_manifest_is_named(store: Store, capsys: Capsys) -> None:
    dna = make_version(store).dna
    path = store.version_path(dna) / MANIFEST_NAME
    data = json.loads(path.read_text())
    del data["content_digest"]
    path.write_text(json.dumps(data))
    code, report = validate(capsys, store, "--no-pointer")
    assert code == ExitCode.FAILED
    finding = only_finding(report)
    assert finding["kind"] == "manifest" and finding["path"] == str(path)
    assert "content_digest" in finding["detail"]


def test_a_missing_base_model(store: Store, live: str, capsys: Capsys) -> None:
    shutil.rmtree(store.base_models_dir / "tiny-base")
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    finding = only_finding(report)
    assert finding["kind"] == "base-missing"
    assert finding["path"] == str((store.base_models_dir / "tiny-base").resolve())


def test_a_changed_base_model(store: Store, live: str, capsys: Capsys) -> None:
    (store.base_models_dir / "tiny-base" / "config.json").write_text("{}")
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    finding = only_finding(report)
    assert finding["kind"] == "base-digest" and finding["subject"] == live
    assert "was trained on" in finding["detail"]


def test_current_naming_a_missing_version(store: Store, live: str, capsys: Capsys) -> None:
    shutil.rmtree(store.version_path(live))
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    finding = only_finding(report)
    assert finding["subject"] == "CURRENT" and "does not exist" in finding["detail"]
    assert finding["path"] == str(store.root / POINTER_FILE)


def test_current_with_another_content_digest(store: Store, live: str, capsys: Capsys) -> None:
    path = store.root / POINTER_FILE
    doc = json.loads(path.read_text())
    doc["target"]["content_digest"] = "sha256:" + "0" * 64
    path.write_text(json.dumps(doc))
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    assert "content digest" in only_finding(report)["detail"]


@pytest.mark.parametrize("broken", ["not json", "symlink"])
def test_an_unreadable_current(store: Store, live: str, capsys: Capsys, broken: str) -> None:
    path = store.root / POINTER_FILE
    path.unlink()
    if broken == "symlink":
        path.symlink_to(store.version_path(live))
    else:
        path.write_text("{")
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    assert only_finding(report)["subject"] == "CURRENT"


def test_no_current_is_a_warning_unless_required(store: Store, capsys: Capsys) -> None:
    make_version(store)
    code, report = validate(capsys, store)
    assert code == ExitCode.OK and only_finding(report)["severity"] == "warning"
    assert validate(capsys, store, "--require-current")[0] == ExitCode.FAILED
    assert validate(capsys, store, "--no-pointer")[1]["findings"] == []


def test_staging_leftovers(store: Store, live: str, capsys: Capsys) -> None:
    other = make_version(store, seed=7).dna
    shutil.move(store.version_path(other), store.staging_path(other) / "version")
    (store.staging_path(live)).mkdir(parents=True)  # left after a publish
    (store.staging_dir / "base-tiny-123").mkdir()  # an interrupted prepare-base
    training = "tiny-base-lora-0123456789ab"
    (store.staging_path(training) / "checkpoints").mkdir(parents=True)  # in progress
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    by_subject = {f["subject"]: f for f in report["findings"]}
    assert set(by_subject) == {f".staging/{other}", f".staging/{live}", ".staging/base-tiny-123"}
    assert by_subject[f".staging/{other}"]["severity"] == "error"
    assert "half-published" in by_subject[f".staging/{other}"]["detail"]
    assert by_subject[f".staging/{live}"]["severity"] == "warning"


def test_a_stray_folder_under_certified(store: Store, live: str, capsys: Capsys) -> None:
    (store.certified_dir / "my-copy").mkdir()
    code, report = validate(capsys, store)
    assert code == ExitCode.FAILED
    finding = only_finding(report)
    assert finding["kind"] == "not-a-version"
    assert finding["path"] == str(store.certified_dir / "my-copy")


def test_text_output(store: Store, live: str, capsys: Capsys) -> None:
    code, out, _ = run_cli(capsys, "validate", "--root", store.root)
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0].split() == ["STATUS", "SUBJECT", "CHECK", "DETAIL"]
    assert lines[1].split()[:2] == ["ok", live]
    assert lines[-1].startswith("1 versions, 0 errors, 0 warnings")


def test_a_missing_root_is_a_usage_error(tmp_path: Path, capsys: Capsys) -> None:
    code, _, err = run_cli(capsys, "validate", "--root", tmp_path / "nope")
    assert code == ExitCode.USAGE and "does not exist" in err
