"""From a ModelTraining spec to the trainer's config file and the version's DNA.

The operator plans exactly what the trainer will plan (the same torch-free
``certmodel.runtime.training.plan``), but against its own view of the models volume; the Job
gets the same config with the volume's path inside the pod. Digests of a multi-GB base model are
expensive, so a plan is cached while the spec and the files' sizes and mtimes are unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from certmodel.operator.api.modeltraining import ModelTrainingSpec
from certmodel.operator.decisions.manifests import MODELS_MOUNT
from certmodel.operator.reconcile import Resolved, Resolver
from certmodel.runtime.errors import CertmodelError, NotFoundError, UsageError
from certmodel.runtime.training.config import TrainConfig, parse_config
from certmodel.runtime.training.plan import plan_training


def train_config(spec: ModelTrainingSpec, *, root: str) -> TrainConfig:
    """The trainer's config for ``spec`` with the models volume at ``root``."""
    hp = spec.hyperparameters
    lora = spec.method
    return parse_config(
        {
            "root": root,
            "base": spec.base_model,
            "data": {
                "path": f"{root.rstrip('/')}/{spec.dataset.path}",
                "format": spec.dataset.format,
                "text_field": spec.dataset.text_field,
            },
            "lora": {
                "r": lora.r,
                "alpha": lora.alpha,
                "dropout": lora.dropout,
                "target_modules": lora.target_modules,
            },
            "hyperparameters": hp.model_dump(exclude_none=True),
            "merge": spec.output.merge,
            "progress": "json",
            "confine_paths": True,  # the trainer checks again: a link can change after planning
        }
    )


OUTSIDE_VOLUME = "PathOutsideVolume"
"""Status reason of a spec whose dataset or base model path leaves the models volume."""


def make_resolver(volume_root: Path, *, pod_root: str = MODELS_MOUNT) -> Resolver:
    """A resolver that plans against ``volume_root`` (the operator's mount of the volume)."""
    cache: dict[str, tuple[tuple[tuple[str, int, int], ...], Resolved]] = {}

    def resolve(spec: ModelTrainingSpec) -> Resolved:
        try:
            check_confined(volume_root, spec)  # first, and every time: links can change
        except CertmodelError as exc:
            return Resolved(None, "", (OUTSIDE_VOLUME, str(exc)))
        key = spec.model_dump_json()
        stamp = _stamp(volume_root, spec)
        hit = cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        try:
            pod_config = train_config(spec, root=pod_root)
            plan = plan_training(train_config(spec, root=str(volume_root)))
        except NotFoundError as exc:
            return Resolved(None, "", ("InputNotFound", str(exc)))
        except CertmodelError as exc:
            return Resolved(None, "", ("InvalidInput", str(exc)))
        result = Resolved(plan.dna, json.dumps(pod_config.model_dump(mode="json"), indent=2))
        cache[key] = (stamp, result)
        return result

    return resolve


def confined(root: Path, rel: str, *, field: str) -> Path:
    """``root/rel`` with symlinks resolved; :class:`UsageError` naming ``field`` if it leaves
    ``root``.

    The CRD schema refuses absolute paths and '..' segments already; this is the check that a
    schema cannot make: a symlink on the volume that points outside it (``/etc/passwd``, the
    operator's service-account token) must not become training data or a base model. The
    message names the spec field and the path as written, never what the link points at.
    """
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or ".." in parts:
        raise UsageError(f"{field}: {rel!r} must be a relative path inside the models volume")
    real_root = root.resolve()
    target = (root / rel).resolve()
    if target == real_root or not target.is_relative_to(real_root):
        raise UsageError(
            f"{field}: {rel!r} resolves outside the models volume (through a symbolic link);"
            " refused"
        )
    return target


def check_confined(root: Path, spec: ModelTrainingSpec) -> None:
    """Every path a training spec names stays inside the models volume ``root``."""
    confined(root, spec.dataset.path, field="spec.dataset.path")
    confined(root, f"base_models/{spec.base_model}", field="spec.baseModel")


def _stamp(root: Path, spec: ModelTrainingSpec) -> tuple[tuple[str, int, int], ...]:
    """Sizes and mtimes of the inputs: a change forces a new plan (and new digests)."""
    paths = [root / spec.dataset.path]
    base = root / "base_models" / spec.base_model
    if base.is_dir():
        paths.extend(sorted(p for p in base.iterdir() if p.is_file()))
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((str(path), -1, -1))
            continue
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)
