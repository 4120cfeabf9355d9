"""Validation of a whole store (`certmodel validate`): is everything a server could be asked to
load actually loadable and what it claims to be?

``verify`` checks one version against its own manifest. Validation adds what lies *between*
the pieces: an adapter's base model must be present and hash to the digest it was trained on
(an adapter on other base weights gives garbage without any error); CURRENT must name a version
that verifies and whose content digest is the one recorded when it was promoted; ``.staging/``
must hold no half-published version. Findings are errors (something is broken: exit non-zero)
or warnings (worth knowing, nothing broken: a store without CURRENT, leftover work folders).
Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from certmodel.runtime.errors import CertmodelError
from certmodel.runtime.format.digest import tree_digest
from certmodel.runtime.format.dna import is_dna
from certmodel.runtime.format.manifest import MANIFEST_NAME, Manifest
from certmodel.runtime.format.pointer import FilePointer, PointerDocument
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing); ``path`` names the file or folder concerned."""

    severity: Severity
    subject: str  # a DNA, "CURRENT", ".staging/<name>" or "certified/<name>"
    kind: str
    path: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "subject": self.subject,
            "kind": self.kind,
            "path": self.path,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class VersionResult:
    dna: str
    ok: bool
    kind: str | None
    base_model: str | None
    content_digest: str | None


@dataclass
class ValidationReport:
    root: Path
    versions: list[VersionResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    current: str | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "current": self.current,
            "versions": [vars(v) for v in self.versions],
            "findings": [f.to_json() for f in self.findings],
            "summary": {
                "versions": len(self.versions),
                "errors": len(self.errors),
                "warnings": len(self.findings) - len(self.errors),
            },
        }


def validate_store(
    store: Store, *, deep: bool = True, check_pointer: bool = True, require_current: bool = False
) -> ValidationReport:
    """Check every version, its base model, the CURRENT pointer and ``.staging/``."""
    report = ValidationReport(store.root)
    manifests = _check_versions(store, report, deep=deep)
    _check_bases(store, manifests, report)
    if check_pointer:
        _check_pointer(store, manifests, report, require_current=require_current)
    _check_staging(store, report)
    return report


def _check_versions(store: Store, report: ValidationReport, *, deep: bool) -> dict[str, Manifest]:
    """Verify each version folder; return the manifests of those that verified."""
    good: dict[str, Manifest] = {}
    if not store.certified_dir.is_dir():
        return good
    for child in sorted(store.certified_dir.iterdir()):
        subject = f"certified/{child.name}"
        if not child.is_dir() or child.is_symlink() or not is_dna(child.name):
            what = "not a version folder (expected certified/<dna>/)"
            report.findings.append(Finding("error", subject, "not-a-version", str(child), what))
            continue
        result = verify_version(child, deep=deep)
        for problem in result.problems:
            path = str(child / problem.path)
            report.findings.append(Finding("error", child.name, problem.kind, path, problem.detail))
        m = result.manifest
        report.versions.append(
            VersionResult(
                child.name,
                result.ok,
                m.kind if m else None,
                m.base_model.name if m else None,
                m.content_digest if m else None,
            )
        )
        if result.ok and m is not None:
            good[child.name] = m
    return good


def _check_bases(store: Store, manifests: dict[str, Manifest], report: ValidationReport) -> None:
    """Each version's base model is where the manifest says; an adapter's hashes to its digest."""
    digests: dict[Path, str | Exception] = {}
    for dna, m in manifests.items():
        manifest_path = str(store.version_path(dna) / MANIFEST_NAME)
        path = (store.root / m.base_model.path).resolve()
        if not path.is_relative_to(store.base_models_dir.resolve()):
            why = f"base_model.path {m.base_model.path!r} is not under base_models/"
            report.findings.append(Finding("error", dna, "base-path", manifest_path, why))
            continue
        if m.base_model.digest != m.recipe.base_model.digest:
            why = "base_model.digest differs from the recipe's base model digest"
            report.findings.append(Finding("error", dna, "base-digest", manifest_path, why))
        if not path.is_dir():
            why = f"base model {m.base_model.name!r} is missing"
            report.findings.append(Finding("error", dna, "base-missing", str(path), why))
            continue
        if m.kind != "adapter":
            continue  # a merged model carries its own weights; its base is provenance only
        if path not in digests:
            try:
                digests[path] = tree_digest(path)
            except CertmodelError as exc:
                digests[path] = exc
        actual = digests[path]
        if isinstance(actual, Exception) or actual != m.base_model.digest:
            why = f"hashes to {actual}, but {dna} was trained on {m.base_model.digest}"
            report.findings.append(Finding("error", dna, "base-digest", str(path), why))


def _check_pointer(
    store: Store, manifests: dict[str, Manifest], report: ValidationReport, *, require_current: bool
) -> None:
    ptr = FilePointer(store.root)
    path = str(ptr.path)

    def add(severity: Severity, detail: str) -> None:
        report.findings.append(Finding(severity, "CURRENT", "pointer", path, detail))

    if ptr.path.is_symlink():
        add("error", "a symbolic link (a legacy pointer): run `certmodel migrate` to carry it over")
        return
    if not ptr.path.exists():
        if require_current:
            add("error", "no CURRENT pointer")
        elif report.versions:
            add(
                "warning",
                "no CURRENT pointer (no version is live locally; in a cluster the"
                " pointer is a ConfigMap)",
            )
        return
    try:
        doc = ptr.read()
    except (CertmodelError, OSError) as exc:
        add("error", str(exc))
        return
    report.current = doc.dna
    for severity, detail in _pointer_problems(store, doc, manifests, require_current):
        add(severity, detail)


def _pointer_problems(
    store: Store, doc: PointerDocument, manifests: dict[str, Manifest], require_current: bool
) -> list[tuple[Severity, str]]:
    target = doc.target
    if target is None:
        return [("error" if require_current else "warning", "CURRENT names no version")]
    if not is_dna(target.dna) or not store.version_path(target.dna).is_dir():
        return [("error", f"points at {target.dna}, which does not exist")]
    manifest = manifests.get(target.dna)
    if manifest is None:
        return [("error", f"points at {target.dna}, which fails verification")]
    problems: list[tuple[Severity, str]] = []
    if target.content_digest != manifest.content_digest:
        problems.append(
            (
                "error",
                f"records content digest {target.content_digest} for {target.dna}, the version"
                f" has {manifest.content_digest} (replaced after it was promoted?)",
            )
        )
    if target.path.strip("/") != f"certified/{target.dna}":
        problems.append(("error", f"path {target.path!r} is not certified/{target.dna}"))
    if (target.kind, target.base_model) != (manifest.kind, manifest.base_model.name):
        problems.append(
            (
                "error",
                f"says {target.kind} on {target.base_model!r}, the manifest"
                f" {manifest.kind} on {manifest.base_model.name!r}",
            )
        )
    return problems


def _check_staging(store: Store, report: ValidationReport) -> None:
    """Half-published versions are errors; other leftovers warnings. A DNA folder with only
    checkpoints is a training in progress (or resumable) and is not reported."""
    if not store.staging_dir.is_dir():
        return
    for child in sorted(store.staging_dir.iterdir()):
        subject = f".staging/{child.name}"
        if is_dna(child.name) and (store.certified_dir / child.name).is_dir():
            why = f"leftover of the published {child.name}; safe to remove"
            report.findings.append(Finding("warning", subject, "staging", str(child), why))
        elif is_dna(child.name) and (child / "version" / MANIFEST_NAME).is_file():
            why = (
                "half-published version (interrupted before the rename into certified/);"
                " remove it, or re-run the training or migration that made it"
            )
            report.findings.append(Finding("error", subject, "staging", str(child), why))
        elif not is_dna(child.name):
            why = "leftover work folder (an interrupted prepare-base or migration?)"
            report.findings.append(Finding("warning", subject, "staging", str(child), why))
