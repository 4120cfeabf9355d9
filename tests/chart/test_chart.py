"""The Helm chart: lint, render every values set, validate against the Kubernetes 1.35 schemas,
and check the properties we promise (least privilege, restricted pods, stable selectors).

Needs the cached helm binary (``make kube-bins``); no cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from chart.chartkit import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    REPO,
    Obj,
    containers,
    helm,
    of_kind,
    one,
    pod_templates,
    render,
    selectors,
)

KUBE_VERSION = "1.35"
CUSTOM_KINDS = {"ServiceMonitor", "KopfPeering", "ClusterKopfPeering"}
"""Custom resources kubernetes-validate has no schema for (their CRDs are not Kubernetes')."""

CASES: dict[str, tuple[str, ...]] = {
    **{p.name.removesuffix("-values.yaml"): ("-f", str(p)) for p in CI_VALUES},
    "peered-namespaced": ("--set", "operator.replicas=2"),
    "migration-dry-run": (
        "--set",
        "migration.enabled=true,migration.legacyClaim=old,migration.apply=false",
    ),
}
"""Every ci/*-values.yaml set, plus combinations the sets do not cover."""

_rendered: dict[str, list[Obj]] = {}


def rendered(case: str) -> list[Obj]:
    if case not in _rendered:
        _rendered[case] = render(*CASES[case])
    return _rendered[case]


each_case = pytest.mark.parametrize("case", sorted(CASES))


def test_ci_values_sets_are_all_there() -> None:
    names = {p.name for p in CI_VALUES}
    expected = {"default", "inference-disabled", "existing-claim", "servicemonitor",
                "peered-replicas", "migration", "signing"}  # fmt: skip
    assert names == {f"{n}-values.yaml" for n in expected}


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(values: Path) -> None:
    out = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values))
    assert "0 chart(s) failed" in out.stdout


@each_case
def test_manifests_validate_against_kubernetes_schemas(case: str) -> None:
    for obj in rendered(case):
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")


@each_case
def test_no_rbac_wildcards(case: str) -> None:
    for obj in rendered(case):
        for rule in obj.get("rules", []) if obj["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in v for v in rule.get(field, [])), (obj, rule)


@each_case
def test_cluster_scoped_rbac_only_when_watching_all_namespaces(case: str) -> None:
    objs = rendered(case)
    operator = next(
        o for o in objs if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"]
    )
    all_ns = "--all-namespaces" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    # The console's TokenReview/SubjectAccessReview ClusterRole grants no resource access.
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        scoped = [o for o in of_kind(objs, kind) if not o["metadata"]["name"].endswith(REVIEWS)]
        assert bool(scoped) == all_ns, kind


REVIEWS = "-console-reviews"


@each_case
def test_the_console_may_only_create_reviews(case: str) -> None:
    objs = rendered(case)
    (role,) = [r for r in of_kind(objs, "ClusterRole") if r["metadata"]["name"].endswith(REVIEWS)]
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
    ]  # fmt: skip
    (binding,) = [
        b for b in of_kind(objs, "ClusterRoleBinding") if b["metadata"]["name"].endswith(REVIEWS)
    ]
    assert [s["name"] for s in binding["subjects"]] == ["demo-certmodel-operator"]


def test_the_console_can_be_turned_off() -> None:
    objs = render("--set", "console.enabled=false")
    assert not [o for o in objs if o["metadata"]["name"].endswith(REVIEWS)]
    (c,) = _by_name(objs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"]
    assert "--console-port=0" in c["args"] and all(p["name"] != "console" for p in c["ports"])
    assert not [o for o in of_kind(objs, "Service") if o["metadata"]["name"].endswith("-console")]


@each_case
def test_inference_role_reads_only_its_pointer_configmap(case: str) -> None:
    objs = rendered(case)
    deployments = [
        d for d in of_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-inference")
    ]
    roles = [r for r in of_kind(objs, "Role") if r["metadata"]["name"].endswith("-inference")]
    if not deployments:
        assert not roles
        return
    command = deployments[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    pointer = command[command.index("--pointer-configmap") + 1]
    assert [r["rules"] for r in roles] == [[{
        "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [pointer],
        "verbs": ["get", "list", "watch"],
    }]]  # fmt: skip


@each_case
def test_trainer_service_account_has_no_api_access(case: str) -> None:
    objs = rendered(case)
    trainer = one(objs, "ServiceAccount", "demo-certmodel-trainer")
    assert trainer["automountServiceAccountToken"] is False
    for binding in of_kind(objs, "RoleBinding") + of_kind(objs, "ClusterRoleBinding"):
        assert all(s["name"] != "demo-certmodel-trainer" for s in binding["subjects"])
    for where, pod in pod_templates(objs):
        if pod["serviceAccountName"] == "demo-certmodel-trainer":
            assert pod["automountServiceAccountToken"] is False, where


RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@each_case
def test_every_pod_is_restricted_with_a_writable_tmp(case: str) -> None:
    templates = list(pod_templates(rendered(case)))
    assert templates
    for where, pod in templates:
        assert RESTRICTED_POD.items() <= pod["securityContext"].items(), where
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in containers(pod):
            ctx = c["securityContext"]
            assert RESTRICTED_CONTAINER.items() <= ctx.items(), (where, c["name"])
            assert not ctx.get("privileged") and "add" not in ctx["capabilities"]
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], (where, c["name"])
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where


@each_case
def test_no_resource_limits_forced(case: str) -> None:
    for where, pod in pod_templates(rendered(case)):
        for c in containers(pod):
            assert "limits" not in c.get("resources", {}), (where, c["name"])


@each_case
def test_selectors_are_stable_and_match_their_pods(case: str) -> None:
    objs = rendered(case)
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in objs if o["kind"] == "Deployment"]
    for obj in objs:
        for selector in selectors(obj):
            assert selector, obj["metadata"]["name"]
            assert "helm.sh/chart" not in selector and "app.kubernetes.io/version" not in selector
            assert any(selector.items() <= labels.items() for labels in pods), selector
    for obj in of_kind(objs, "Deployment"):
        assert obj["spec"]["selector"]["matchLabels"].items() <= (
            obj["spec"]["template"]["metadata"]["labels"].items()
        )


@each_case
def test_standard_labels_on_every_object(case: str) -> None:
    for obj in rendered(case):
        if obj["kind"] == "CustomResourceDefinition":
            continue
        labels = obj["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "helm.sh/chart",
                    "app.kubernetes.io/managed-by", "app.kubernetes.io/component"):  # fmt: skip
            assert key in labels, (obj["kind"], obj["metadata"]["name"], key)


@each_case
def test_every_referenced_service_account_and_claim_exists(case: str) -> None:
    objs = rendered(case)
    accounts = {o["metadata"]["name"] for o in of_kind(objs, "ServiceAccount")}
    claims = {o["metadata"]["name"] for o in of_kind(objs, "PersistentVolumeClaim")}
    external = {"shared-models", "legacy-models", "old"}  # existingClaim / legacyClaim in CASES
    for where, pod in pod_templates(objs):
        assert pod["serviceAccountName"] in accounts, where
        for v in pod["volumes"]:
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims | external, where
    for binding in of_kind(objs, "RoleBinding") + of_kind(objs, "ClusterRoleBinding"):
        assert {s["name"] for s in binding["subjects"]} <= accounts


def test_chart_crds_are_a_copy_of_the_generated_crds() -> None:
    generated = sorted((REPO / "crds").glob("*.yaml"))
    copied = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in copied] == [p.name for p in generated]
    for src, dst in zip(generated, copied, strict=True):
        assert dst.read_bytes() == src.read_bytes(), f"{dst} differs; run: make generate"


def test_values_schema_refuses_unknown_keys_and_missing_names() -> None:
    for bad in ("operator.imageTag=x", "inference.model=", "migration.enabled=true",
                "operator.replicas=-1", "securityContext.runAsUser=0"):  # fmt: skip
        out = helm("template", "x", str(CHART), "--set", bad, check=False)
        assert out.returncode != 0, bad
        assert "schema" in out.stderr, (bad, out.stderr)


_KEY = re.compile(r"^(\s*)([A-Za-z][\w.-]*):(.*)$")


def test_every_value_is_documented_inline() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = _KEY.match(line)
        if not m or (m.group(3).strip() == "" and _has_children(lines, i, len(m.group(1)))):
            continue
        above = i - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            if lines[above].strip().startswith("# --"):
                break
            above -= 1
        if above < 0 or not lines[above].strip().startswith("# --"):
            undocumented.append(m.group(2))
    assert not undocumented, f"values without a '# --' comment: {undocumented}"


def _has_children(lines: list[str], i: int, indent: int) -> bool:
    nxt = next((ln for ln in lines[i + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
    return len(nxt) - len(nxt.lstrip()) > indent or nxt.lstrip().startswith("- ")


def _by_name(objs: list[Obj], kind: str, suffix: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, (kind, suffix, found)
    return found[0]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("default", ["--namespace=certmodel-system", "--standalone"]),
        ("peered-namespaced", ["--namespace=certmodel-system", "--peering=demo-certmodel"]),
        ("peered-replicas", ["--all-namespaces", "--peering=demo-certmodel"]),
    ],
)
def test_operator_contract(case: str, expected: list[str]) -> None:
    objs = rendered(case)
    pod = _by_name(objs, "Deployment", "-operator")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "ghcr.io/certmodel/operator:0.1.0"
    assert c["command"] == ["certmodel-operator"]
    assert c["args"] == [
        "--models-root=/models", *expected[:1], "--metrics-port=8080", "--health-port=8081",
        "--console-port=8090", *expected[1:], "--trainer-image=ghcr.io/certmodel/runtime:0.1.0",
        "--trainer-service-account=demo-certmodel-trainer", "--models-claim=demo-certmodel-models",
    ]  # fmt: skip
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in c["ports"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    service = _by_name(objs, "Service", "-operator")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"},
    ]
    console = _by_name(objs, "Service", "-operator-console")  # its own, never exposed
    assert console["spec"]["type"] == "ClusterIP"
    assert console["spec"]["selector"] == service["spec"]["selector"]
    assert console["spec"]["ports"] == [
        {"name": "console", "port": 8090, "targetPort": "console", "protocol": "TCP"},
    ]
    assert {"name": "console", "containerPort": 8090, "protocol": "TCP"} in c["ports"]
    peerings = of_kind(objs, "KopfPeering") + of_kind(objs, "ClusterKopfPeering")
    assert [p["metadata"]["name"] for p in peerings] == (
        ["demo-certmodel"] if "--standalone" not in expected else []
    )


def test_inference_contract() -> None:
    objs = rendered("default")
    deployment = _by_name(objs, "Deployment", "-inference")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["certmodel.io/model"] == "demo"
    (c,) = template["spec"]["containers"]
    assert c["image"] == "ghcr.io/certmodel/runtime:0.1.0"
    assert c["command"] == [
        "certmodel", "serve", "--root", "/models", "--pointer-configmap", "demo-pointer",
        "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    service = _by_name(objs, "Service", "-inference")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert template["spec"]["serviceAccountName"] == "demo-certmodel-inference"


def test_existing_claim_replaces_the_created_one() -> None:
    objs = rendered("existing-claim")
    assert not of_kind(objs, "PersistentVolumeClaim")
    for _, pod in pod_templates(objs):
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == ["shared-models"]
    default = one(rendered("default"), "PersistentVolumeClaim", "demo-certmodel-models")
    assert default["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_service_monitors_scrape_both_metrics_ports() -> None:
    monitors = of_kind(rendered("servicemonitor"), "ServiceMonitor")
    ports = sorted(m["spec"]["endpoints"][0]["port"] for m in monitors)
    assert ports == ["http", "metrics"]
    assert all(m["metadata"]["labels"]["release"] == "prometheus" for m in monitors)
    assert not of_kind(rendered("default"), "ServiceMonitor")


@pytest.mark.parametrize(("case", "apply"), [("migration", True), ("migration-dry-run", False)])
def test_migration_job(case: str, apply: bool) -> None:
    job = _by_name(rendered(case), "Job", "-migrate")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    base = ["certmodel", "migrate", "--from", "/legacy", "--root", "/models"]
    assert c["command"] == base + (["--apply"] if apply else [])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/legacy"]["readOnly"] is True and not mounts["/models"].get("readOnly")
    assert not of_kind(rendered("default"), "Job")


def test_kopf_peering_crds_ship_in_the_chart() -> None:
    crds = {o["metadata"]["name"] for o in of_kind(rendered("default"), "CustomResourceDefinition")}
    assert crds == {
        "modeltrainings.certmodel.io", "certifiedmodels.certmodel.io",
        "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev",
    }  # fmt: skip


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_notes_render(values: Path) -> None:
    """NOTES.txt only renders on install: a client-side dry run needs no cluster."""
    out = helm(
        "install", "demo", str(CHART), "--namespace", NAMESPACE, "-f", str(values),
        "--dry-run=client", env={"KUBECONFIG": "/nonexistent"},
    )  # fmt: skip
    notes = out.stdout.split("NOTES:\n", 1)[1]
    assert "demo-certmodel-operator" in notes and "<no value>" not in notes
