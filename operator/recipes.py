"""From a ModelTraining spec to the trainer's config file and the version's DNA.

The operator plans exactly what the trainer will plan (the same torch-free
``certmodel.runtime.training.plan``), but against its own view of the models volume; the Job
gets the same config with the volume's path inside the pod. Digests of a multi-GB base model are
expensive, so a plan is cached while the spec and the files' sizes and mtimes are unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from certmodel.operator.api.modeltraining import ModelTrainingSpec
from certmodel.operator.decisions.manifests import MODELS_MOUNT
from certmodel.operator.reconcile import Resolved, Resolver
from certmodel.runtime.errors import CertmodelError, NotFoundError
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
        }
    )


def make_resolver(volume_root: Path, *, pod_root: str = MODELS_MOUNT) -> Resolver:
    """A resolver that plans against ``volume_root`` (the operator's mount of the volume)."""
    cache: dict[str, tuple[tuple[tuple[str, int, int], ...], Resolved]] = {}

    def resolve(spec: ModelTrainingSpec) -> Resolved:
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
