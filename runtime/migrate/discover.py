"""Scanning a legacy model tree into typed candidates; nothing is written, nothing is loaded.

Legacy stores grew by hand: ``base_models/<name>/``, adapter output folders anywhere, merged
models beside them and a ``CURRENT`` symlink. A folder is classified by the files in it
(``adapter_config.json`` -> adapter; ``config.json`` + weights -> merged model), and the files a
migration would carry over are digested here, once, so that planning is pure. What is wrong
with a candidate is recorded on it rather than raised: one bad folder must not hide the others.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from certmodel.runtime.format.digest import FileEntry, content_digest, file_sha256
from certmodel.runtime.format.dna import Kind
from certmodel.runtime.format.manifest import ALLOWED_SUFFIXES
from certmodel.runtime.format.verify import check_safetensors_header
from certmodel.runtime.training.merge import TOKENIZER_FILES

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
MERGED_FILES = frozenset({"config.json", "generation_config.json", "model.safetensors.index.json"})
"""Besides ``*.safetensors``, what a merged model folder contributes to ``model/``."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
LEGACY_POINTER = "CURRENT"
BASE_MODELS = "base_models"
BASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""The names a CertifiedModel accepts as spec.baseModel."""

WeightsFormat = Literal["safetensors", "pickle", "none"]
Shape = tuple[object, ...]
"""A model's architecture as config.json states it: same shape, same kind of model."""


@dataclass(frozen=True)
class BaseCandidate:
    """A legacy ``base_models/<name>/`` folder and the files it would be installed with."""

    name: str
    path: Path
    files: tuple[FileEntry, ...]
    ignored: tuple[str, ...]
    problem: str | None = None
    shape: Shape | None = None

    @property
    def digest(self) -> str:
        """The content digest the installed copy will have (same paths, same bytes)."""
        return content_digest(self.files)

    @property
    def has_tokenizer(self) -> bool:
        return any(f.path in TOKENIZER_FILES for f in self.files)


@dataclass(frozen=True)
class ModelCandidate:
    """A legacy adapter or merged-model folder."""

    kind: Kind
    path: Path
    rel: str
    files: tuple[FileEntry, ...]
    """The files carried over, relative to the folder (config, weights, tokenizer)."""
    weights: WeightsFormat
    base_hint: str | None
    """The base named by the folder's config, as written (a path or a hub id)."""
    config: dict[str, Any]
    ignored: tuple[str, ...]
    problem: str | None = None

    @property
    def source_digest(self) -> str:
        """Content digest of the carried files: equal content in two folders -> one version."""
        return content_digest(self.files)

    @property
    def shape(self) -> Shape | None:
        return architecture(self.config) if self.kind == "merged" else None

    @property
    def tokenizer_files(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files if f.path in TOKENIZER_FILES)


@dataclass(frozen=True)
class LegacyPointer:
    """The old ``CURRENT`` (a symlink, or a file naming a folder) and the folder it names."""

    path: Path
    target: Path | None
    problem: str | None = None


@dataclass(frozen=True)
class LegacyTree:
    root: Path
    bases: tuple[BaseCandidate, ...]
    models: tuple[ModelCandidate, ...]
    pointer: LegacyPointer | None


def discover(legacy: Path, *, exclude: Sequence[str] = (), skip: Sequence[Path] = ()) -> LegacyTree:
    """Scan ``legacy``. ``exclude`` holds glob patterns of legacy-relative folder paths;
    ``skip`` holds folders never to look into (the store root, when it lies inside)."""
    root = legacy.resolve()
    skipped = {p.resolve() for p in skip}
    exclude = [pattern.rstrip("/") for pattern in exclude]
    return LegacyTree(
        root=root,
        bases=tuple(_discover_bases(root / BASE_MODELS, exclude)),
        models=tuple(_discover_models(root, exclude, skipped)),
        pointer=_discover_pointer(root),
    )


def _discover_bases(folder: Path, exclude: Sequence[str]) -> list[BaseCandidate]:
    if not folder.is_dir():
        return []
    return [
        _base(p)
        for p in sorted(folder.iterdir())
        if p.is_dir() and _visible(p.name) and not _excluded(f"{BASE_MODELS}/{p.name}", exclude)
    ]


def _base(path: Path) -> BaseCandidate:
    rels = _tree_files(path)
    keep = [r for r in rels if PurePosixPath(r).suffix in ALLOWED_SUFFIXES]
    ignored = tuple(r for r in rels if r not in keep)
    files = tuple(_entry(path, r) for r in keep)
    if BASE_NAME.match(path.name):
        problem = _weights_problem(path, keep, ignored)
    else:
        problem = f"{path}: {path.name!r} is not a usable base model name"
    shape = architecture(_read_config(path / "config.json")[0])
    return BaseCandidate(path.name, path, files, ignored, problem, shape)


def _weights_problem(path: Path, keep: list[str], ignored: tuple[str, ...]) -> str | None:
    weights = [r for r in keep if r.endswith(".safetensors")]
    if not weights:
        pickles = [r for r in ignored if r.endswith(PICKLE_SUFFIXES)]
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
        return (
            f"{path} has {what}; base models are migrated only with .safetensors weights"
            " (convert it first, e.g. with save_pretrained(safe_serialization=True))"
        )
    for rel in weights:
        if why := check_safetensors_header(path / rel):
            return f"{path / rel}: {why}"
    return None


def _discover_models(
    root: Path, exclude: Sequence[str], skipped: set[Path]
) -> list[ModelCandidate]:
    found: list[ModelCandidate] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        dirnames[:] = sorted(
            d for d in dirnames if _descend(here / d, root, exclude, skipped) and _visible(d)
        )
        candidate = _classify(here, rel, filenames, dirnames)
        if candidate is not None:
            found.append(candidate)
            dirnames[:] = []  # a model folder's sub-folders (checkpoints) are not versions
    return found


def _descend(path: Path, root: Path, exclude: Sequence[str], skipped: set[Path]) -> bool:
    rel = path.relative_to(root).as_posix()
    if path.is_symlink() or rel == BASE_MODELS or path.resolve() in skipped:
        return False
    return not _excluded(rel, exclude)


def _excluded(rel: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in exclude)


def _classify(
    folder: Path, rel: str, filenames: list[str], subdirs: list[str]
) -> ModelCandidate | None:
    names = {n for n in filenames if (folder / n).is_file()}
    if ADAPTER_CONFIG in names:
        weights: WeightsFormat = (
            "safetensors"
            if ADAPTER_WEIGHTS in names
            else "pickle"
            if ADAPTER_PICKLE in names
            else "none"
        )
        carried = [ADAPTER_CONFIG, *_weight_names(weights)]
        return _model(folder, rel, "adapter", carried, names, subdirs, weights)
    has_weights = any(n.endswith(".safetensors") for n in names)
    pickled = any(n.startswith("pytorch_model") and n.endswith(".bin") for n in names)
    if "config.json" in names and (has_weights or pickled):
        carried = sorted(n for n in names if n in MERGED_FILES or n.endswith(".safetensors"))
        weights = "safetensors" if has_weights else "pickle"
        return _model(folder, rel, "merged", carried, names, subdirs, weights)
    return None


def _weight_names(weights: WeightsFormat) -> list[str]:
    return {"safetensors": [ADAPTER_WEIGHTS], "pickle": [ADAPTER_PICKLE], "none": []}[weights]


def _model(
    folder: Path,
    rel: str,
    kind: Kind,
    carried: list[str],
    names: set[str],
    subdirs: list[str],
    weights: WeightsFormat,
) -> ModelCandidate:
    carried = sorted({*carried, *(n for n in TOKENIZER_FILES if n in names)})
    ignored = tuple(sorted(names - set(carried)) + [f"{d}/" for d in subdirs])
    config_name = ADAPTER_CONFIG if kind == "adapter" else "config.json"
    config, problem = _read_config(folder / config_name)
    if problem is None:
        problem = _files_problem(folder, carried, weights)
    hint_key = "base_model_name_or_path" if kind == "adapter" else "_name_or_path"
    hint = config.get(hint_key)
    return ModelCandidate(
        kind=kind,
        path=folder,
        rel=rel or ".",
        files=tuple(_entry(folder, name) for name in carried),
        weights=weights,
        base_hint=hint if isinstance(hint, str) and hint else None,
        config=config,
        ignored=ignored,
        problem=problem,
    )


def _read_config(path: Path) -> tuple[dict[str, Any], str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"{path}: not readable JSON ({exc})"
    if not isinstance(data, dict):
        return {}, f"{path}: not a JSON object"
    return data, None


def _files_problem(folder: Path, carried: list[str], weights: WeightsFormat) -> str | None:
    if weights == "none":
        return f"{folder}: no adapter weights ({ADAPTER_WEIGHTS} or {ADAPTER_PICKLE})"
    for name in carried:
        if name.endswith(".safetensors") and (why := check_safetensors_header(folder / name)):
            return f"{folder / name}: {why}"
    return None


def _discover_pointer(root: Path) -> LegacyPointer | None:
    path = root / LEGACY_POINTER
    if path.is_symlink():
        written = os.readlink(path)
    elif path.is_file():  # a small file naming the live folder
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("{"):
            return None  # already a certified pointer document (a migration in place)
        written = text.splitlines()[0].strip() if text else ""
    else:
        return None
    target = Path(written) if os.path.isabs(written) else root / written
    if not written or not target.is_dir():
        return LegacyPointer(path, None, f"{path} -> {written or '(empty)'}: target does not exist")
    return LegacyPointer(path, target.resolve())


def architecture(config: dict[str, Any]) -> Shape | None:
    """(model_type, hidden size, layers, vocabulary) from a config.json, None when unknown."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    shape = tuple(config.get(k) for k in keys)
    return shape if shape[0] is not None else None


def match_base(hint: str, names: Sequence[str]) -> str | None:
    """The base whose name is the last path component of ``hint`` (exactly, else ignoring
    case): legacy configs hold absolute paths of old machines or hub ids, never our layout."""
    last = PurePosixPath(hint.replace("\\", "/").rstrip("/")).name
    if last in names:
        return last
    folded = [n for n in names if n.casefold() == last.casefold()]
    return folded[0] if len(folded) == 1 else None


def _tree_files(root: Path) -> list[str]:
    """Relative paths of the files under ``root`` (links followed: copies become real files),
    hidden entries left out (caches, lock files)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if _visible(d)]
        base = Path(dirpath)
        for name in filenames:
            if _visible(name) and (base / name).is_file():
                found.append((base / name).relative_to(root).as_posix())
    return sorted(found)


def _entry(root: Path, rel: str) -> FileEntry:
    path = root / rel
    return FileEntry(path=rel, sha256=file_sha256(path), size=path.stat().st_size)


def _visible(name: str) -> bool:
    return not name.startswith(".")
