"""Planning a migration: candidates + the store's state -> one action per candidate, with why.

Pure (no I/O), so the dry run shows exactly what ``--apply`` will do and every odd case is
testable without a file system. A migrated version's DNA is derived from its content (see
:func:`migration_recipe`), so identical content in two folders plans one version, and a second
run finds every version present and plans nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from certmodel.runtime.format.dna import BaseModelRef, Recipe, compute_dna
from certmodel.runtime.migrate.discover import (
    ADAPTER_PICKLE,
    BaseCandidate,
    LegacyTree,
    ModelCandidate,
    Shape,
    match_base,
)

Action = Literal[
    "install-base", "reuse-base", "publish", "exists", "duplicate", "set-current", "keep", "skip"
]
Severity = Literal["ok", "warning", "error"]
MIGRATED: frozenset[str] = frozenset({"publish", "exists", "duplicate"})
"""Actions after which a legacy model folder is (or will be) a certified version."""


@dataclass(frozen=True)
class BaseState:
    """A base model already in the store."""

    digest: str
    has_tokenizer: bool
    shape: Shape | None = None


@dataclass(frozen=True)
class StoreState:
    """What the plan needs to know about the target store."""

    bases: Mapping[str, BaseState] = field(default_factory=dict)
    versions: frozenset[str] = frozenset()
    current: str | None = None
    current_error: str | None = None


@dataclass(frozen=True)
class Options:
    allow_pickle: bool = False
    base_override: str | None = None


@dataclass(frozen=True)
class Step:
    """One planned action; ``subject`` is the legacy-relative path it is about."""

    subject: str
    kind: str  # base | adapter | merged | pointer
    action: Action
    reason: str
    severity: Severity = "ok"
    base: str | None = None
    dna: str | None = None
    recipe: Recipe | None = None
    model: ModelCandidate | None = None
    base_candidate: BaseCandidate | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    @property
    def has_errors(self) -> bool:
        return any(s.severity == "error" for s in self.steps)


def migration_recipe(model: ModelCandidate, base: str, base_digest: str) -> Recipe:
    """The recipe of a migrated version: there was no recorded training recipe, so the legacy
    content stands in for the dataset (``sha256("legacy:" + source digest)``) and the adapter's
    own LoRA settings are the method settings."""
    descriptor = f"legacy:{model.source_digest}".encode()
    return Recipe(
        base_model=BaseModelRef(name=base, digest=base_digest),
        dataset_digest="sha256:" + hashlib.sha256(descriptor).hexdigest(),
        method="lora",
        method_settings=_method_settings(model.config) if model.kind == "adapter" else {},
        hyperparameters={"migrated_from": "legacy"},
        seed=0,
        kind=model.kind,
    )


def _method_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    names = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "bias": "bias"}
    settings = {ours: config[theirs] for theirs, ours in names.items() if theirs in config}
    targets = config.get("target_modules")
    if isinstance(targets, list):
        settings["target_modules"] = sorted(str(t) for t in targets)
    elif targets is not None:
        settings["target_modules"] = targets
    return settings


def make_plan(tree: LegacyTree, state: StoreState, options: Options) -> Plan:
    base_steps, available, blocked = _plan_bases(tree, state)
    model_steps = _plan_models(tree, state, options, available, blocked)
    pointer_steps = _plan_pointer(tree, state, model_steps)
    return Plan((*base_steps, *model_steps, *pointer_steps))


def _plan_bases(
    tree: LegacyTree, state: StoreState
) -> tuple[list[Step], dict[str, BaseState], dict[str, str]]:
    """Steps for the legacy bases, the bases adapters may link to, and the blocked names."""
    steps: list[Step] = []
    available = dict(state.bases)
    blocked: dict[str, str] = {}
    for base in tree.bases:
        subject = f"base_models/{base.name}"
        existing = state.bases.get(base.name)
        if base.problem is not None:
            steps.append(
                Step(subject, "base", "skip", base.problem, "error", base.name, base_candidate=base)
            )
            if existing is None:
                blocked[base.name] = f"base model {base.name!r} was not migrated"
        elif existing is None:
            why = "copy into the store" + _ignored_note(base.ignored)
            steps.append(
                Step(subject, "base", "install-base", why, base=base.name, base_candidate=base)
            )
            available[base.name] = BaseState(base.digest, base.has_tokenizer, base.shape)
        elif existing.digest == base.digest:
            why = "identical base model already in the store"
            steps.append(
                Step(subject, "base", "reuse-base", why, base=base.name, base_candidate=base)
            )
        else:
            why = (
                f"conflict: the store's base_models/{base.name} has other content"
                f" ({existing.digest[:19]}…, legacy {base.digest[:19]}…); not overwritten"
            )
            steps.append(
                Step(subject, "base", "skip", why, "error", base.name, base_candidate=base)
            )
            blocked[base.name] = f"base model {base.name!r} conflicts with the store's"
    return steps, available, blocked


def _plan_models(
    tree: LegacyTree,
    state: StoreState,
    options: Options,
    available: dict[str, BaseState],
    blocked: dict[str, str],
) -> list[Step]:
    steps: list[Step] = []
    first_by_dna: dict[str, str] = {}
    for model in tree.models:
        step = _plan_model(model, state, options, available, blocked, first_by_dna)
        if step.action == "publish" and step.dna is not None:
            first_by_dna[step.dna] = model.rel
        steps.append(step)
    return steps


def _plan_model(
    model: ModelCandidate,
    state: StoreState,
    options: Options,
    available: dict[str, BaseState],
    blocked: dict[str, str],
    first_by_dna: dict[str, str],
) -> Step:
    def skip(reason: str, base: str | None = None) -> Step:
        return Step(model.rel, model.kind, "skip", reason, "error", base, model=model)

    if model.problem is not None:
        return skip(model.problem)
    if model.weights == "pickle" and model.kind == "merged":
        return skip(
            f"{model.path}: only pickle weights; merged models are never converted from pickle"
            " (re-save it with safe_serialization=True)"
        )
    if model.weights == "pickle" and not options.allow_pickle:
        return skip(
            f"{model.path / ADAPTER_PICKLE}: pickle adapter refused; pass --allow-pickle to"
            " convert it (torch.load(weights_only=True); only for files you trust)"
        )
    base, note = _resolve_base(model, options, available, blocked)
    if base is None:
        return skip(note)
    info = available[base]
    if not model.tokenizer_files and not info.has_tokenizer:
        return skip(f"{model.path}: no tokenizer files here nor in base model {base!r}", base)
    recipe = migration_recipe(model, base, info.digest)
    dna = compute_dna(recipe)
    common: dict[str, Any] = {"base": base, "dna": dna, "recipe": recipe, "model": model}
    if dna in state.versions:
        return Step(model.rel, model.kind, "exists", "already migrated", **common)
    if dna in first_by_dna:
        why = f"same content as {first_by_dna[dna]}: one version for both"
        return Step(model.rel, model.kind, "duplicate", why, "warning", **common)
    why = _publish_reason(model) + (f"; {note}" if note else "")
    return Step(model.rel, model.kind, "publish", why, **common)


def _resolve_base(
    model: ModelCandidate,
    options: Options,
    available: dict[str, BaseState],
    blocked: dict[str, str],
) -> tuple[str | None, str]:
    """The base name for ``model`` and a note, or None and why not. A merged model whose config
    names no base (recent transformers write none) gets the one base of its architecture: for
    a merged model the base is provenance, its weights are its own."""
    names = sorted({*available, *blocked})
    if options.base_override is not None:
        name: str | None = options.base_override
        source = "--base"
    elif model.base_hint is not None:
        name = match_base(model.base_hint, names)
        source = f"{model.base_hint!r} in its config"
    elif model.kind == "merged" and model.shape is not None:
        same = [n for n, b in available.items() if b.shape == model.shape]
        if len(same) == 1:
            return same[0], "base matched by architecture (its config names none)"
        why = "no base model has" if not same else f"{len(same)} base models have"
        return None, f"{model.path}: its config names no base model and {why} its architecture"
    else:
        return None, f"{model.path}: its config names no base model; pass --base NAME"
    if name is None:
        return None, (
            f"{model.path}: base model {source} is not in the legacy base_models/ nor in the"
            " store; pass --base NAME if it is there under another name"
        )
    if name in blocked:
        return None, f"{model.path}: {blocked[name]}"
    if name not in available:
        return None, f"{model.path}: base model {name!r} ({source}) not found"
    return name, ""


def _publish_reason(model: ModelCandidate) -> str:
    parts = ["new version"]
    if model.weights == "pickle":
        parts.append("pickle adapter converted to safetensors")
    if not model.tokenizer_files:
        parts.append("tokenizer from the base model")
    return "; ".join(parts) + _ignored_note(model.ignored)


def _ignored_note(ignored: tuple[str, ...]) -> str:
    if not ignored:
        return ""
    shown = ", ".join(ignored[:4]) + (f" +{len(ignored) - 4}" if len(ignored) > 4 else "")
    return f" (not carried: {shown})"


def _plan_pointer(tree: LegacyTree, state: StoreState, model_steps: list[Step]) -> list[Step]:
    pointer = tree.pointer
    if pointer is None:
        return []
    subject = pointer.path.name

    def note(action: Action, reason: str, severity: Severity, dna: str | None = None) -> Step:
        return Step(subject, "pointer", action, reason, severity, dna=dna)

    if pointer.problem is not None:
        return [
            note("skip", f"broken legacy CURRENT ({pointer.problem}); not carried over", "warning")
        ]
    step = next(
        (s for s in model_steps if s.model and s.model.path.resolve() == pointer.target), None
    )
    if step is None:
        return [
            note("skip", f"legacy CURRENT names {pointer.target}, not a model folder", "warning")
        ]
    if step.action not in MIGRATED or step.dna is None:
        return [
            note("skip", f"legacy CURRENT names {step.subject}, which is not migrated", "warning")
        ]
    if state.current_error is not None:
        return [note("keep", f"the store's CURRENT is unreadable ({state.current_error})", "error")]
    if state.current == step.dna:
        return [note("keep", f"CURRENT already points at {step.subject}'s version", "ok", step.dna)]
    if state.current is not None:
        why = f"the store's CURRENT points at {state.current}; not moved (promote by hand)"
        return [note("keep", why, "warning", step.dna)]
    return [note("set-current", f"carry legacy CURRENT ({step.subject}) over", "ok", step.dna)]
