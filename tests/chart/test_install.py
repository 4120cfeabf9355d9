"""``helm install`` into the local control plane, then prove each ServiceAccount can do what it
needs and nothing more (``kubectl auth can-i --as=system:serviceaccount:...``, answered by the
API server's real RBAC authorizer), and that the samples pass server-side validation (CEL too).

The pods are pinned to a node that does not exist, so nothing runs: these tests are about the
objects and the permissions, not about the operator's behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.chartkit import CHART, REPO
from localcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.cluster

RELEASE = "certmodel"  # names: certmodel-operator, certmodel-trainer, certmodel-inference
NOWHERE = {"nodeSelector": {"certmodel.io/test-node": "none"}}
"""Keeps the chart's pods Pending: the local node agent binds only pods whose selector matches."""

# (account, verb, resource, extra args, allowed); {ns} is the release namespace.
Check = tuple[str, str, str, tuple[str, ...], bool]
OPERATOR: list[Check] = [
    ("operator", "create", "jobs.batch", (), True),
    ("operator", "delete", "jobs.batch", (), True),
    ("operator", "watch", "modeltrainings.certmodel.io", (), True),
    ("operator", "patch", "certifiedmodels.certmodel.io", (), True),
    ("operator", "update", "certifiedmodels.certmodel.io", ("--subresource=status",), True),
    ("operator", "patch", "modeltrainings.certmodel.io", ("--subresource=status",), True),
    ("operator", "update", "modeltrainings.certmodel.io", ("--subresource=finalizers",), True),
    ("operator", "create", "configmaps", (), True),
    ("operator", "delete", "configmaps", (), True),
    ("operator", "list", "pods", (), True),
    ("operator", "get", "pods", ("--subresource=log",), True),
    ("operator", "create", "events", (), True),
    ("operator", "create", "events.events.k8s.io", (), True),
    ("operator", "delete", "nodes", (), False),
    ("operator", "get", "secrets", (), False),
    ("operator", "list", "secrets", (), False),
    ("operator", "create", "pods", (), False),
    ("operator", "update", "jobs.batch", (), False),
    ("operator", "create", "modeltrainings.certmodel.io", (), False),
    ("operator", "delete", "certifiedmodels.certmodel.io", (), False),
    ("operator", "create", "rolebindings.rbac.authorization.k8s.io", (), False),
    ("operator", "create", "serviceaccounts", ("--subresource=token",), False),
    ("operator", "create", "jobs.batch", ("--namespace=default",), False),
    ("operator", "list", "kopfpeerings.kopf.dev", (), False),
]
INFERENCE: list[Check] = [
    ("inference", "get", "configmaps/demo-pointer", (), True),
    ("inference", "watch", "configmaps/demo-pointer", (), True),
    ("inference", "list", "configmaps/demo-pointer", (), True),
    ("inference", "get", "configmaps/other-pointer", (), False),
    ("inference", "list", "configmaps", (), False),
    ("inference", "update", "configmaps/demo-pointer", (), False),
    ("inference", "list", "pods", (), False),
    ("inference", "get", "secrets", (), False),
    ("inference", "get", "certifiedmodels.certmodel.io", (), False),
]
TRAINER: list[Check] = [
    ("trainer", "get", "configmaps", (), False),
    ("trainer", "list", "pods", (), False),
    ("trainer", "create", "jobs.batch", (), False),
    ("trainer", "get", "secrets", (), False),
    ("trainer", "get", "modeltrainings.certmodel.io", (), False),
]


def can_i(cluster: KubeCluster, ns: str, check: Check) -> bool:
    account, verb, resource, extra, _ = check
    proc = cluster.kubectl(
        "auth", "can-i", verb, resource, f"--namespace={ns}", *extra,
        f"--as=system:serviceaccount:{ns}:{RELEASE}-{account}",
        check=False,
    )  # fmt: skip
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


def assert_permissions(cluster: KubeCluster, ns: str, checks: list[Check]) -> None:
    """Every check answers as expected; waits briefly for the RBAC informers to catch up."""
    deadline = time.monotonic() + 15
    while True:
        wrong = [c for c in checks if can_i(cluster, ns, c) != c[4]]
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not wrong, "\n".join(
        f"{c[0]} {c[1]} {c[2]} {' '.join(c[3])}: want {c[4]}" for c in wrong
    )


@pytest.fixture
def install(kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path) -> Iterator[Any]:
    """Call with chart values; installs the release into the test's namespace."""

    def run(values: dict[str, Any]) -> None:
        values = {**values, "operator": {**NOWHERE, **values.get("operator", {})}}
        values["inference"] = {**NOWHERE, **values.get("inference", {})}
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        kube_cluster.helm(
            "install", RELEASE, str(CHART), "--namespace", kube_namespace, "-f", str(path)
        )
        installed.append(True)

    installed: list[bool] = []
    yield run
    if installed:
        kube_cluster.helm("uninstall", RELEASE, "--namespace", kube_namespace, "--wait")


def test_default_install_grants_each_account_exactly_its_needs(
    kube_cluster: KubeCluster, kube_namespace: str, install: Any
) -> None:
    install({})
    assert_permissions(kube_cluster, kube_namespace, OPERATOR + INFERENCE + TRAINER)


def test_inference_reads_its_pointer_through_the_api(
    kube_cluster: KubeCluster, kube_namespace: str, install: Any
) -> None:
    """Real requests, not only can-i: a get and the field-selected list a watch starts with."""
    install({})
    ns, who = kube_namespace, f"--as=system:serviceaccount:{kube_namespace}:{RELEASE}-inference"
    for name in ("demo-pointer", "other-pointer"):
        kube_cluster.kubectl("create", "configmap", name, f"--namespace={ns}")
    assert_permissions(kube_cluster, ns, INFERENCE[:1])
    kube_cluster.kubectl("get", "configmap", "demo-pointer", f"--namespace={ns}", who)
    listed = kube_cluster.kubectl(
        "get", "configmaps", "--field-selector=metadata.name=demo-pointer", "-o", "name",
        f"--namespace={ns}", who,
    )  # fmt: skip
    assert listed.stdout.split() == ["configmap/demo-pointer"]
    denied = kube_cluster.kubectl(
        "get", "configmap", "other-pointer", f"--namespace={ns}", who, check=False
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def test_install_without_inference_has_no_inference_account(
    kube_cluster: KubeCluster, kube_namespace: str, install: Any
) -> None:
    install({"inference": {"enabled": False}})
    accounts = kube_cluster.kubectl("get", "serviceaccounts", "-o", "name", "-n", kube_namespace)
    assert f"serviceaccount/{RELEASE}-inference" not in accounts.stdout.split()
    denied = [(c[0], c[1], c[2], c[3], False) for c in INFERENCE]
    assert_permissions(kube_cluster, kube_namespace, OPERATOR + TRAINER + denied)


def test_peered_install_creates_its_peering_and_may_touch_only_it(
    kube_cluster: KubeCluster, kube_namespace: str, install: Any
) -> None:
    install({"operator": {"replicas": 2}, "inference": {"enabled": False}})
    kube_cluster.kubectl("get", f"kopfpeerings.kopf.dev/{RELEASE}", "-n", kube_namespace)
    peering: list[Check] = [
        ("operator", "patch", f"kopfpeerings.kopf.dev/{RELEASE}", (), True),
        ("operator", "list", "kopfpeerings.kopf.dev", (), True),
        ("operator", "watch", "kopfpeerings.kopf.dev", (), True),
        ("operator", "patch", "kopfpeerings.kopf.dev/another", (), False),
        ("operator", "delete", f"kopfpeerings.kopf.dev/{RELEASE}", (), False),
    ]
    assert_permissions(kube_cluster, kube_namespace, [c for c in OPERATOR if c[4]] + peering)


def test_samples_pass_server_side_validation(
    kube_cluster: KubeCluster, kube_namespace: str, install: Any
) -> None:
    install({"inference": {"enabled": False}})
    out = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-f", str(REPO / "config" / "samples"), "-n", kube_namespace
    )
    assert sorted(out.stdout.split("\n")[:-1]) == [
        "certifiedmodel.certmodel.io/demo created (server dry run)",
        "modeltraining.certmodel.io/demo-v1 created (server dry run)",
        "modeltraining.certmodel.io/demo-v2 created (server dry run)",
    ]
