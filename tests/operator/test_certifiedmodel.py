"""CertifiedModel on the real API server: the pointer ConfigMap follows spec, refuses bad
targets, survives hand edits, and moves with compare-and-swap."""

from __future__ import annotations

import json
import time

import pytest
from factories import make_version
from opsupport import OperatorEnv, condition, pointer_dna, ready_on

pytestmark = pytest.mark.cluster

LINE = "chat"


def line(current: str | None, *, policy: str = "Manual") -> str:
    cur = f"\n    current: {current}" if current else ""
    return f"""
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {{name: {LINE}}}
spec:
  baseModel: tiny-base
  promotion:
    policy: {policy}{cur}
"""


@pytest.mark.reliability(
    "faults",
    "a line's target corrupted on the volume (one byte of its weights), or a DNA that does not"
    " exist, set as CURRENT",
    "refused with TargetCorrupt / TargetMissing naming the bad file; the pointer stays on the"
    " previous version",
)
def test_promote_rollback_and_refusals(operator_env: OperatorEnv) -> None:
    env = operator_env
    a = make_version(env.store, seed=1).dna
    b = make_version(env.store, seed=2).dna
    env.apply(line(a))
    obj = env.wait("certifiedmodels", LINE, ready_on(a))
    assert pointer_dna(env, LINE) == a
    assert obj["status"]["revision"] == 1 and obj["status"]["versionCount"] == 1

    env.apply(line(b))
    obj = env.wait("certifiedmodels", LINE, ready_on(b))
    assert pointer_dna(env, LINE) == b and obj["status"]["previous"] == a

    env.apply(line(a))  # back to the previous version: a rollback
    obj = env.wait("certifiedmodels", LINE, ready_on(a))
    assert obj["status"]["history"][-1]["reason"] == "rollback"
    assert ("RolledBack", "Normal") in env.events(LINE)

    # A corrupt target is refused; CURRENT stays, the condition says why.
    weights = env.store.version_path(b) / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    env.apply(line(b))
    obj = env.wait("certifiedmodels", LINE, lambda o: condition(o) == ("False", "TargetCorrupt"))
    assert pointer_dna(env, LINE) == a
    assert f"keeping CURRENT at {a}" in obj["status"]["message"]
    assert "adapter/adapter_model.safetensors" in obj["status"]["message"]

    # A DNA that does not exist is refused too.
    env.apply(line("tiny-base-lora-000000000000"))
    env.wait("certifiedmodels", LINE, lambda o: condition(o) == ("False", "TargetMissing"))
    assert pointer_dna(env, LINE) == a


@pytest.mark.reliability(
    "faults",
    "pointer ConfigMap hand-edited into unreadable content",
    "restored to spec with a higher revision; Warning PointerRestored",
)
def test_a_hand_edited_pointer_is_restored(operator_env: OperatorEnv) -> None:
    env = operator_env
    a = make_version(env.store, seed=1).dna
    env.apply(line(a))
    env.wait("certifiedmodels", LINE, ready_on(a))
    env.cluster.kubectl(
        "patch",
        "configmap",
        f"{LINE}-pointer",
        "-n",
        env.namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"pointer.json": "bogus"}}),
    )
    env.wait("certifiedmodels", LINE, lambda o: (o["status"].get("revision") or 0) >= 2)
    assert pointer_dna(env, LINE) == a
    assert ("PointerRestored", "Warning") in env.events(LINE)


@pytest.mark.reliability(
    "faults",
    "operator restarted at steady state",
    "no write at all after the restart: the line's and the pointer's resourceVersions unchanged",
)
def test_a_restarted_operator_writes_nothing_at_steady_state(operator_env: OperatorEnv) -> None:
    env = operator_env
    a = make_version(env.store, seed=1).dna
    env.apply(line(a))
    env.wait("certifiedmodels", LINE, ready_on(a))
    time.sleep(3)  # let the handlers' own bookkeeping settle
    before = env.get("certifiedmodels", LINE)["metadata"]["resourceVersion"]
    cm_before = env.config_map(f"{LINE}-pointer")
    env.stop_operator()
    env.start_operator()
    time.sleep(12)  # resume handlers and one timer tick run; nothing has changed
    env.check_alive()
    assert env.get("certifiedmodels", LINE)["metadata"]["resourceVersion"] == before
    cm_after = env.config_map(f"{LINE}-pointer")
    assert cm_before and cm_after
    assert cm_after["metadata"]["resourceVersion"] == cm_before["metadata"]["resourceVersion"]


def test_invalid_specs_are_rejected_by_the_api_server(operator_env: OperatorEnv) -> None:
    env = operator_env
    bad = env.cluster.kubectl(
        "apply",
        "-n",
        env.namespace,
        "-f",
        "-",
        check=False,
        input="""
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {name: bad}
spec:
  baseModel: tiny-base
  promotion: {policy: Sometimes, current: ../../etc}
""",
    )
    assert bad.returncode != 0
    assert "spec.promotion.policy" in bad.stderr and "Unsupported value" in bad.stderr
    assert "spec.promotion.current" in bad.stderr


def test_a_served_line_is_not_deleted_under_its_pods(operator_env: OperatorEnv) -> None:
    env = operator_env
    a = make_version(env.store, seed=1).dna
    env.apply(line(a))
    env.wait("certifiedmodels", LINE, ready_on(a))
    env.apply(f"""
apiVersion: v1
kind: Pod
metadata:
  name: server
  labels: {{certmodel.io/model: {LINE}, app.kubernetes.io/component: inference}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers: [{{name: main, image: ignored, command: [sleep, "300"]}}]
""")
    env.cluster.kubectl("delete", "certifiedmodel", LINE, "-n", env.namespace, "--wait=false")
    held = env.wait("certifiedmodels", LINE, lambda o: "deletionTimestamp" in o["metadata"])
    time.sleep(3)  # the finalizer's handler ran and refused
    assert (
        env.get("certifiedmodels", LINE)["metadata"]["finalizers"] == held["metadata"]["finalizers"]
    )
    env.cluster.kubectl("delete", "pod", "server", "-n", env.namespace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        gone = env.cluster.kubectl("get", "certifiedmodel", LINE, "-n", env.namespace, check=False)
        if gone.returncode != 0 and "NotFound" in gone.stderr:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the line was not deleted once unserved:\n{env.log_tail()}")
