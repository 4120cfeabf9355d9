"""The bad-input table: invalid ModelTrainings and CertifiedModels against the real API server.

Each row is one test. A row either is refused by the API server (the CRD's structural schema,
its CEL rules, or strict field validation), with an error that names the offending field and
nothing stored; or the object is accepted because only the operator can see what is wrong (a
symlink out of the volume, a base model that is not there, a DNA that does not exist, a dataset
that is not JSONL), and then its status says so in words, and nothing is created: no Job, no
training ConfigMap, no pointer ConfigMap, no version folder.

Rows that the existing tests already cover are not repeated here: ``../../etc/passwd`` as a
dataset and an immutable recipe (test_modeltraining.py), a malformed JSONL line, a missing
dataset, an unknown promotion policy and a missing DNA on a line that already has a CURRENT
(test_certifiedmodel.py).
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from localcluster import k8s
from localcluster.pytest_plugin import KubeCluster
from opsupport import CLAIM, OperatorEnv, condition
from tinymodels import build_tiny_llama, corpus, write_jsonl

from certmodel.runtime.format.store import Store

pytestmark = pytest.mark.cluster

Obj = dict[str, Any]

TRAINING: Obj = {
    "apiVersion": "certmodel.io/v1alpha1",
    "kind": "ModelTraining",
    "metadata": {"name": "row"},
    "spec": {
        "certifiedModel": "chat",
        "baseModel": "tiny-llama",
        "dataset": {"path": "datasets/qa.jsonl"},
        "method": {"r": 4, "alpha": 8},
        "hyperparameters": {"maxSteps": 4, "batchSize": 4, "maxSeqLen": 64},
        "resources": {"cpu": "1", "memory": "2Gi"},
        "retries": 1,
        "deadlineSeconds": 600,
    },
}
LINE: Obj = {
    "apiVersion": "certmodel.io/v1alpha1",
    "kind": "CertifiedModel",
    "metadata": {"name": "row"},
    "spec": {"baseModel": "tiny-llama", "promotion": {"policy": "Manual"}},
}
HUGE = "a" * 100_000
"""100 KB: far beyond every maxLength, well below the API server's request limit."""
MISSING_DNA = "tiny-llama-lora-0123456789ab"


def edit(base: Obj, path: str, value: Any) -> Obj:
    """A deep copy of ``base`` with the dotted ``path`` set to ``value``."""
    obj = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return obj


def row(case_id: str, scenario: str, checked: str, *values: Any) -> Any:
    return pytest.param(
        *values, id=case_id, marks=pytest.mark.reliability("bad input", scenario, checked)
    )


REFUSED = "refused by the API server, the error names {field}; nothing stored"

SCHEMA_ROWS = [
    row(
        "maxSteps-string",
        "ModelTraining with a string for hyperparameters.maxSteps",
        REFUSED.format(field="spec.hyperparameters.maxSteps"),
        edit(TRAINING, "spec.hyperparameters.maxSteps", "ten"),
        ["spec.hyperparameters.maxSteps", "must be of type integer"],
    ),
    row(
        "baseModel-list",
        "ModelTraining with a list for baseModel",
        REFUSED.format(field="spec.baseModel"),
        edit(TRAINING, "spec.baseModel", ["tiny-llama"]),
        ["spec.baseModel", "must be of type string"],
    ),
    row(
        "lora-r-zero",
        "ModelTraining with LoRA rank 0",
        REFUSED.format(field="spec.method.r"),
        edit(TRAINING, "spec.method.r", 0),
        ["spec.method.r", "greater than or equal to 1"],
    ),
    row(
        "learningRate-negative",
        "ModelTraining with a negative learning rate",
        REFUSED.format(field="spec.hyperparameters.learningRate"),
        edit(TRAINING, "spec.hyperparameters.learningRate", -0.001),
        ["spec.hyperparameters.learningRate", "greater than 0"],
    ),
    row(
        "maxSteps-huge",
        "ModelTraining with maxSteps 10^12 (beyond the maximum)",
        REFUSED.format(field="spec.hyperparameters.maxSteps"),
        edit(TRAINING, "spec.hyperparameters.maxSteps", 10**12),
        ["spec.hyperparameters.maxSteps", "less than or equal to 10000000"],
    ),
    row(
        "maxSeqLen-zero",
        "ModelTraining with maxSeqLen 0 (no token fits a block)",
        REFUSED.format(field="spec.hyperparameters.maxSeqLen"),
        edit(TRAINING, "spec.hyperparameters.maxSeqLen", 0),
        ["spec.hyperparameters.maxSeqLen", "greater than or equal to 1"],
    ),
    row(
        "unknown-field-strict",
        "ModelTraining with a misspelt field (hyperparamters), kubectl apply --validate=strict",
        "strict field validation refuses it naming the unknown field; nothing stored",
        edit(TRAINING, "spec.hyperparamters", {"maxSteps": 4}),
        ['unknown field "spec.hyperparamters"', "strict decoding error"],
    ),
    row(
        "huge-baseModel",
        "ModelTraining with a 100 KB baseModel",
        REFUSED.format(field="spec.baseModel (Too long)"),
        edit(TRAINING, "spec.baseModel", HUGE),
        ["spec.baseModel", "Too long"],
    ),
    row(
        "huge-dataset-path",
        "ModelTraining with a 100 KB dataset path",
        REFUSED.format(field="spec.dataset.path (Too long)"),
        edit(TRAINING, "spec.dataset.path", HUGE),
        ["spec.dataset.path", "Too long"],
    ),
    row(
        "huge-image",
        "ModelTraining with a 100 KB image override",
        REFUSED.format(field="spec.image (Too long)"),
        edit(TRAINING, "spec.image", HUGE),
        ["spec.image", "Too long"],
    ),
    row(
        "huge-node-selector-value",
        "ModelTraining with a 100 KB nodeSelector value",
        REFUSED.format(field="spec.resources.nodeSelector"),
        edit(TRAINING, "spec.resources.nodeSelector", {"pool": HUGE}),
        ["spec.resources.nodeSelector.pool", "Too long"],
    ),
    row(
        "node-selector-bad-key",
        "ModelTraining with a nodeSelector key that is no label key ('gpu type!')",
        REFUSED.format(field="spec.resources.nodeSelector"),
        edit(TRAINING, "spec.resources.nodeSelector", {"gpu type!": "a100"}),
        ["spec.resources.nodeSelector", "keys must be label keys"],
    ),
    row(
        "image-with-spaces",
        "ModelTraining with an image override holding a shell command",
        REFUSED.format(field="spec.image"),
        edit(TRAINING, "spec.image", "runtime:1; rm -rf /"),
        ["spec.image", "should match"],
    ),
    row(
        "target-module-traversal",
        "ModelTraining with a LoRA target module '../x'",
        REFUSED.format(field="spec.method.targetModules[0]"),
        edit(TRAINING, "spec.method.targetModules", ["../x"]),
        ["spec.method.targetModules[0]", "should match"],
    ),
    row(
        "dataset-absolute",
        "ModelTraining with dataset path /etc/passwd (absolute)",
        REFUSED.format(field="spec.dataset.path"),
        edit(TRAINING, "spec.dataset.path", "/etc/passwd"),
        ["spec.dataset.path", "should match"],
    ),
    row(
        "dataset-dotdot-inside",
        "ModelTraining with dataset path datasets/../../x ('..' after a folder)",
        REFUSED.format(field="spec.dataset.path (no '..' segments)"),
        edit(TRAINING, "spec.dataset.path", "datasets/../../x"),
        ["spec.dataset.path", "must stay inside the models volume"],
    ),
    row(
        "baseModel-traversal",
        "ModelTraining with baseModel ../../etc",
        REFUSED.format(field="spec.baseModel"),
        edit(TRAINING, "spec.baseModel", "../../etc"),
        ["spec.baseModel", "should match"],
    ),
    row(
        "baseModel-absolute",
        "ModelTraining with baseModel /etc (absolute)",
        REFUSED.format(field="spec.baseModel"),
        edit(TRAINING, "spec.baseModel", "/etc"),
        ["spec.baseModel", "should match"],
    ),
    row(
        "name-not-dns",
        "ModelTraining named Bad_Name (not a DNS subdomain)",
        REFUSED.format(field="metadata.name"),
        edit(TRAINING, "metadata.name", "Bad_Name"),
        ["metadata.name", "RFC 1123"],
    ),
    row(
        "name-too-long",
        "ModelTraining with a 100-character name (it must fit a label value)",
        REFUSED.format(field="metadata.name (at most 63 characters)"),
        edit(TRAINING, "metadata.name", "x" * 100),
        ["metadata.name", "Too long"],
    ),
    row(
        "certifiedModel-not-dns",
        "ModelTraining for the model line Chat_Line (not a DNS label)",
        REFUSED.format(field="spec.certifiedModel"),
        edit(TRAINING, "spec.certifiedModel", "Chat_Line"),
        ["spec.certifiedModel", "should match"],
    ),
    row(
        "canary-percent-101",
        "CertifiedModel with a canary at 101 percent",
        REFUSED.format(field="spec.canary.percent"),
        edit(LINE, "spec.canary", {"dna": MISSING_DNA, "percent": 101}),
        ["spec.canary.percent", "less than or equal to 100"],
    ),
    row(
        "current-not-a-dna",
        "CertifiedModel with current: LATEST (not a DNA)",
        REFUSED.format(field="spec.promotion.current"),
        edit(LINE, "spec.promotion.current", "LATEST"),
        ["spec.promotion.current", "should match"],
    ),
    row(
        "pointer-configmap-not-dns",
        "CertifiedModel with pointer ConfigMap name Bad_CM",
        REFUSED.format(field="spec.pointerConfigMap"),
        edit(LINE, "spec.pointerConfigMap", "Bad_CM"),
        ["spec.pointerConfigMap", "should match"],
    ),
    row(
        "huge-serving-selector",
        "CertifiedModel with a 100 KB servingSelector value",
        REFUSED.format(field="spec.servingSelector"),
        edit(LINE, "spec.servingSelector", {"app": HUGE}),
        ["spec.servingSelector.app", "Too long"],
    ),
    row(
        "line-unknown-field-strict",
        "CertifiedModel with a misspelt field (promotion.gate), kubectl apply --validate=strict",
        "strict field validation refuses it naming the unknown field; nothing stored",
        edit(LINE, "spec.promotion.gate", {"maxEvalLoss": 1}),
        ['unknown field "spec.promotion.gate"', "strict decoding error"],
    ),
    row(
        "line-name-too-long",
        "CertifiedModel with a 100-character name",
        REFUSED.format(field="metadata.name (at most 63 characters)"),
        edit(LINE, "metadata.name", "y" * 100),
        ["metadata.name", "Too long"],
    ),
]


@pytest.fixture(scope="module")
def namespace(kube_cluster: KubeCluster, crds: None) -> Iterator[str]:
    """One namespace for the schema rows (they store nothing, so they can share it)."""
    name = f"t-bad-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def plural(obj: Obj) -> str:
    return "modeltrainings" if obj["kind"] == "ModelTraining" else "certifiedmodels"


@pytest.mark.parametrize(("obj", "expected"), SCHEMA_ROWS)
def test_refused_by_the_api_server(
    kube_cluster: KubeCluster, namespace: str, obj: Obj, expected: list[str]
) -> None:
    out = kube_cluster.kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=json.dumps(obj),
        check=False,
    )  # fmt: skip
    assert out.returncode != 0, f"accepted: {out.stdout}"
    for text in expected:
        assert text in out.stderr, out.stderr[:2000]
    listed = kube_cluster.kubectl("get", plural(obj), "-n", namespace, "-o", "name")
    assert listed.stdout.strip() == ""


@pytest.mark.reliability(
    "bad input",
    "ModelTraining with an unknown field applied without strict validation (--validate=false)",
    "the API server prunes the unknown field (structural schema) and keeps the rest;"
    " with --validate=strict the same object is refused",
)
def test_unknown_fields_are_pruned_without_strict_validation(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    obj = edit(TRAINING, "spec.hyperparameters.maxStepz", 99)
    obj["metadata"]["name"] = "pruned"
    kube_cluster.kubectl(
        "apply", "--validate=false", "-n", namespace, "-f", "-", input=json.dumps(obj)
    )
    stored = json.loads(
        kube_cluster.kubectl("get", "mt", "pruned", "-n", namespace, "-o", "json").stdout
    )
    hp = stored["spec"]["hyperparameters"]
    assert "maxStepz" not in hp and hp["maxSteps"] == 4
    kube_cluster.kubectl("delete", "mt", "pruned", "-n", namespace)
    strict = kube_cluster.kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=json.dumps(obj),
        check=False,
    )  # fmt: skip
    assert strict.returncode != 0
    assert 'unknown field "spec.hyperparameters.maxStepz"' in strict.stderr


# ---- rows the schema cannot see: accepted, reported in status, nothing created ------------


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def env(
    kube_cluster: KubeCluster, crds: None, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorEnv]:
    """One operator for every status row (each row uses its own object names)."""
    tmp = tmp_path_factory.mktemp("badinput")
    root = tmp / "models"
    root.mkdir()
    root.chmod(0o777)
    ns = f"t-bad-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", ns)
    kube_cluster.wait_for_service_account(ns)
    pv = f"models-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl(
        "apply", "-f", "-", input=k8s.hostpath_volume(root, name=pv, namespace=ns, claim=CLAIM)
    )
    store = Store(root)
    shutil.copytree(tiny_base, store.base_models_dir / "tiny-llama")
    write_jsonl(root / "datasets" / "qa.jsonl", corpus(40))
    op = OperatorEnv(kube_cluster, ns, store, tmp / "operator.log")
    op.start_operator()
    try:
        yield op
    finally:
        op.stop_operator()
        kube_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kube_cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def labelled(env: OperatorEnv, kind: str, selector: str) -> list[str]:
    out = env.cluster.kubectl("get", kind, "-n", env.namespace, "-l", selector, "-o", "name")
    return out.stdout.split()


def versions(store: Store) -> set[str]:
    folder = store.root / "certified"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def failed_with(reason: str) -> Callable[[Obj], bool]:
    return lambda o: condition(o, "Failed") == ("True", reason)


Setup = Callable[[OperatorEnv, Path], Obj]
"""Prepares the volume for a row (``outside`` is a folder beside it); returns the object."""


def symlinked_dataset(env: OperatorEnv, outside: Path) -> Obj:
    link = env.store.root / "datasets" / "passwd.jsonl"
    link.symlink_to("/etc/passwd")
    return edit(TRAINING, "spec.dataset.path", "datasets/passwd.jsonl")


def relative_link_out(env: OperatorEnv, outside: Path) -> Obj:
    write_jsonl(outside / "secret.jsonl", [{"text": "not for training"}])
    link = env.store.root / "datasets" / "up.jsonl"
    link.symlink_to(Path("..") / ".." / outside.name / "secret.jsonl")
    assert link.resolve() == (outside / "secret.jsonl").resolve()
    return edit(TRAINING, "spec.dataset.path", "datasets/up.jsonl")


def symlinked_base(env: OperatorEnv, outside: Path) -> Obj:
    # A perfectly loadable model, but outside the volume: still refused.
    shutil.copytree(env.store.base_models_dir / "tiny-llama", outside / "elsewhere")
    (env.store.base_models_dir / "linked").symlink_to(outside / "elsewhere")
    return edit(TRAINING, "spec.baseModel", "linked")


def missing_base(env: OperatorEnv, outside: Path) -> Obj:
    return edit(TRAINING, "spec.baseModel", "no-such-base")


def pickle_base(env: OperatorEnv, outside: Path) -> Obj:
    folder = env.store.base_models_dir / "pickled"
    shutil.copytree(env.store.base_models_dir / "tiny-llama", folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04\x95pickle")
    return edit(TRAINING, "spec.baseModel", "pickled")


STATUS_ROWS = [
    row(
        "dataset-symlink-to-etc-passwd",
        "ModelTraining whose dataset is a symlink on the volume to /etc/passwd",
        "Failed/PathOutsideVolume naming spec.dataset.path, the target not revealed;"
        " no Job, no ConfigMap, no version",
        symlinked_dataset,
        "PathOutsideVolume",
        ["spec.dataset.path", "datasets/passwd.jsonl", "outside the models volume"],
    ),
    row(
        "dataset-relative-symlink-out",
        "ModelTraining whose dataset is a relative symlink (../../) leaving the volume",
        "Failed/PathOutsideVolume naming spec.dataset.path; nothing created",
        relative_link_out,
        "PathOutsideVolume",
        ["spec.dataset.path", "datasets/up.jsonl", "outside the models volume"],
    ),
    row(
        "base-model-symlink-out",
        "ModelTraining whose base model folder is a symlink to a (loadable) model outside",
        "Failed/PathOutsideVolume naming spec.baseModel; nothing created",
        symlinked_base,
        "PathOutsideVolume",
        ["spec.baseModel", "base_models/linked", "outside the models volume"],
    ),
    row(
        "base-model-missing",
        "ModelTraining naming a base model that is not on the volume",
        "Failed/InputNotFound naming the base model; nothing created",
        missing_base,
        "InputNotFound",
        ["no-such-base", "not found"],
    ),
    row(
        "base-model-pickle-only",
        "ModelTraining on a base model with pickle weights only (pytorch_model.bin)",
        "Failed/InvalidInput saying pickle weights are refused; nothing created",
        pickle_base,
        "InvalidInput",
        ["pickled", "pickle weights", "pytorch_model.bin"],
    ),
]


@pytest.mark.torch
@pytest.mark.parametrize(("setup", "reason", "expected"), STATUS_ROWS)
def test_training_reported_in_status_nothing_created(
    env: OperatorEnv,
    request: pytest.FixtureRequest,
    setup: Setup,
    reason: str,
    expected: list[str],
) -> None:
    name = request.node.callspec.id
    outside = env.store.root.parent / f"outside-{name}"
    outside.mkdir()
    obj = setup(env, outside)
    obj["metadata"]["name"] = name
    before = versions(env.store)
    env.apply(json.dumps(obj))
    failed = env.wait("modeltrainings", name, failed_with(reason), timeout=90)
    st = failed["status"]
    assert st["phase"] == "Failed" and condition(failed) == ("False", reason)
    for text in expected:
        assert text in st["message"], st["message"]
    assert "root:" not in st["message"]  # nothing of /etc/passwd leaks into status
    assert (reason, "Warning") in env.events(name)
    assert not st.get("jobName") and not st.get("dna")
    assert labelled(env, "jobs", f"certmodel.io/training={name}") == []
    assert labelled(env, "configmaps", f"certmodel.io/training={name}") == []
    assert versions(env.store) == before


@pytest.mark.torch
@pytest.mark.reliability(
    "bad input",
    "ModelTraining whose dataset is not JSONL (gzip bytes in a .jsonl file)",
    "the Job runs once and fails (no retry); Failed/BadInput with the trainer's message"
    " naming the file and 'not UTF-8 text'; no version published",
)
def test_dataset_that_is_not_jsonl_fails_with_the_trainers_message(env: OperatorEnv) -> None:
    data = env.store.root / "datasets" / "packed.jsonl"
    data.write_bytes(gzip.compress(b'{"text": "hello"}\n' * 50))
    obj = edit(TRAINING, "spec.dataset.path", "datasets/packed.jsonl")
    obj["metadata"]["name"] = "not-jsonl"
    before = versions(env.store)
    env.apply(json.dumps(obj))
    failed = env.wait("modeltrainings", "not-jsonl", failed_with("BadInput"), timeout=240)
    message = failed["status"]["message"]
    assert "packed.jsonl" in message and "not UTF-8 text" in message, message
    jobs = json.loads(
        env.cluster.kubectl(
            "get", "jobs", "-n", env.namespace, "-l", "certmodel.io/training=not-jsonl",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert len(jobs) == 1 and jobs[0]["status"]["failed"] == 1
    assert versions(env.store) == before
    assert not env.store.version_path(failed["status"]["dna"]).exists()


def line_named(name: str, **spec: Any) -> Obj:
    obj = copy.deepcopy(LINE)
    obj["metadata"]["name"] = name
    obj["spec"].update(spec)
    return obj


@pytest.mark.reliability(
    "bad input",
    "new CertifiedModel (Manual) whose current names a DNA that does not exist",
    "Ready False/TargetMissing, 'CURRENT stays unset'; no pointer ConfigMap is created",
)
def test_line_with_a_missing_dna_creates_no_pointer(env: OperatorEnv) -> None:
    env.apply(
        json.dumps(line_named("ghost", promotion={"policy": "Manual", "current": MISSING_DNA}))
    )
    obj = env.wait("certifiedmodels", "ghost", lambda o: condition(o) == ("False", "TargetMissing"))
    assert MISSING_DNA in obj["status"]["message"]
    assert "CURRENT stays unset" in obj["status"]["message"]
    assert not obj["status"].get("current")
    assert env.config_map("ghost-pointer") is None
    assert ("TargetMissing", "Warning") in env.events("ghost")


@pytest.mark.reliability(
    "bad input",
    "new CertifiedModel whose current names a version built on another base model",
    "Ready False/TargetWrongBase naming both bases; no pointer ConfigMap is created",
)
def test_line_refuses_a_version_of_another_base(env: OperatorEnv) -> None:
    other = make_version(env.store, seed=5, base="other-base").dna
    env.apply(json.dumps(line_named("mixed", promotion={"policy": "Manual", "current": other})))
    obj = env.wait(
        "certifiedmodels", "mixed", lambda o: condition(o) == ("False", "TargetWrongBase")
    )
    message = obj["status"]["message"]
    assert other in message and "other-base" in message and "tiny-llama" in message, message
    assert env.config_map("mixed-pointer") is None
