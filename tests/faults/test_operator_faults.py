"""Fault injection on the control-plane side: the operator is killed mid-reconcile, a Job runs
past its deadline, the pointer ConfigMap is hand-edited to a bogus target, two replicas run
peered (and the active one dies), the API server restarts under the operator's watches.

Every scenario asserts that nothing is lost (the versions on the volume verify, CURRENT is where
spec says, no duplicate Job, version or pointer write) and that the system converges (Ready).
The operator and the control plane are real processes; the kills are real SIGKILLs, at named
fault points in the operator (``CERTMODEL_FAULTS``) or on a replica chosen by its peering
priority. The runtime half (training pods killed, disk full, ...) is test_runtime_faults.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from opsupport import OperatorEnv, condition, jobs, phase, ready_on
from tinymodels import corpus, write_jsonl

from certmodel.runtime.format.verify import verify_version

pytestmark = pytest.mark.cluster
reliability = pytest.mark.reliability

LINE = "chat"
PEERING = "certmodel"
"""The KopfPeering object the peered replicas coordinate through (``--peering``)."""
POINTER = f"{LINE}-pointer"
UNSCHEDULABLE = "{certmodel.io/faults: no-such-node}"
"""A nodeSelector no node matches: the Job exists, its pod waits, nothing burns CPU."""


# -- manifests and small helpers ---------------------------------------------------------------
def line(*, base: str = "tiny-base", current: str | None = None, name: str = LINE) -> str:
    policy = f"{{policy: Manual, current: {current}}}" if current else "{policy: Latest}"
    return f"""
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {{name: {name}}}
spec:
  baseModel: {base}
  promotion: {policy}
"""


def training(
    name: str,
    *,
    base: str = "tiny-llama",
    seed: int = 1,
    steps: int = 4,
    promote: bool = True,
    node_selector: str | None = None,
) -> str:
    selector = f", nodeSelector: {node_selector}" if node_selector else ""
    return f"""
apiVersion: certmodel.io/v1alpha1
kind: ModelTraining
metadata: {{name: {name}}}
spec:
  certifiedModel: {LINE}
  baseModel: {base}
  dataset: {{path: datasets/qa.jsonl}}
  method: {{r: 4, alpha: 8, targetModules: [q_proj, v_proj]}}
  hyperparameters: {{maxSteps: {steps}, batchSize: 4, maxSeqLen: 64, learningRate: 0.003,
                    seed: {seed}}}
  resources: {{cpu: "1", memory: 2Gi{selector}}}
  retries: 1
  deadlineSeconds: 60
  promote: {str(promote).lower()}
"""


def with_tiny_llama(env: OperatorEnv, tiny_llama: Path) -> None:
    """The tiny Llama as the volume's base model ``tiny-llama``, and a dataset beside it."""
    shutil.copytree(tiny_llama, env.store.base_models_dir / "tiny-llama")
    write_jsonl(env.store.root / "datasets" / "qa.jsonl", corpus())


def pointer_doc(env: OperatorEnv, name: str = POINTER) -> dict[str, Any]:
    cm = env.config_map(name)
    assert cm is not None, f"no pointer ConfigMap {name}"
    doc: dict[str, Any] = json.loads(cm["data"]["pointer.json"])
    return doc


def event_reasons(env: OperatorEnv, name: str) -> Counter[str]:
    return Counter(reason for reason, _ in env.events(name))


def wait_exit(env: OperatorEnv, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for an operator that a fault point is to kill; forget it once it is gone."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the fault point never fired:\n{env.log_tail()}") from None
    env.forget(proc)
    return code


def assert_versions_intact(env: OperatorEnv, expected: set[str]) -> None:
    """Exactly ``expected`` are published, each verifies; nothing half-published is left."""
    published = {p.name for p in env.store.certified_dir.iterdir()} - {".staging"}
    assert published == expected
    for dna in expected:
        assert verify_version(env.store.version_path(dna)).ok, dna


class PointerWrites:
    """Every write to a pointer ConfigMap, seen through a watch: (event type, data.revision)."""

    def __init__(self, env: OperatorEnv, name: str = POINTER) -> None:
        self.env, self.name = env, name
        self.seen: list[tuple[str, str]] = []
        self._stop, self._listening = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PointerWrites:
        self._thread.start()
        assert self._listening.wait(timeout=30), "the pointer watch never started"
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def revisions(self) -> list[str]:
        return [rev for _, rev in self.seen]

    def _run(self) -> None:
        from kubernetes import client, watch

        selector = f"metadata.name={self.name}"
        with self.env.cluster.api_client() as api:
            core = client.CoreV1Api(api)
            listed = core.list_namespaced_config_map(self.env.namespace, field_selector=selector)
            self.seen += [("EXISTING", (cm.data or {}).get("revision", "")) for cm in listed.items]
            rv = listed.metadata.resource_version
            self._listening.set()
            while not self._stop.is_set():
                for ev in watch.Watch().stream(
                    core.list_namespaced_config_map,
                    self.env.namespace,
                    field_selector=selector,
                    resource_version=rv,
                    timeout_seconds=2,
                ):
                    obj = ev["object"]
                    rv = obj.metadata.resource_version
                    self.seen.append((ev["type"], (obj.data or {}).get("revision", "")))


# -- 1. the operator killed mid-reconcile ------------------------------------------------------
@reliability(
    "faults",
    "operator SIGKILLed mid-reconcile, twice: right after it created a training Job (before"
    " any status was written), then right after it moved the line's pointer (before the"
    " line's status); restarted each time",
    "one Job throughout (same uid), one version, verifying; the pointer written once"
    " (revision 1, not rewritten after the restart); training Succeeded, line Ready on the"
    " trained DNA; no Event reason repeated",
)
@pytest.mark.torch
def test_operator_killed_mid_reconcile_converges_without_duplicates(
    bare_env: OperatorEnv, tiny_llama: Path
) -> None:
    env = bare_env
    with_tiny_llama(env, tiny_llama)
    env.apply(line(base="tiny-llama"))
    proc = env.start_operator(env={"CERTMODEL_FAULTS": "operator.job-created:kill"})
    env.apply(training("t1"))
    assert wait_exit(env, proc, timeout=120) == -9
    (job,) = jobs(env)
    uid, dna = job["metadata"]["uid"], job["metadata"]["labels"]["certmodel.io/dna"]
    assert not (env.get("modeltrainings", "t1").get("status") or {}).get("jobName")

    # Restarted: it adopts the Job, follows the training, promotes the version -- and dies
    # again right after writing the pointer, before recording it in the line's status.
    proc = env.start_operator(env={"CERTMODEL_FAULTS": "operator.pointer-written:kill"})
    assert wait_exit(env, proc, timeout=300) == -9
    assert pointer_doc(env)["target"]["dna"] == dna
    assert (env.get("certifiedmodels", LINE).get("status") or {}).get("current") != dna
    written = env.config_map(POINTER)
    assert written is not None

    env.start_operator()
    obj = env.wait("certifiedmodels", LINE, ready_on(dna), timeout=90)
    done = env.wait("modeltrainings", "t1", phase("Succeeded"), timeout=60)
    assert obj["status"]["revision"] == 1
    assert [h["revision"] for h in obj["status"]["history"]] == [1]
    assert done["status"]["jobName"] == f"train-{dna}" and condition(done) == ("True", "Trained")
    assert [j["metadata"]["uid"] for j in jobs(env)] == [uid]
    after = env.config_map(POINTER)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert_versions_intact(env, {dna})
    for name in ("t1", LINE):
        repeated = {r: n for r, n in event_reasons(env, name).items() if n > 1}
        assert not repeated, f"{name}: events repeated after the restarts: {repeated}"


# -- 2. a Job past its deadline ----------------------------------------------------------------
@reliability(
    "faults",
    "training Job runs past its activeDeadlineSeconds (the Job controller kills the running"
    " trainer)",
    "ModelTraining Failed with reason DeadlineExceeded, a message naming spec.deadlineSeconds"
    " and a Warning Event; not retried, no Job re-created; no version published; the line's"
    " pointer untouched and still Ready",
)
@pytest.mark.torch
def test_a_job_past_its_deadline_fails_cleanly(bare_env: OperatorEnv, tiny_llama: Path) -> None:
    env = bare_env
    with_tiny_llama(env, tiny_llama)
    live = make_version(env.store, base="tiny-llama", seed=7).dna
    env.start_operator()
    env.apply(line(base="tiny-llama", current=live))
    env.wait("certifiedmodels", LINE, ready_on(live))
    before = env.config_map(POINTER)
    assert before is not None

    env.apply(training("slow", steps=100_000))
    running = env.wait("modeltrainings", "slow", phase("Running"), timeout=120)
    job = running["status"]["jobName"]
    # The ModelTraining asks for 60 s, the shortest deadline the API takes; the test moves the
    # Job's clock forward (activeDeadlineSeconds is mutable) instead of waiting a minute.
    env.cluster.kubectl(
        "patch", "job", job, "-n", env.namespace, "-p", '{"spec":{"activeDeadlineSeconds":1}}'
    )
    failed = env.wait("modeltrainings", "slow", phase("Failed"), timeout=120)
    assert condition(failed, "Failed") == ("True", "DeadlineExceeded")
    assert condition(failed) == ("False", "DeadlineExceeded")
    assert "deadline of 60s (spec.deadlineSeconds)" in failed["status"]["message"]
    assert ("DeadlineExceeded", "Warning") in env.events("slow")
    (j,) = jobs(env)
    reasons = [c.get("reason") for c in j["status"].get("conditions") or []]
    assert "DeadlineExceeded" in reasons and (j["status"].get("succeeded") or 0) == 0

    time.sleep(4)  # two training ticks: still one Job, still Failed
    env.check_alive()
    assert len(jobs(env)) == 1
    assert env.get("modeltrainings", "slow")["status"]["phase"] == "Failed"
    assert_versions_intact(env, {live})
    obj = env.get("certifiedmodels", LINE)
    assert ready_on(live)(obj) and obj["status"]["revision"] == 1
    after = env.config_map(POINTER)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


# -- 3. the pointer hand-edited to a bogus target ---------------------------------------------
@contextlib.contextmanager
def serving(env: OperatorEnv) -> Iterator[tuple[Callable[[], str], Callable[[], dict[str, Any]]]]:
    """``certmodel serve`` following the pointer ConfigMap; yields (ask -> DNA, status)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = str(Path(sys.executable).with_name("certmodel"))
    with (env.log_path.parent / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                *(exe, "serve", "--root", str(env.store.root), "--pointer-configmap", POINTER),
                *("--namespace", env.namespace, "--kubeconfig", str(env.cluster.kubeconfig)),
                *("--port", str(port), "--threads", "1"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def ask() -> str:
        body = json.dumps({"prompt": "the model", "max_tokens": 2}).encode()
        req = urllib.request.Request(
            f"{base}/v1/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.headers["X-Model-DNA"])

    def status() -> dict[str, Any]:
        with urllib.request.urlopen(f"{base}/v1/status", timeout=30) as resp:
            out: dict[str, Any] = json.loads(resp.read())
        return out

    try:
        yield ask, status
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for_answer(ask: Callable[[], str], dna: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if ask() == dna:
                return
        time.sleep(0.3)
    raise AssertionError(f"the server never answered with {dna}")


@reliability(
    "faults",
    "pointer ConfigMap edited by hand to a bogus target (a well-formed pointer document naming"
    " a version that does not exist), under a live inference server",
    "the operator restores CURRENT to spec (revision +1, the bogus DNA not kept as 'previous'),"
    " reports it (Warning PointerRestored naming the bogus DNA), the line is Ready again; the"
    " server answers every request with the spec's version and never loads the bogus one",
)
@pytest.mark.torch
def test_a_pointer_edited_to_a_bogus_target_is_refused_and_restored(
    operator_env: OperatorEnv, tiny_llama: Path
) -> None:
    from certmodel.runtime.serving.tiny import publish_adapter

    env = operator_env
    shutil.copytree(tiny_llama, env.store.base_models_dir / "tiny-llama")
    live = publish_adapter(env.store, "tiny-llama", seed=1).dna
    env.apply(line(base="tiny-llama", current=live))
    env.wait("certifiedmodels", LINE, ready_on(live))
    bogus = live[:-12] + "0123456789ab"
    doc = pointer_doc(env)
    edited = {**doc, "target": {**doc["target"], "dna": bogus, "path": f"certified/{bogus}"}}

    with serving(env) as (ask, status):
        wait_for_answer(ask, live)
        env.cluster.kubectl(
            "patch",
            "configmap",
            POINTER,
            "-n",
            env.namespace,
            "--type=merge",
            "-p",
            json.dumps({"data": {"pointer.json": json.dumps(edited), "dna": bogus}}),
        )
        answers = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers.append(ask())
            if pointer_doc(env)["target"]["dna"] == live:
                break
        restored = pointer_doc(env)
        assert restored["target"]["dna"] == live, restored
        answers += [ask() for _ in range(3)]
        served = status()
    assert set(answers) == {live}
    assert bogus not in served["loaded"] and served["dna"] == live
    assert restored["revision"] == doc["revision"] + 1
    assert all(p["dna"] != bogus for p in restored["previous"])
    assert restored["history"][-1]["from_dna"] == bogus
    assert restored["history"][-1]["to_dna"] == live
    obj = env.wait("certifiedmodels", LINE, ready_on(live))
    assert obj["status"]["revision"] == doc["revision"] + 1
    assert obj["status"].get("previous") != bogus
    assert all(v["dna"] != bogus for v in obj["status"]["versions"])
    messages = env.cluster.kubectl(
        "get",
        "events",
        "-n",
        env.namespace,
        "--field-selector",
        f"involvedObject.name={LINE},reason=PointerRestored,type=Warning",
        "-o",
        "jsonpath={.items[*].message}",
    ).stdout
    assert bogus in messages and "does not exist" in messages, messages
    assert_versions_intact(env, {live})


# -- 4. two peered replicas --------------------------------------------------------------------
def start_replica(env: OperatorEnv, priority: int | None = None) -> subprocess.Popen[bytes]:
    """A peered replica; without ``priority`` it draws its own, as the chart's replicas do."""
    flags = ["--peering", PEERING, "--peering-lifetime", "8"]
    if priority is not None:
        flags += ["--peering-priority", str(priority)]
    return env.start_operator(*flags, standalone=False)


@reliability(
    "faults",
    "two operator replicas peered through a KopfPeering; trainings and pointer moves while both"
    " run, then the active replica SIGKILLed and more changes made",
    "exactly one Job per training; the pointer ConfigMap written exactly once per move"
    " (revisions 1, 2, 3 seen once each through a watch), one Event per move, no conflict left"
    " in status; after the kill the standby takes over: the next move (revision 4) and a new"
    " training's Job happen once, the line is Ready",
)
def test_two_replicas_write_once_and_the_standby_takes_over(
    bare_env: OperatorEnv, peering_crds: None
) -> None:
    env = bare_env
    env.apply(f"{{apiVersion: kopf.dev/v1, kind: KopfPeering, metadata: {{name: {PEERING}}}}}")
    a = make_version(env.store, seed=1).dna
    b = make_version(env.store, seed=2).dna
    write_jsonl(env.store.root / "datasets" / "qa.jsonl", corpus(20))
    # The chart's replicas run with the same flags. Before the operator drew a priority per
    # process, they tied at Kopf's default and Kopf paused them all: nothing was reconciled.
    active = start_replica(env)  # a drawn priority, always above 0
    standby = start_replica(env, priority=0)

    with PointerWrites(env) as writes:
        env.apply(line(current=a))
        for i in range(3):
            env.apply(training(f"t{i}", base="tiny-base", seed=i, node_selector=UNSCHEDULABLE))
        env.wait("certifiedmodels", LINE, ready_on(a))
        env.apply(line(current=b))
        env.wait("certifiedmodels", LINE, ready_on(b))
        env.apply(line(current=a))  # back: a rollback
        obj = env.wait("certifiedmodels", LINE, ready_on(a))
        trainings = [
            env.wait("modeltrainings", f"t{i}", lambda o: bool(o.get("status", {}).get("jobName")))
            for i in range(3)
        ]
        time.sleep(3)  # a standby that wrongly acted would write now
        assert writes.revisions() == ["1", "2", "3"], writes.seen
        assert sorted(j["metadata"]["name"] for j in jobs(env)) == sorted(
            t["status"]["jobName"] for t in trainings
        )
        assert len(jobs(env)) == 3
        assert [h["revision"] for h in obj["status"]["history"]] == [1, 2, 3]
        reasons = event_reasons(env, LINE)
        assert (reasons["Promoted"], reasons["RolledBack"]) == (2, 1), reasons
        assert "changed meanwhile" not in json.dumps(obj["status"])

        # The active replica dies without a goodbye; the standby takes over once its peering
        # entry expires, and acts on what changed meanwhile.
        env.kill_operator(active)
        env.apply(line(current=b))
        env.apply(training("t3", base="tiny-base", seed=3, node_selector=UNSCHEDULABLE))
        obj = env.wait("certifiedmodels", LINE, ready_on(b), timeout=120)
        env.wait("modeltrainings", "t3", lambda o: bool(o.get("status", {}).get("jobName")))
        time.sleep(2)
        assert writes.revisions() == ["1", "2", "3", "4"], writes.seen
    assert standby.poll() is None
    assert len(jobs(env)) == 4
    assert obj["status"]["revision"] == 4 and "changed meanwhile" not in json.dumps(obj["status"])
    assert_versions_intact(env, {a, b})


# -- 5. the API server restarted under the operator's watches ---------------------------------
@reliability(
    "faults",
    "kube-apiserver restarted (same port, certificates and etcd) while the operator watches"
    " (a dedicated control plane)",
    "the operator keeps running; a change made after the restart (a new CURRENT, a new line)"
    " is picked up and the lines are Ready on it; the pointer moved once (revision 2), the"
    " versions verify",
)
def test_the_operator_rides_out_an_apiserver_restart(own_env: OperatorEnv) -> None:
    env = own_env
    a = make_version(env.store, seed=1).dna
    b = make_version(env.store, seed=2).dna
    env.apply(line(current=a))
    env.wait("certifiedmodels", LINE, ready_on(a))
    plane = env.cluster.plane
    assert plane is not None
    plane.restart_apiserver(grace=2)  # SIGTERM: it stops listening at once; SIGKILL after 2 s
    env.check_alive()
    env.apply(line(current=b))
    env.apply(line(current=a, name="other"))
    obj = env.wait("certifiedmodels", LINE, ready_on(b), timeout=120)
    env.wait("certifiedmodels", "other", ready_on(a), timeout=60)
    env.check_alive()
    assert obj["status"]["revision"] == 2 and pointer_doc(env)["revision"] == 2
    assert pointer_doc(env, "other-pointer")["target"]["dna"] == a
    assert_versions_intact(env, {a, b})
