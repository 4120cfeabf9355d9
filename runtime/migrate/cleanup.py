"""``--remove-legacy``: delete the legacy files of what was migrated, and nothing else.

A legacy model folder loses the files it contributed to a version only when that version
deep-verifies in the store (its DNA was computed from those very files, so the store holds
exactly what is removed). Files that were not carried over (READMEs, optimizer states) stay,
and a folder is removed only once it is empty. A legacy base model goes only when the store's
copy hashes to the same digest and no legacy model left behind still names it. Nothing inside
the store root is ever removed (a migration in place).
"""

from __future__ import annotations

from pathlib import Path

from certmodel.runtime.format.digest import FileEntry, tree_digest
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version
from certmodel.runtime.migrate.apply import Row
from certmodel.runtime.migrate.discover import BaseCandidate, LegacyTree, match_base
from certmodel.runtime.migrate.plan import MIGRATED, Plan, Severity, Step


def remove_migrated(store: Store, tree: LegacyTree, plan: Plan, present: set[str]) -> list[Row]:
    """Remove the legacy files of verified versions and unneeded bases; one row per removal."""
    rows: list[Row] = []
    verified: dict[str, bool] = {}
    migrated = [s for s in plan.steps if _is_migrated(s, present)]
    for step in migrated:
        assert step.model is not None and step.dna is not None
        if step.dna not in verified:
            verified[step.dna] = verify_version(store.version_path(step.dna)).ok
        if not verified[step.dna]:
            rows.append(_row(step, "keep", "error", f"{step.dna} fails verification; kept"))
        elif (why := _unsafe(step.model.path, tree.root, store)) is not None:
            rows.append(_row(step, "keep", "warning", why))
        else:
            rows.append(_try_remove(step, step.model.path, step.model.files))
    unmigrated = [s for s in plan.steps if s.model is not None and s not in migrated]
    for step in plan.steps:
        if step.base_candidate is not None and step.action in {"install-base", "reuse-base"}:
            rows.append(_remove_base(store, tree, step, step.base_candidate, unmigrated))
    rows.extend(_remove_pointer(tree))
    return rows


def _is_migrated(step: Step, present: set[str]) -> bool:
    return step.model is not None and step.action in MIGRATED and step.dna in present


def _remove_base(
    store: Store, tree: LegacyTree, step: Step, base: BaseCandidate, unmigrated: list[Step]
) -> Row:
    needed_by = [
        s.subject
        for s in unmigrated
        if s.base == base.name
        or (s.model and s.model.base_hint and match_base(s.model.base_hint, [base.name]))
    ]
    if needed_by:
        return _row(step, "keep", "ok", f"still named by legacy {', '.join(needed_by[:3])}")
    if (why := _unsafe(base.path, tree.root, store)) is not None:
        return _row(step, "keep", "warning", why)
    installed = store.base_models_dir / base.name
    if not installed.is_dir() or tree_digest(installed) != base.digest:
        return _row(step, "keep", "error", f"{installed} does not match the legacy copy; kept")
    return _try_remove(step, base.path, base.files)


def _remove_pointer(tree: LegacyTree) -> list[Row]:
    """The legacy CURRENT goes once the folder it names has been removed (it would dangle)."""
    pointer = tree.pointer
    if pointer is None or pointer.target is None or pointer.target.exists():
        return []
    try:
        pointer.path.unlink(missing_ok=True)
    except OSError as exc:
        return [Row(pointer.path.name, "pointer", "keep", "error", f"not removed: {exc}")]
    return [Row(pointer.path.name, "pointer", "removed", "ok", "its target was removed")]


def _try_remove(step: Step, folder: Path, files: tuple[FileEntry, ...]) -> Row:
    """Remove, or say why not (a read-only legacy volume, as the chart mounts it)."""
    try:
        return _row(step, "removed", "ok", _remove(folder, files))
    except OSError as exc:
        return _row(step, "keep", "error", f"could not remove legacy files: {exc}")


def _remove(folder: Path, files: tuple[FileEntry, ...]) -> str:
    for entry in files:
        (folder / entry.path).unlink(missing_ok=True)
    _prune_empty(folder)
    if folder.exists():
        left = sorted(p.name for p in folder.iterdir())
        return f"removed {len(files)} migrated files; kept {', '.join(left[:4])}"
    return f"removed {folder}"


def _prune_empty(folder: Path) -> None:
    """Remove empty folders under and including ``folder``, deepest first."""
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _unsafe(path: Path, legacy_root: Path, store: Store) -> str | None:
    resolved, root = path.resolve(), store.root.resolve()
    managed = [store.certified_dir, store.staging_dir, store.base_models_dir]
    if any(resolved.is_relative_to(p.resolve()) for p in managed) or root.is_relative_to(resolved):
        return f"{path} is part of the store under {store.root}; not removed"
    if resolved == legacy_root:
        return f"{path} is the legacy root itself; not removed"
    return None


def _row(step: Step, action: str, severity: Severity, detail: str) -> Row:
    return Row(step.subject, step.kind, action, severity, detail, step.base, step.dna)
