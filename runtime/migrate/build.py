"""Assembling one migrated version's folder from a legacy folder (``adapter/`` or ``model/``,
``tokenizer/``).

Every copied byte is re-hashed against the digest discovery recorded -- the digest the DNA was
computed from -- so a legacy file changing under our feet fails that version instead of
certifying content its DNA does not describe. The adapter config gets the store-relative base
path, as trained versions have it; a pickle adapter is converted (only when the plan allowed it).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certmodel.runtime.errors import RefusedError
from certmodel.runtime.format.digest import file_sha256
from certmodel.runtime.format.store import Store
from certmodel.runtime.migrate.discover import (
    ADAPTER_CONFIG,
    ADAPTER_PICKLE,
    ADAPTER_WEIGHTS,
    ModelCandidate,
)
from certmodel.runtime.training.merge import TOKENIZER_FILES


def build_version(store: Store, model: ModelCandidate, base: str, work: Path) -> bool:
    """Lay the version out under ``work``; return whether a pickle was converted."""
    weights_dir = work / ("adapter" if model.kind == "adapter" else "model")
    converted = False
    for entry in model.files:
        source = model.path / entry.path
        if entry.path in TOKENIZER_FILES:
            copy_checked(source, work / "tokenizer" / entry.path, entry.sha256)
        elif model.kind == "adapter" and entry.path == ADAPTER_CONFIG:
            _write_adapter_config(model, base, weights_dir / ADAPTER_CONFIG)
        elif entry.path == ADAPTER_PICKLE:
            from certmodel.runtime.migrate.convert import convert_pickle_adapter

            _check_unchanged(source, entry.sha256)
            convert_pickle_adapter(source, weights_dir / ADAPTER_WEIGHTS)
            converted = True
        else:
            copy_checked(source, weights_dir / entry.path, entry.sha256)
    if not model.tokenizer_files:
        for name in TOKENIZER_FILES:
            if (source := store.base_models_dir / base / name).is_file():
                (work / "tokenizer").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, work / "tokenizer" / name)
    return converted


def _write_adapter_config(model: ModelCandidate, base: str, dest: Path) -> None:
    """The adapter config with ``base_model_name_or_path`` set to the store-relative base path,
    as trained versions have it: the legacy value names a machine that is gone (the original
    is kept in the manifest's provenance)."""
    _check_unchanged(model.path / ADAPTER_CONFIG, _sha(model, ADAPTER_CONFIG))
    config = {**model.config, "base_model_name_or_path": f"base_models/{base}"}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def provenance(model: ModelCandidate, converted: bool) -> dict[str, Any]:
    return {
        "legacy_path": str(model.path),
        "migrated_at": datetime.now(UTC).isoformat(),
        "original_files": [f.path for f in model.files],
        "not_carried": list(model.ignored),
        "source_digest": model.source_digest,
        "original_base": model.base_hint,
        "pickle_converted": converted,
    }


def copy_checked(source: Path, dest: Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    if file_sha256(dest) != sha256:
        raise RefusedError(f"{source} changed during the migration; run it again")


def _check_unchanged(source: Path, sha256: str) -> None:
    if file_sha256(source) != sha256:
        raise RefusedError(f"{source} changed during the migration; run it again")


def _sha(model: ModelCandidate, rel: str) -> str:
    return next(f.sha256 for f in model.files if f.path == rel)
