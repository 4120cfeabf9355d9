"""Signing, unit by unit: the training Job mounts the signing Secret; the models volume reports
``signed`` only for a signature that verifies with the operator's public key (cached, and redone
when a file or the key changes); the line's decisions refuse with a message that says whether
the signature is missing, invalid or could not be checked; the server's admission check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from signingkit import KeyPair, write_key_pair

from certmodel.operator.api.certifiedmodel import CertifiedModelSpec, CertifiedModelStatus
from certmodel.operator.api.modeltraining import ModelTrainingSpec
from certmodel.operator.decisions.line import (
    NO_PUBLIC_KEY,
    LineSnapshot,
    PointerState,
    VersionFacts,
    decide_line,
)
from certmodel.operator.decisions.manifests import OperatorConfig, training_job
from certmodel.operator.volume import ModelsVolume
from certmodel.runtime.errors import UsageError
from certmodel.runtime.format.manifest import MANIFEST_NAME, SIGNATURE_NAME
from certmodel.runtime.format.pointer import PointerTarget
from certmodel.runtime.format.signing import check_key, sign_version
from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.targets import TargetRefusedError, check_target

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
A, B = "base-lora-aaaaaaaaaaaa", "base-lora-bbbbbbbbbbbb"
SPEC = ModelTrainingSpec.model_validate(
    {
        "certifiedModel": "chat",
        "baseModel": "tiny",
        "dataset": {"path": "d.jsonl"},
        "resources": {"memory": "2Gi"},
    }
)


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return write_key_pair(tmp_path / "keys", "signer")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


def job(config: OperatorConfig, gpus: int = 0) -> dict[str, Any]:
    spec = SPEC.model_copy(update={"resources": SPEC.resources.model_copy(update={"gpus": gpus})})
    return training_job(
        name="mt", uid="u", namespace="ns", dna="tiny-lora-0123456789ab", spec=spec, config=config
    )


# --- the training Job ----------------------------------------------------------------------


@pytest.mark.parametrize("gpus", [0, 2])
def test_the_job_mounts_the_signing_secret_read_only_and_passes_its_key(gpus: int) -> None:
    pod = job(OperatorConfig(signing_key_secret="signing"), gpus)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"][-2:] == ["--signing-key", "/var/run/certmodel/signing/private.pem"]
    assert {"name": "signing-key", "mountPath": "/var/run/certmodel/signing", "readOnly": True} in (
        c["volumeMounts"]
    )
    assert {"name": "signing-key", "secret": {"secretName": "signing", "defaultMode": 0o400}} in (
        pod["volumes"]
    )
    assert pod["automountServiceAccountToken"] is False  # the key is a file, never an API read


def test_without_a_signing_secret_the_job_has_no_key() -> None:
    pod = job(OperatorConfig())["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert "--signing-key" not in c["command"]
    assert all("secret" not in v for v in pod["volumes"])
    assert [m["name"] for m in c["volumeMounts"]] == ["models", "config", "tmp"]


# --- the line's decisions ------------------------------------------------------------------


def facts(dna: str, **kw: Any) -> VersionFacts:
    defaults: dict[str, Any] = {
        "exists": True,
        "verified": True,
        "base_model": "base",
        "kind": "adapter",
        "created": NOW - timedelta(hours=1 if dna == B else 2),
        "eval_loss": 1.0,
        "content_digest": "sha256:" + "0" * 64,
        "promote_requested": True,
        "signed": True,
    }
    return VersionFacts(dna=dna, **{**defaults, **kw})


def decide(versions: list[VersionFacts], **promotion: Any) -> tuple[Any, tuple[str, str, str]]:
    spec = CertifiedModelSpec.model_validate(
        {"baseModel": "base", "promotion": {"gates": {"requireSignature": True}, **promotion}}
    )
    snap = LineSnapshot(
        name="line",
        generation=1,
        spec=spec,
        old_status=CertifiedModelStatus(),
        versions=versions,
        pointer=PointerState(exists=False),
        serving=[],
        now=NOW,
    )
    plan = decide_line(snap)
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    return plan, (ready.status, ready.reason, ready.message)


@pytest.mark.parametrize(
    ("signed", "problem", "says"),
    [
        (False, "not signed (certified.sig missing)", "not signed (certified.sig missing)"),
        (False, "certified.json: sha256 differs from the signed one (tampered)", "tampered"),
        (None, "", NO_PUBLIC_KEY),
    ],
    ids=["missing", "invalid", "no-public-key"],
)
def test_a_manual_target_without_a_valid_signature_is_refused_saying_why(
    signed: bool | None, problem: str, says: str
) -> None:
    plan, (status, reason, message) = decide(
        [facts(A, signed=signed, signature_problem=problem)], current=A
    )
    assert plan.pointer is None
    assert (status, reason) == ("False", "TargetUnsigned")
    assert message.startswith(f"version {A} has no valid signature: ") and says in message


def test_a_manual_target_with_a_verified_signature_is_promoted() -> None:
    plan, (status, reason, _) = decide([facts(A)], current=A)
    assert plan.pointer is not None and plan.pointer.dna == A
    assert (status, reason) == ("True", "Ready")


def test_latest_takes_the_newest_signed_version_and_skips_an_unsigned_newer_one() -> None:
    versions = [facts(A), facts(B, signed=False, signature_problem="not signed")]
    plan, (_, reason, _) = decide(versions, policy="Latest")
    assert plan.pointer is not None and plan.pointer.dna == A and reason == "Ready"


def test_latest_says_when_only_the_signature_gate_holds_a_version_back() -> None:
    versions = [facts(A, signed=False, signature_problem="not signed (certified.sig missing)")]
    plan, (status, reason, message) = decide(versions, policy="Latest")
    assert plan.pointer is None
    assert (status, reason) == ("False", "TargetUnsigned") and A in message
    # Held back by another gate (a corrupt version): nothing to say about signatures.
    _, (_, reason, _) = decide([facts(A, verified=False, signed=None)], policy="Latest")
    assert reason == "NoTarget"


# --- the models volume ---------------------------------------------------------------------


def test_the_volume_verifies_signatures_with_the_public_key_and_caches_them(
    store: Store, keys: KeyPair, tmp_path: Path
) -> None:
    a = make_version(store, seed=1).dna
    sign_version(store.version_path(a), keys[0])
    volume = ModelsVolume(store.root, public_key=keys[1])
    first = volume.facts(a, training=None, promote_requested=False)
    assert (first.verified, first.signed, first.signature_problem) == (True, True, "")
    assert volume.verified(a) is volume.verified(a)  # cached while nothing changes

    # A garbled signature is seen at once (the file changed), and named without the volume path.
    (store.version_path(a) / SIGNATURE_NAME).write_text("{}")
    bad = volume.facts(a, training=None, promote_requested=False)
    assert bad.verified and bad.signed is False
    assert bad.signature_problem == "certified.sig: not a model-signing signature bundle"

    # Re-signed with another key: the operator's key does not verify it.
    other = write_key_pair(tmp_path / "keys", "other")
    sign_version(store.version_path(a), other[0])
    wrong = volume.facts(a, training=None, promote_requested=False)
    assert wrong.signed is False and "does not verify with public key" in wrong.signature_problem

    # The key file is rotated in place to the other key: cached results are redone.
    keys[1].write_bytes(other[1].read_bytes())
    assert volume.facts(a, training=None, promote_requested=False).signed is True


def test_the_volume_reports_missing_signatures_and_never_trusts_a_file_without_a_key(
    store: Store, keys: KeyPair
) -> None:
    a = make_version(store, seed=1).dna
    with_key = ModelsVolume(store.root, public_key=keys[1])
    missing = with_key.facts(a, training=None, promote_requested=False)
    assert (missing.signed, missing.signature_problem) == (
        False,
        "not signed (certified.sig missing)",
    )

    sign_version(store.version_path(a), keys[0])
    no_key = ModelsVolume(store.root).facts(a, training=None, promote_requested=False)
    assert no_key.verified and no_key.signed is None  # certified.sig exists, proves nothing

    # A corrupt version is refused on its manifest; its signature is not consulted.
    manifest = json.loads((store.version_path(a) / MANIFEST_NAME).read_text())
    manifest["content_digest"] = "sha256:" + "1" * 64
    (store.version_path(a) / MANIFEST_NAME).write_text(json.dumps(manifest))
    corrupt = with_key.facts(a, training=None, promote_requested=False)
    assert not corrupt.verified and corrupt.signed is None


# --- key files and the server's admission -------------------------------------------------


def test_key_files_are_checked_before_use(keys: KeyPair, tmp_path: Path) -> None:
    check_key(keys[0], private=True)
    check_key(keys[1], private=False)
    with pytest.raises(UsageError, match="cannot read the private key file"):
        check_key(tmp_path / "nope.pem", private=True)
    with pytest.raises(UsageError, match="not a PEM public key"):
        check_key(keys[0], private=False)  # a private key where the public one belongs
    with pytest.raises(UsageError, match="not a PEM private key"):
        check_key(keys[1], private=True)
    # An EC key on a curve model-signing cannot use (secp256k1) is refused now, not after a
    # whole training run.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    k1 = ec.generate_private_key(ec.SECP256K1())
    other = tmp_path / "k1.pem"
    other.write_bytes(
        k1.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(UsageError, match="curve secp256k1"):
        check_key(other, private=True)


def test_the_server_admits_only_verified_signatures(store: Store, keys: KeyPair) -> None:
    a = make_version(store, seed=1)
    target = PointerTarget.from_manifest(a)
    # No key: no signature check (and an unsigned version is fine).
    assert check_target(store, target, base_model=None).dna == a.dna
    with pytest.raises(TargetRefusedError, match="not signed") as refused:
        check_target(store, target, base_model=None, public_key=keys[1], require_signature=True)
    assert refused.value.code == "unsigned"
    # Not required: unsigned loads, but a signature that is there must verify.
    check_target(store, target, base_model=None, public_key=keys[1])
    sign_version(store.version_path(a.dna), keys[0])
    check_target(store, target, base_model=None, public_key=keys[1], require_signature=True)
    (store.version_path(a.dna) / SIGNATURE_NAME).write_bytes(b"garbage")
    with pytest.raises(TargetRefusedError, match="not a model-signing") as refused:
        check_target(store, target, base_model=None, public_key=keys[1])
    assert refused.value.code == "bad-signature"


def test_the_operator_will_not_start_with_an_unusable_public_key(
    keys: KeyPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from certmodel.operator.main import main

    for key, says in [
        (tmp_path / "absent.pem", "cannot read the public key file"),
        (keys[0], "not a PEM public key"),
    ]:
        assert main(["--public-key", str(key)]) == 2  # before any connection is attempted
        err = capsys.readouterr().err
        assert err.startswith("certmodel-operator: error: ") and says in err, err
