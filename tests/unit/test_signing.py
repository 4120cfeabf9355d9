"""Offline signatures (model-signing, EC P-256): a signed version verifies; any tampering with
a file, the manifest or the signature is detected, and promote --public-key refuses it."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from factories import make_base, make_recipe, make_version, write_version_files
from signingkit import KeyPair, write_key_pair

from certmodel.runtime.cli.main import main
from certmodel.runtime.errors import CertmodelError, ExitCode, UsageError, VerificationError
from certmodel.runtime.format.digest import FileEntry, content_digest, file_sha256
from certmodel.runtime.format.dna import compute_dna
from certmodel.runtime.format.manifest import MANIFEST_NAME, SIGNATURE_NAME
from certmodel.runtime.format.signing import sign_version, verify_signature
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version

WEIGHTS = "adapter/adapter_model.safetensors"


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return write_key_pair(tmp_path, "signer")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    return write_key_pair(tmp_path, "other")


def signed_version(store: Store, keys: KeyPair, *, seed: int = 0) -> Path:
    version = store.version_path(make_version(store, seed=seed).dna)
    sign_version(version, keys[0])
    return version


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- tampering ------------------------------------------------------------------------------


def flip_weights_byte(version: Path, _other: KeyPair) -> None:
    path = version / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest_metrics(version: Path, _other: KeyPair) -> None:
    """Passes manifest verification (metrics are not hashed anywhere else): only the signature
    protects them."""
    data = json.loads((version / MANIFEST_NAME).read_text())
    data["metrics"]["eval_loss"] = 0.01
    (version / MANIFEST_NAME).write_text(json.dumps(data, indent=2))


def swap_weights_and_rewrite_manifest(version: Path, _other: KeyPair) -> None:
    """A consistent forgery: new weights and a manifest that matches them."""
    flip_weights_byte(version, _other)
    data = json.loads((version / MANIFEST_NAME).read_text())
    for entry in data["files"]:
        if entry["path"] == WEIGHTS:
            entry["sha256"] = file_sha256(version / WEIGHTS)
    files = [FileEntry.model_validate(e) for e in data["files"]]
    data["content_digest"] = content_digest(files)
    (version / MANIFEST_NAME).write_text(json.dumps(data, indent=2))
    assert verify_version(version).ok  # the manifest check alone is fooled


def garbage_signature(version: Path, _other: KeyPair) -> None:
    (version / SIGNATURE_NAME).write_bytes(b"\x00not a bundle\xff")


def truncated_signature(version: Path, _other: KeyPair) -> None:
    sig = version / SIGNATURE_NAME
    sig.write_bytes(sig.read_bytes()[:-40])


def altered_signed_statement(version: Path, _other: KeyPair) -> None:
    """Edit the signed payload (drop a file from it) without re-signing."""
    sig = version / SIGNATURE_NAME
    bundle = json.loads(sig.read_text())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"]["serialization"]["ignore_paths"].append(WEIGHTS)
    payload["predicate"]["resources"] = [
        r for r in payload["predicate"]["resources"] if r["name"] != WEIGHTS
    ]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    sig.write_text(json.dumps(bundle))


def resign_with_other_key(version: Path, other: KeyPair) -> None:
    sign_version(version, other[0])


def remove_signature(version: Path, _other: KeyPair) -> None:
    (version / SIGNATURE_NAME).unlink()


def add_stray_file(version: Path, _other: KeyPair) -> None:
    (version / "tokenizer" / "extra.json").write_text("{}")


TAMPERS: list[tuple[Callable[[Path, KeyPair], None], str]] = [
    (flip_weights_byte, WEIGHTS + ": sha256 differs from the signed one"),
    (edit_manifest_metrics, MANIFEST_NAME + ": sha256 differs from the signed one"),
    (swap_weights_and_rewrite_manifest, ": sha256 differs from the signed one"),
    (garbage_signature, "not a model-signing signature bundle"),
    (truncated_signature, SIGNATURE_NAME),
    (altered_signed_statement, "does not verify with public key"),
    (resign_with_other_key, "does not verify with public key"),
    (remove_signature, "missing"),
    (add_stray_file, "tokenizer/extra.json: not covered by the signature"),
]
SCENARIOS = {
    "flip_weights_byte": "one byte of a signed version's weights flipped",
    "edit_manifest_metrics": "certified.json metrics edited (the manifest check alone passes)",
    "swap_weights_and_rewrite_manifest": "weights swapped and certified.json rewritten to match",
    "garbage_signature": "certified.sig replaced with garbage",
    "truncated_signature": "certified.sig truncated",
    "altered_signed_statement": "signed statement edited to drop a file, not re-signed",
    "resign_with_other_key": "version re-signed with another key",
    "remove_signature": "certified.sig deleted",
    "add_stray_file": "a file added to a signed version",
}
TAMPER_PARAMS = [
    pytest.param(
        tamper,
        message,
        id=tamper.__name__,
        marks=pytest.mark.reliability(
            "signing",
            SCENARIOS[tamper.__name__],
            f"verify_signature raises VerificationError: `{message.strip(': ')}`",
        ),
    )
    for tamper, message in TAMPERS
]


def test_a_signed_version_verifies_and_the_signature_covers_the_manifest(
    store: Store, keys: KeyPair
) -> None:
    version = signed_version(store, keys)
    verify_signature(version, keys[1])
    statement = (version / SIGNATURE_NAME).read_text()
    assert json.loads(statement)["dsseEnvelope"]["payload"]
    payload = json.loads(base64.b64decode(json.loads(statement)["dsseEnvelope"]["payload"]))
    names = {r["name"] for r in payload["predicate"]["resources"]}
    assert names == {
        MANIFEST_NAME,
        WEIGHTS,
        "adapter/adapter_config.json",
        "tokenizer/tokenizer.json",
    }
    # The signature is not part of the manifest's file list: the version still verifies.
    assert verify_version(version).ok


@pytest.mark.parametrize(("tamper", "message"), TAMPER_PARAMS)
def test_each_tampering_is_detected(
    store: Store,
    keys: KeyPair,
    other_keys: KeyPair,
    tamper: Callable[[Path, KeyPair], None],
    message: str,
) -> None:
    version = signed_version(store, keys)
    tamper(version, other_keys)
    with pytest.raises(VerificationError, match=message.replace(".", r"\.")):
        verify_signature(version, keys[1])


def test_signing_refuses_a_version_that_does_not_verify(store: Store, keys: KeyPair) -> None:
    version = store.version_path(make_version(store).dna)
    flip_weights_byte(version, keys)
    with pytest.raises(VerificationError, match=WEIGHTS):
        sign_version(version, keys[0])
    assert not (version / SIGNATURE_NAME).exists()


def test_a_missing_or_wrong_key_file_is_a_usage_error(
    store: Store, keys: KeyPair, tmp_path: Path
) -> None:
    version = store.version_path(make_version(store).dna)
    with pytest.raises(UsageError, match="private key file not found"):
        sign_version(version, tmp_path / "nope.pem")
    not_a_key = tmp_path / "junk.pem"
    not_a_key.write_text("hello")
    with pytest.raises(UsageError, match="cannot sign with this key"):
        sign_version(version, not_a_key)
    sign_version(version, keys[0])
    with pytest.raises(UsageError, match="public key file not found"):
        verify_signature(version, tmp_path / "nope.pub.pem")


def test_publish_can_sign_before_the_version_appears(store: Store, keys: KeyPair) -> None:
    make_base(store)
    recipe = make_recipe(store)
    work = store.staging_path(compute_dna(recipe)) / "version"
    write_version_files(work)
    manifest = store.publish(
        recipe=recipe,
        base_model=store.base_model_info("tiny-base"),
        source_dir=work,
        signing_key=keys[0],
    )
    version = store.version_path(manifest.dna)
    assert (version / SIGNATURE_NAME).is_file()
    assert verify_version(version).ok
    verify_signature(version, keys[1])


def test_the_format_library_works_without_model_signing(
    store: Store, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = store.version_path(make_version(store).dna)
    monkeypatch.setitem(sys.modules, "model_signing", None)  # import now fails
    assert verify_version(version).ok
    with pytest.raises(CertmodelError, match="needs the model-signing package"):
        sign_version(version, keys[0])


# --- CLI ------------------------------------------------------------------------------------


def test_cli_sign_then_verify_with_public_key(
    store: Store, keys: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    dna = make_version(store).dna
    root = ["--root", str(store.root)]
    code, out, _ = run(capsys, "sign", dna, "--key", str(keys[0]), *root)
    assert code == ExitCode.OK and out.startswith(f"signed  {dna}")
    assert run(capsys, "verify", dna, "--public-key", str(keys[1]), *root)[:2] == (
        0,
        f"OK      {dna}\n",
    )
    edit_manifest_metrics(store.version_path(dna), keys)
    assert run(capsys, "verify", dna, *root)[0] == ExitCode.OK  # unsigned check is fooled
    code, out, _ = run(capsys, "verify", dna, "--public-key", str(keys[1]), *root)
    assert code == ExitCode.FAILED
    assert f"FAILED  {dna}: " in out and "certified.json: sha256 differs" in out
    code, out, _ = run(capsys, "verify", "--all", "--json", "--public-key", str(keys[1]), *root)
    (report,) = json.loads(out)
    assert code == ExitCode.FAILED and report["problems"][0]["kind"] == "signature"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            tamper,
            id=tamper.__name__,
            marks=pytest.mark.reliability(
                "signing",
                f"local `promote --public-key` of a version: {SCENARIOS[tamper.__name__]}",
                "exit 4 with one `refusing DNA: ...` line; CURRENT and its revision unchanged",
            ),
        )
        for tamper in (remove_signature, edit_manifest_metrics, resign_with_other_key,
                       flip_weights_byte)
    ],
)  # fmt: skip
def test_promote_with_public_key_refuses_unsigned_and_tampered_versions(
    store: Store,
    keys: KeyPair,
    other_keys: KeyPair,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Path, KeyPair], None],
) -> None:
    root = ["--root", str(store.root)]
    pub = ["--public-key", str(keys[1])]
    good = signed_version(store, keys, seed=1).name
    bad = signed_version(store, keys, seed=2)
    assert run(capsys, "promote", good, *pub, *root)[0] == ExitCode.OK
    tamper(bad, other_keys)
    code, _, err = run(capsys, "promote", bad.name, *pub, *root)
    assert code == ExitCode.REFUSED
    assert err.startswith(f"certmodel: error: refusing {bad.name}: ") and err.count("\n") == 1
    _, out, _ = run(capsys, "current", "--json", *root)
    assert json.loads(out)["target"]["dna"] == good
    assert json.loads(out)["revision"] == 1
