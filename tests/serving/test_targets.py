"""Admission of pointer targets (what the server refuses, and how it says so). Torch-free."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from factories import make_version

from certmodel.runtime.format.manifest import Manifest
from certmodel.runtime.format.pointer import PointerTarget
from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.targets import TargetRefusedError, check_base, check_target

WEIGHTS = "adapter/adapter_model.safetensors"


def flip_weights(store: Store, dna: str) -> None:
    path = store.version_path(dna) / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def target_of(manifest: Manifest, **changes: Any) -> PointerTarget:
    return PointerTarget.from_manifest(manifest).model_copy(update=changes)


GHOST = "tiny-base-lora-0123456789ab"
CASES: list[tuple[str, Callable[[Store, Manifest], PointerTarget], str | None, str]] = [
    ("good", lambda s, m: target_of(m), None, ""),
    ("missing", lambda s, m: target_of(m, dna=GHOST, path=f"certified/{GHOST}"), None, "missing"),
    ("not a dna", lambda s, m: target_of(m, dna="../x", path="certified/../x"), None,
     "invalid-target"),
    ("other path", lambda s, m: target_of(m, path="elsewhere/x"), None, "invalid-target"),
    ("corrupt", lambda s, m: (flip_weights(s, m.dna), target_of(m))[1], None, "corrupt"),
    ("digest", lambda s, m: target_of(m, content_digest="sha256:" + "1" * 64), None,
     "digest-mismatch"),
    ("kind", lambda s, m: target_of(m, kind="merged"), None, "invalid-target"),
    ("base name", lambda s, m: target_of(m, base_model="other"), None, "wrong-base"),
    ("base pin", lambda s, m: target_of(m), "other-base", "wrong-base"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "pin", "code"), CASES, ids=[c[0] for c in CASES])
def test_check_target(
    store: Store,
    case: str,
    make: Callable[[Store, Manifest], PointerTarget],
    pin: str | None,
    code: str,
) -> None:
    manifest = make_version(store)
    target = make(store, manifest)
    if not code:
        assert check_target(store, target, base_model=pin) == manifest
        return
    with pytest.raises(TargetRefusedError) as refused:
        check_target(store, target, base_model=pin)
    assert refused.value.code == code


def test_corrupt_names_the_file(store: Store) -> None:
    manifest = make_version(store)
    flip_weights(store, manifest.dna)
    with pytest.raises(TargetRefusedError, match=WEIGHTS):
        check_target(store, target_of(manifest), base_model=None)


def test_check_base_accepts_the_base_trained_on(store: Store) -> None:
    manifest = make_version(store)
    assert check_base(store, manifest) == (store.base_models_dir / "tiny-base").resolve()


def test_check_base_refuses_a_changed_base(store: Store) -> None:
    manifest = make_version(store)
    (store.base_models_dir / "tiny-base" / "config.json").write_text("{}")
    with pytest.raises(TargetRefusedError, match="hashes to") as refused:
        check_base(store, manifest)
    assert refused.value.code == "wrong-base"


def test_check_base_refuses_a_path_outside_base_models(store: Store) -> None:
    manifest = make_version(store)
    escaped = manifest.model_copy(
        update={"base_model": manifest.base_model.model_copy(update={"path": "certified"})}
    )
    with pytest.raises(TargetRefusedError, match="not under") as refused:
        check_base(store, escaped)
    assert refused.value.code == "wrong-base"
