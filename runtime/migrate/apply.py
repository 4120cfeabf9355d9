"""Running a migration: read the store's state, plan, and (with ``apply``) carry the plan out.

Every write goes through the store's own atomic paths: base models are built under
``.staging/`` and renamed into ``base_models/``; versions are assembled in
``.staging/<dna>/version`` and published by :meth:`Store.publish`, then deep-verified. Legacy
files are only read -- and every copied byte is re-hashed against the digest the plan (and so
the DNA) was computed from, so a file changing under our feet fails that version instead of
certifying content the DNA does not describe. One candidate failing never stops the others.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from certmodel.runtime.errors import CertmodelError, RefusedError, VerificationError
from certmodel.runtime.format.digest import tree_digest
from certmodel.runtime.format.fsutil import fsync_dir, fsync_tree
from certmodel.runtime.format.manifest import MANIFEST_NAME, BaseModelInfo, Manifest
from certmodel.runtime.format.pointer import FilePointer
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version
from certmodel.runtime.localmode import promote_local
from certmodel.runtime.migrate.build import build_version, copy_checked, provenance
from certmodel.runtime.migrate.discover import (
    BaseCandidate,
    LegacyTree,
    architecture,
    discover,
    match_base,
)
from certmodel.runtime.migrate.plan import (
    BaseState,
    Options,
    Plan,
    Severity,
    Step,
    StoreState,
    make_plan,
)
from certmodel.runtime.training.merge import TOKENIZER_FILES

_T = TypeVar("_T")

DONE = {"install-base": "installed", "publish": "published", "set-current": "current-set"}
"""How a planned action reads once it has been done."""


@dataclass(frozen=True)
class Row:
    """One line of the migration report."""

    subject: str
    kind: str
    action: str
    severity: Severity
    detail: str
    base: str | None = None
    dna: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "action": self.action,
            "severity": self.severity,
            "detail": self.detail,
            "base": self.base,
            "dna": self.dna,
        }


@dataclass
class Report:
    legacy: Path
    root: Path
    applied: bool
    rows: list[Row] = field(default_factory=list)
    pickle_converted: int = 0

    @property
    def ok(self) -> bool:
        return all(r.severity != "error" for r in self.rows)


def migrate(
    legacy: Path,
    store: Store,
    options: Options,
    *,
    apply: bool = False,
    remove_legacy: bool = False,
    exclude: Sequence[str] = (),
) -> Report:
    """Plan (and with ``apply`` carry out) the migration of ``legacy`` into ``store``."""
    # The store's own folders are never candidates (a migration in place, or a store inside
    # the legacy tree): its versions hold adapter_config.json files too.
    skip = [store.root, store.certified_dir, store.staging_dir, store.base_models_dir]
    tree = discover(legacy, exclude=exclude, skip=skip)
    plan = make_plan(tree, read_state(store, tree, options), options)
    report = Report(tree.root, store.root, apply)
    if not apply:
        report.rows = [_row(step, step.action, step.severity, step.reason) for step in plan.steps]
        report.pickle_converted = sum(1 for s in plan.steps if _converts(s))
        return report
    present = _apply(store, plan, report)
    if remove_legacy:
        from certmodel.runtime.migrate.cleanup import remove_migrated

        report.rows.extend(remove_migrated(store, tree, plan, present))
    return report


def read_state(store: Store, tree: LegacyTree, options: Options) -> StoreState:
    """The store's bases (only those the legacy tree could use: digests cost a full read),
    versions and CURRENT."""
    names = sorted(p.name for p in _dirs(store.base_models_dir))
    wanted = {b.name for b in tree.bases} | {options.base_override or ""}
    wanted |= {match_base(m.base_hint, names) or "" for m in tree.models if m.base_hint}
    if any(m.kind == "merged" and not m.base_hint for m in tree.models):
        wanted |= set(names)  # matched by architecture: any base may be the one
    bases = {name: _base_state(store.base_models_dir / name) for name in names if name in wanted}
    versions = frozenset(
        p.name for p in _dirs(store.certified_dir) if (p / MANIFEST_NAME).is_file()
    )
    try:
        current, error = FilePointer(store.root).read().dna, None
    except (CertmodelError, OSError) as exc:
        current, error = None, str(exc)
    return StoreState(bases, versions, current, error)


def _apply(store: Store, plan: Plan, report: Report) -> set[str]:
    """Carry out ``plan``; return the DNAs present in the store afterwards."""
    present = {s.dna for s in plan.steps if s.action == "exists" and s.dna}
    bases = _BaseCache(store)
    handlers: dict[str, Callable[[Step], str]] = {
        "install-base": lambda s: _install_base(store, _need(s.base_candidate)),
        "publish": lambda s: _publish(store, s, bases, report),
        "set-current": lambda s: _set_current(store, s, present),
        "duplicate": lambda s: _check_twin(s, present),
    }
    for step in plan.steps:
        handler = handlers.get(step.action)
        if handler is None:
            report.rows.append(_row(step, step.action, step.severity, step.reason))
            continue
        try:
            detail = handler(step)
        except (CertmodelError, OSError) as exc:
            report.rows.append(_row(step, "failed", "error", str(exc)))
            continue
        if step.action == "publish" and step.dna:
            present.add(step.dna)
        report.rows.append(_row(step, DONE.get(step.action, step.action), step.severity, detail))
    return present


def _row(step: Step, action: str, severity: Severity, detail: str) -> Row:
    return Row(step.subject, step.kind, action, severity, detail, step.base, step.dna)


def _converts(step: Step) -> bool:
    return step.action == "publish" and step.model is not None and step.model.weights == "pickle"


def _need(value: _T | None) -> _T:
    if value is None:
        raise CertmodelError("internal: a planned step lacks its candidate")
    return value


def _install_base(store: Store, base: BaseCandidate) -> str:
    """Copy a legacy base into ``base_models/<name>`` through ``.staging`` and one rename."""
    work = store.staging_dir / f"base-{base.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        for entry in base.files:
            copy_checked(base.path / entry.path, work / entry.path, entry.sha256)
        fsync_tree(work, normalise_modes=True)  # inference pods may run as another user
        store.base_models_dir.mkdir(parents=True, exist_ok=True)
        work.rename(store.base_models_dir / base.name)
        fsync_dir(store.base_models_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"copied {len(base.files)} files to base_models/{base.name}"


def _publish(store: Store, step: Step, bases: _BaseCache, report: Report) -> str:
    model, recipe, base, dna = _need(step.model), _need(step.recipe), _need(step.base), step.dna
    work = store.staging_path(_need(dna)) / "version"
    shutil.rmtree(work, ignore_errors=True)
    try:
        converted = build_version(store, model, base, work)
        manifest = store.publish(
            recipe=recipe,
            base_model=bases.info(base, recipe.base_model.digest),
            source_dir=work,
            extra={"migration": provenance(model, converted)},
        )
    except BaseException:
        store.clean_staging(_need(dna))
        raise
    report.pickle_converted += int(converted)
    _verify(store, manifest)
    return f"{len(manifest.files)} files, verified" + ("; pickle converted" if converted else "")


def _set_current(store: Store, step: Step, present: set[str]) -> str:
    dna = _need(step.dna)
    if dna not in present:
        raise RefusedError(f"CURRENT not carried over: version {dna} was not published")
    doc = promote_local(store, dna)
    return f"CURRENT -> {dna} (revision {doc.revision})"


def _check_twin(step: Step, present: set[str]) -> str:
    if step.dna not in present:
        raise CertmodelError(f"{step.reason}, which failed")
    return step.reason


def _verify(store: Store, manifest: Manifest) -> None:
    report = verify_version(store.version_path(manifest.dna))
    if not report.ok:
        raise VerificationError(
            f"published {manifest.dna} fails verification: {report.problems[0]}"
        )


class _BaseCache:
    """Base-model infos, each base hashed once per run and checked against the plan's digest."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._digests: dict[str, str] = {}

    def info(self, name: str, expected: str) -> BaseModelInfo:
        path = self.store.base_model_path(name)
        digest = self._digests.setdefault(name, tree_digest(path))
        if digest != expected:
            raise RefusedError(f"base model {path} changed during the migration ({digest})")
        return BaseModelInfo(name=name, path=f"base_models/{name}", digest=digest)


def _base_state(path: Path) -> BaseState:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return BaseState(
        digest=tree_digest(path),
        has_tokenizer=any((path / t).is_file() for t in TOKENIZER_FILES),
        shape=architecture(config) if isinstance(config, dict) else None,
    )


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
