"""The ``certified.json`` manifest: a typed, versioned record of one certified version.

The manifest names every file with its digest and size, the base model the version needs, the
recipe that produced it and the metrics of its training. It is the only source of truth about
a version; verification compares the folder against it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from certmodel import __version__
from certmodel.runtime.errors import VerificationError
from certmodel.runtime.format import FORMAT_VERSION
from certmodel.runtime.format.digest import FileEntry
from certmodel.runtime.format.dna import Kind, Recipe

MANIFEST_NAME = "certified.json"
SIGNATURE_NAME = "certified.sig"
"""Detached signature (model-signing bundle) beside the manifest; not part of the file list."""
METADATA_FILES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})

ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".txt", ".jinja", ".model"})
"""File types a version may hold: weights as safetensors, metadata as JSON, tokenizer text.

Pickle-based formats (.bin, .pt, .pth, .pkl, .ckpt) and code (.py) are never accepted: loading
them can execute arbitrary code.
"""


class BaseModelInfo(BaseModel):
    """The base model a version depends on (for adapters) or was derived from (merged)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str = Field(description="Path relative to the store root, e.g. base_models/<name>.")
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class Metrics(BaseModel):
    """Training metrics. Open-ended: trainers may add fields; these are the common ones."""

    model_config = ConfigDict(extra="allow")

    train_loss: float | None = None
    eval_loss: float | None = None
    tokens: int | None = None
    steps: int | None = None
    duration_s: float | None = None


class Manifest(BaseModel):
    """The contents of ``certified.json``."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    dna: str
    kind: Kind
    base_model: BaseModelInfo
    recipe: Recipe
    metrics: Metrics = Field(default_factory=Metrics)
    files: list[FileEntry]
    content_digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tool_version: str = __version__
    extra: dict[str, Any] = Field(default_factory=dict, description="Free-form provenance.")

    def to_json(self) -> bytes:
        """Stable, human-readable serialisation (sorted files, indented)."""
        return (self.model_dump_json(indent=2) + "\n").encode("utf-8")


def read_manifest(version_dir: Path) -> Manifest:
    """Parse a version's manifest, raising :class:`VerificationError` naming the file."""
    path = version_dir / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VerificationError(f"{path}: manifest missing") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise VerificationError(
            f"{path}: format_version {data['format_version']} is newer than this tool supports"
            f" ({FORMAT_VERSION}); upgrade certmodel"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise VerificationError(f"{path}: invalid manifest at {where}: {first['msg']}") from None
