"""``certmodel serve --public-key``: the server checks ``certified.sig`` before loading. A signed
version goes live; an unsigned one, one signed with another key and one edited after signing
are refused like a corrupt version (old version kept, refusal in /v1/status and the metrics)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serving.servekit import Client, Harness, wait_for
from signingkit import write_key_pair

from certmodel.runtime.cli.main import main
from certmodel.runtime.errors import ExitCode
from certmodel.runtime.format.manifest import MANIFEST_NAME
from certmodel.runtime.format.signing import sign_version

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def refusal_of(client: Client, dna: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        refused = client.get("/v1/status")[1]["refused"]
        return next((r for r in refused if r["dna"] == dna), None)

    return check


@pytest.mark.reliability(
    "signing",
    "inference server with --public-key: the pointer names an unsigned version, one signed"
    " with another key, one whose certified.json was edited after signing",
    "each refused before loading (codes `unsigned`, `bad-signature`) in /v1/status and"
    " certmodel_refused_targets_total; the signed live version keeps answering; a version"
    " signed with the key then goes live",
)
def test_the_server_loads_only_versions_signed_with_its_key(
    harness: Harness, tmp_path: Path
) -> None:
    private, public = write_key_pair(tmp_path / "keys", "signer")
    other, _ = write_key_pair(tmp_path / "keys", "other")
    a, b, c = harness.line.adapters
    merged = harness.line.merged
    store = harness.store
    sign_version(store.version_path(a), private)
    sign_version(store.version_path(merged), other)
    sign_version(store.version_path(c), private)
    manifest = json.loads((store.version_path(c) / MANIFEST_NAME).read_text())
    manifest["metrics"]["eval_loss"] = 0.01  # passes the manifest check; not the signature
    (store.version_path(c) / MANIFEST_NAME).write_text(json.dumps(manifest))

    _, client = harness.start(public_key=public, require_signature=True)
    harness.point(a)
    wait_for("a live", lambda: client.get("/v1/status")[1]["dna"] == a)

    cases = [
        (b, "unsigned", "not signed (certified.sig missing)"),
        (merged, "bad-signature", "certified.sig: does not verify with public key"),
        (c, "bad-signature", "certified.json: sha256 differs from the signed one"),
    ]
    for dna, code, reason in cases:
        harness.point(dna)
        refusal = wait_for(f"{dna} refused", refusal_of(client, dna))
        assert refusal["code"] == code and reason in refusal["reason"], refusal
        status = client.get("/v1/status")[1]
        assert (status["dna"], status["ready"], status["converged"]) == (a, True, False)
        code_, body, _ = client.complete()
        assert (code_, body["dna"]) == (200, a)
        assert dna not in status["loaded"]
    metrics = client.get("/metrics")[1]
    assert 'certmodel_refused_targets_total{reason="unsigned"} 1.0' in metrics
    assert 'certmodel_refused_targets_total{reason="bad-signature"} 2.0' in metrics

    sign_version(store.version_path(b), private)  # signed after all: now it may go live
    harness.point(b)
    wait_for("b live", lambda: client.get("/v1/status")[1]["dna"] == b)
    assert client.complete()[1]["dna"] == b


def test_serve_refuses_bad_signature_settings_at_startup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "models")
    (tmp_path / "models").mkdir()
    private, _ = write_key_pair(tmp_path / "keys", "signer")
    for extra, says in [
        (["--require-signature"], "needs a public key (--public-key)"),
        (["--public-key", str(tmp_path / "absent.pem")], "cannot read the public key file"),
        (["--public-key", str(private)], "not a PEM public key"),
    ]:
        code = main(["serve", "--root", root, "--port", "0", *extra])
        err = capsys.readouterr().err
        assert code == ExitCode.USAGE and says in err, (extra, err)
