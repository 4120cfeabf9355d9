"""Signed versions on the real API server: a CertifiedModel with ``requireSignature`` moves
CURRENT only to a version whose ``certified.sig`` verifies with the operator's ``--public-key``;
unsigned, foreign-key, modified and garbled versions are refused with CURRENT kept, and without
a public key nothing is trusted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from opsupport import OperatorEnv, condition, pointer_dna, ready_on
from signingkit import KeyPair, write_key_pair
from tinymodels import build_tiny_llama, corpus, write_jsonl

from certmodel.runtime.format.digest import FileEntry, content_digest, file_sha256
from certmodel.runtime.format.manifest import MANIFEST_NAME, SIGNATURE_NAME
from certmodel.runtime.format.signing import sign_version, verify_signature
from certmodel.runtime.format.store import Store

pytestmark = pytest.mark.cluster

LINE = "chat"
WEIGHTS = "adapter/adapter_model.safetensors"


def line(current: str) -> str:
    return f"""
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {{name: {LINE}}}
spec:
  baseModel: tiny-base
  promotion:
    policy: Manual
    current: {current}
    gates: {{requireSignature: true}}
"""


def signed(store: Store, key: Path, *, seed: int) -> str:
    dna = make_version(store, seed=seed).dna
    sign_version(store.version_path(dna), key)
    return dna


def refused(dna: str) -> Any:
    """Ready is False with TargetUnsigned about ``dna`` (the reason stays the same from one
    refused target to the next, so the message must name this one)."""

    def check(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return condition(obj) == ("False", "TargetUnsigned") and dna in (st.get("message") or "")

    return check


def restart_with_key(env: OperatorEnv, public_key: Path) -> None:
    env.stop_operator()
    env.start_operator("--public-key", str(public_key))


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return write_key_pair(tmp_path / "keys", "signer")


@pytest.mark.reliability(
    "signing",
    "a CertifiedModel requires a signature but the operator has no --public-key",
    "refused (TargetUnsigned, `no public key configured for signature checks`) though"
    " certified.sig exists; no pointer written; promoted once the operator has the key",
)
def test_without_a_public_key_a_signature_is_never_trusted(
    operator_env: OperatorEnv, keys: KeyPair
) -> None:
    env = operator_env
    a = signed(env.store, keys[0], seed=1)
    env.apply(line(a))
    obj = env.wait("certifiedmodels", LINE, refused(a))
    assert "no public key configured for signature checks" in obj["status"]["message"]
    assert obj["status"]["versions"][0]["verified"] is True
    assert obj["status"]["versions"][0].get("signed") is None  # not checked, not "signed"
    assert env.config_map(f"{LINE}-pointer") is None

    restart_with_key(env, keys[1])
    obj = env.wait("certifiedmodels", LINE, ready_on(a))
    assert pointer_dna(env, LINE) == a and obj["status"]["versions"][0]["signed"] is True


@pytest.mark.reliability(
    "signing",
    "requireSignature line pointed at: an unsigned version, one signed with another key, one"
    " whose certified.json was edited after signing, a consistent forgery (weights + manifest"
    " rewritten), one with a garbled certified.sig; then the live version's signature garbled",
    "each refused as TargetUnsigned naming what failed, CURRENT kept on the signed version;"
    " the live version's tampering is found on the next periodic check (cache invalidated)",
)
def test_only_versions_signed_with_the_key_become_current(
    operator_env: OperatorEnv, keys: KeyPair, tmp_path: Path
) -> None:
    env, store = operator_env, operator_env.store
    restart_with_key(env, keys[1])
    other = write_key_pair(tmp_path / "keys", "other")
    good = signed(store, keys[0], seed=1)
    env.apply(line(good))
    env.wait("certifiedmodels", LINE, ready_on(good))
    assert pointer_dna(env, LINE) == good

    unsigned = make_version(store, seed=2).dna
    foreign = signed(store, other[0], seed=3)
    edited = signed(store, keys[0], seed=4)
    manifest = json.loads((store.version_path(edited) / MANIFEST_NAME).read_text())
    manifest["metrics"]["eval_loss"] = 0.01  # better-looking metrics; the digests still match
    (store.version_path(edited) / MANIFEST_NAME).write_text(json.dumps(manifest))
    forged = signed(store, keys[0], seed=5)
    forge_weights_and_manifest(store.version_path(forged))
    garbled = signed(store, keys[0], seed=6)
    (store.version_path(garbled) / SIGNATURE_NAME).write_bytes(b"\x00not a bundle\xff")

    cases = [
        (unsigned, "not signed (certified.sig missing)"),
        (foreign, "certified.sig: does not verify with public key"),
        (edited, "certified.json: sha256 differs from the signed one"),
        (forged, f"{WEIGHTS}: sha256 differs from the signed one"),
        (garbled, "certified.sig: not a model-signing signature bundle"),
    ]
    for dna, why in cases:
        env.apply(line(dna))
        obj = env.wait("certifiedmodels", LINE, refused(dna))
        message = obj["status"]["message"]
        assert message.startswith(f"version {dna} has no valid signature: "), message
        assert why in message and f"keeping CURRENT at {good}" in message, message
        assert pointer_dna(env, LINE) == good and obj["status"]["current"] == good
        facts = {v["dna"]: v for v in obj["status"]["versions"]}
        assert facts[dna]["signed"] is False and facts[good]["signed"] is True
    assert ("TargetUnsigned", "Warning") in env.events(LINE)

    # Back to the good version; then its own signature is garbled while it is live. Nothing
    # announces a file change: the periodic check finds it because the cached result is keyed
    # on the files' sizes and mtimes.
    env.apply(line(good))
    env.wait("certifiedmodels", LINE, ready_on(good))
    (store.version_path(good) / SIGNATURE_NAME).write_bytes(b"{}")
    obj = env.wait("certifiedmodels", LINE, refused(good), timeout=90)
    assert "not a model-signing signature bundle" in obj["status"]["message"]
    assert pointer_dna(env, LINE) == good  # nothing better to serve: CURRENT stays, Ready says why


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-signing") / "tiny-llama")


TRAINING = """
apiVersion: certmodel.io/v1alpha1
kind: ModelTraining
metadata: {name: signed}
spec:
  certifiedModel: chat
  baseModel: tiny-llama
  dataset: {path: datasets/qa.jsonl}
  method: {r: 4, alpha: 8}
  hyperparameters: {maxSteps: 2, batchSize: 4, maxSeqLen: 64, seed: 7}
  resources: {cpu: "1", memory: 2Gi}
  retries: 0
  deadlineSeconds: 600
  promote: true
"""
LATEST_SIGNED = """
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {name: chat}
spec:
  baseModel: tiny-llama
  promotion: {policy: Latest, gates: {requireSignature: true}}
"""


@pytest.mark.torch
@pytest.mark.reliability(
    "signing",
    "operator with --signing-key-secret: a ModelTraining's Job runs with the Secret mounted;"
    " the line (Latest, requireSignature) waits for the version",
    "the Job mounts the Secret read-only (0400) and passes --signing-key; the published"
    " version verifies with the public key and becomes CURRENT",
)
def test_a_training_job_signs_with_the_secret_and_the_line_promotes_it(
    operator_env: OperatorEnv, keys: KeyPair, tiny_llama: Path
) -> None:
    env = operator_env
    shutil.copytree(tiny_llama, env.store.base_models_dir / "tiny-llama")
    write_jsonl(env.store.root / "datasets" / "qa.jsonl", corpus())
    env.cluster.kubectl(
        "create", "secret", "generic", "signing-key", "-n", env.namespace,
        f"--from-file=private.pem={keys[0]}",
    )  # fmt: skip
    env.stop_operator()
    env.start_operator("--signing-key-secret", "signing-key", "--public-key", str(keys[1]))
    env.apply(LATEST_SIGNED)
    env.apply(TRAINING)

    def finished(obj: dict[str, Any]) -> bool:
        phase = (obj.get("status") or {}).get("phase")
        assert phase != "Failed", obj["status"]
        return phase == "Succeeded"

    done = env.wait("modeltrainings", "signed", finished, timeout=240)
    dna = done["status"]["dna"]
    verify_signature(env.store.version_path(dna), keys[1])  # raises unless it verifies
    line = env.wait("certifiedmodels", LINE, ready_on(dna))
    assert line["status"]["versions"][0]["signed"] is True

    out = env.cluster.kubectl("get", "job", f"train-{dna}", "-n", env.namespace, "-o", "json")
    pod = json.loads(out.stdout)["spec"]["template"]["spec"]
    assert {
        "name": "signing-key",
        "secret": {"secretName": "signing-key", "defaultMode": 0o400},
    } in pod["volumes"]
    assert "--signing-key" in pod["containers"][0]["command"]


def forge_weights_and_manifest(version: Path) -> None:
    """New weights and a manifest rewritten to match them: the manifest check alone passes."""
    weights = version / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    manifest = json.loads((version / MANIFEST_NAME).read_text())
    for entry in manifest["files"]:
        if entry["path"] == WEIGHTS:
            entry["sha256"] = file_sha256(weights)
    files = [FileEntry.model_validate(e) for e in manifest["files"]]
    manifest["content_digest"] = content_digest(files)
    (version / MANIFEST_NAME).write_text(json.dumps(manifest))
