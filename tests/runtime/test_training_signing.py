"""`certmodel train --signing-key`: the trainer signs the version at publication (it appears
under certified/ already signed), the key stays out of the recipe and the DNA, and a key that
cannot sign fails the run before anything is trained."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from signingkit import write_key_pair

from certmodel.runtime.format.manifest import SIGNATURE_NAME
from certmodel.runtime.format.signing import verify_signature
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version

pytestmark = pytest.mark.torch

ArgsFactory = Callable[..., list[str]]
FAST = ("--max-steps", "2")


def run_json(cli: Callable[[list[str]], int], argv: list[str]) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        code = cli(argv)
    return code, json.loads(out.getvalue()) if out.getvalue().strip() else {}


def test_train_with_a_signing_key_publishes_a_signed_version(
    cli: Callable[[list[str]], int],
    train_store: Store,
    dataset: Path,
    train_args: ArgsFactory,
    tmp_path: Path,
) -> None:
    private, public = write_key_pair(tmp_path / "keys", "signer")
    _, planned = run_json(cli, train_args(train_store, dataset, *FAST, "--dry-run"))
    signing = ["--signing-key", str(private)]
    _, keyed = run_json(cli, train_args(train_store, dataset, *FAST, *signing, "--dry-run"))
    assert keyed == planned  # the key is in neither the recipe nor the DNA

    code, result = run_json(cli, train_args(train_store, dataset, *FAST, *signing))
    assert code == 0 and result["status"] == "trained" and result["dna"] == planned["dna"]
    version = Path(str(result["path"]))
    assert (version / SIGNATURE_NAME).is_file()
    assert verify_version(version).ok  # the signature is beside the manifest, not in it
    verify_signature(version, public)  # raises if it does not verify
    assert str(private) not in (version / "certified.json").read_text()


@pytest.mark.reliability(
    "signing",
    "`certmodel train --signing-key` given a missing file, or a public key instead of a"
    " private one",
    "exit 2 (bad input: the Job fails at once, no retries) naming the key, before any"
    " training; nothing published, no staging left",
)
def test_a_key_that_cannot_sign_fails_before_training(
    cli: Callable[[list[str]], int],
    train_store: Store,
    dataset: Path,
    train_args: ArgsFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, public = write_key_pair(tmp_path / "keys", "signer")
    for key, says in [
        (tmp_path / "keys" / "absent.pem", "cannot read the private key file"),
        (public, "not a PEM private key"),
    ]:
        code = cli(train_args(train_store, dataset, *FAST, "--signing-key", str(key)))
        err = capsys.readouterr().err
        assert code == 2 and str(key) in err and says in err, err
    assert not train_store.certified_dir.exists() or not any(train_store.certified_dir.iterdir())
    staging = train_store.root / ".staging"
    assert not staging.exists() or not any(staging.iterdir())
