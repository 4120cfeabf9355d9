"""The security baseline, checked for real where it can be.

- Pod Security "restricted": every workload the chart renders (each ci/*-values.yaml set) and
  the operator's training Job are admitted as Pods by the API server's own PodSecurity admission
  in a namespace that enforces ``restricted`` (tests/chart/test_chart.py checks the chart's
  fields statically; this is the server's verdict, and it covers the operator's Job too).
- RBAC: the rendered Roles, bound in a real API server, grant each ServiceAccount no wildcard
  and no access to Secrets, pod exec, or RBAC itself (``kubectl auth can-i --list``, so
  aggregation or a broad rule cannot hide behind a tidy-looking manifest).
- No secrets in logs or status: the operator, on a ServiceAccount token with ``--verbose``,
  runs a line and a training beside a Secret; neither the token nor the Secret's data appears
  in its log, in any status or in events; the training Job carries no secret values.
- Only safetensors/JSON loaded: a version holding pickle weights is refused by the serving
  admission and by the operator's view of the volume; no ``torch.load``/``pickle`` call exists
  outside runtime/migrate (where it is ``weights_only=True``), no ``trust_remote_code=True``.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.chartkit import CHART, CI_VALUES, POD_TEMPLATE_KINDS, containers, helm
from factories import make_version
from localcluster.pytest_plugin import KubeCluster
from opsupport import OperatorEnv, condition

from certmodel.operator.api.modeltraining import ModelTrainingSpec
from certmodel.operator.decisions.manifests import OperatorConfig, training_job
from certmodel.operator.volume import ModelsVolume
from certmodel.runtime.format.digest import FileEntry, content_digest, file_sha256
from certmodel.runtime.format.manifest import MANIFEST_NAME, Manifest
from certmodel.runtime.format.pointer import PointerTarget
from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.targets import TargetRefusedError, check_target

REPO = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]
DNA = "tiny-llama-lora-0123456789ab"


def security(scenario: str, checked: str) -> pytest.MarkDecorator:
    return pytest.mark.reliability("security", scenario, checked)


# ---- Pod Security "restricted", by the API server's PodSecurity admission -------------------


@pytest.fixture(scope="module")
def crds(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    for crd in ("modeltrainings", "certifiedmodels"):
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{crd}.certmodel.io", "--timeout=60s"
        )


@pytest.fixture(scope="module")
def restricted_ns(kube_cluster: KubeCluster) -> Iterator[str]:
    """A namespace whose PodSecurity admission enforces (and warns on) ``restricted``."""
    name = f"t-psa-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                f"pod-security.kubernetes.io/{mode}": level
                for m in ("enforce", "warn") for mode, level in
                ((m, "restricted"), (f"{m}-version", "latest"))
            }},
        }),
    )  # fmt: skip
    kube_cluster.wait_for_service_account(name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def rendered(values: Path, namespace: str, release: str = "demo") -> list[Obj]:
    out = helm("template", release, str(CHART), "--namespace", namespace, "-f", str(values))
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def as_pod(where: str, template: Obj, namespace: str) -> Obj:
    """The Pod a controller would create from ``template``."""
    name = re.sub(r"[^a-z0-9-]", "-", where.lower())[:60]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template.get("metadata", {}).get("labels", {}),
        },
        "spec": template["spec"],
    }


def service_accounts(pods: list[Obj], namespace: str) -> str:
    names = sorted({p["spec"].get("serviceAccountName", "default") for p in pods})
    items = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": n, "namespace": namespace},
        }
        for n in names
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def admit(cluster: KubeCluster, namespace: str, objs: list[Obj]) -> None:
    """Server-side dry run of ``objs``; fail on any rejection or PodSecurity warning."""
    out = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", check=False,
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "PodSecurity" not in out.stderr, out.stderr
    assert out.stdout.count("(server dry run)") == len(objs), out.stdout


def operator_jobs(namespace: str) -> list[Obj]:
    """The training Jobs the operator builds: single-GPU/CPU, and torchrun with placement."""
    plain = ModelTrainingSpec.model_validate(
        {"certifiedModel": "chat", "baseModel": "tiny-llama", "dataset": {"path": "d.jsonl"}}
    )
    multi = ModelTrainingSpec.model_validate(
        {
            **plain.wire(),
            "resources": {
                "gpus": 2,
                "nodeSelector": {"pool": "gpu"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
        }
    )
    return [
        training_job(
            name=f"run-{i}", uid=str(uuid.uuid4()), namespace=namespace,
            dna=DNA.replace("0123", f"{i:04d}"), spec=spec, config=OperatorConfig(),
        )
        for i, spec in enumerate((plain, multi))
    ]  # fmt: skip


def test_podsecurity_admission_is_really_enforcing(
    kube_cluster: KubeCluster, restricted_ns: str
) -> None:
    """The control: a Pod without a restricted securityContext is refused in the namespace."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose", "namespace": restricted_ns},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    out = kube_cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert out.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in out.stderr
    assert "allowPrivilegeEscalation" in out.stderr and "runAsNonRoot" in out.stderr


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            v,
            id=v.name.removesuffix("-values.yaml"),
            marks=security(
                f"every Pod the chart creates with ci/{v.name}, in a namespace enforcing"
                " Pod Security restricted",
                "the API server's PodSecurity admission admits each Pod and warns about no"
                " Deployment/Job (server-side dry run)",
            ),
        )
        for v in CI_VALUES
    ],
)
def test_chart_pods_pass_restricted_admission(
    kube_cluster: KubeCluster, restricted_ns: str, values: Path
) -> None:
    objs = rendered(values, restricted_ns)
    workloads = [o for o in objs if o["kind"] in POD_TEMPLATE_KINDS]
    assert workloads
    pods = [
        as_pod(f"{o['kind']}-{o['metadata']['name']}", o["spec"]["template"], restricted_ns)
        for o in workloads
    ]
    kube_cluster.kubectl("apply", "-f", "-", input=service_accounts(pods, restricted_ns))
    admit(kube_cluster, restricted_ns, pods)
    admit(kube_cluster, restricted_ns, workloads)


@security(
    "the operator's training Jobs (CPU, and torchrun on 2 GPUs with node placement), in a"
    " namespace enforcing Pod Security restricted",
    "PodSecurity admission admits their Pods and warns about no Job; read-only root"
    " filesystem, no host namespaces or hostPath, no service-account token",
)
def test_training_job_passes_restricted_admission(
    kube_cluster: KubeCluster, restricted_ns: str
) -> None:
    jobs = operator_jobs(restricted_ns)
    pods = [as_pod(j["metadata"]["name"], j["spec"]["template"], restricted_ns) for j in jobs]
    for pod in pods:
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert not {"hostNetwork", "hostPID", "hostIPC"} & spec.keys()
        assert all("hostPath" not in v for v in spec["volumes"])
        for c in containers(spec):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert not c["securityContext"].get("privileged")
    kube_cluster.kubectl("apply", "-f", "-", input=service_accounts(pods, restricted_ns))
    admit(kube_cluster, restricted_ns, pods)
    admit(kube_cluster, restricted_ns, jobs)


# ---- RBAC: what each ServiceAccount can really do -------------------------------------------

FORBIDDEN = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "pods/exec"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "serviceaccounts"),
    ("create", "serviceaccounts/token"),
]
DISCOVERY = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}
"""What every authenticated user may do (system:basic-user); not granted by the chart."""


def can_i_list(cluster: KubeCluster, namespace: str, user: str) -> list[tuple[str, str, str]]:
    """(resource, resourceNames, verbs) rows of ``kubectl auth can-i --list`` for ``user``."""
    out = cluster.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={user}").stdout
    rows = []
    for line in out.splitlines()[1:]:
        cols = re.split(r"\s{2,}", line.strip())
        if len(cols) == 4 and not cols[1].strip("[]"):  # resource rules, not URL ones
            rows.append((cols[0], cols[2], cols[3]))
    return rows


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            v,
            id=v.name.removesuffix("-values.yaml"),
            marks=security(
                f"the chart's RBAC with ci/{v.name}, bound in a real API server",
                "kubectl auth can-i for each ServiceAccount: no wildcard resource or verb,"
                " no Secrets, pods/exec, tokens, impersonation or RBAC writes",
            ),
        )
        for v in CI_VALUES
        if v.name in ("default-values.yaml", "peered-replicas-values.yaml")
    ],
)
def test_effective_rbac_has_no_wildcards_and_no_secrets(
    kube_cluster: KubeCluster, values: Path
) -> None:
    ns = f"t-rbac-{uuid.uuid4().hex[:6]}"
    release = f"r{uuid.uuid4().hex[:6]}"  # cluster-scoped names must not collide
    kube_cluster.kubectl("create", "namespace", ns)
    rbac_kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    objs = [o for o in rendered(values, ns, release) if o["kind"] in rbac_kinds]
    try:
        kube_cluster.kubectl(
            "apply", "-n", ns, "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
        )  # fmt: skip
        sas = [o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"]
        assert len(sas) >= 2, sas
        for sa in sas:
            user = f"system:serviceaccount:{ns}:{sa}"
            for resource, _names, verbs in can_i_list(kube_cluster, ns, user):
                assert "*" not in resource and "*" not in verbs, (sa, resource, verbs)
            for verb, resource in FORBIDDEN:
                answer = kube_cluster.kubectl(
                    "auth", "can-i", verb, resource, "-n", ns, f"--as={user}", check=False
                ).stdout.strip()
                assert answer == "no", (sa, verb, resource)
        operator = next(sa for sa in sas if sa.endswith("-operator"))
        granted = can_i_list(kube_cluster, ns, f"system:serviceaccount:{ns}:{operator}")
        assert any(r.startswith("modeltrainings.certmodel.io") for r, _, _ in granted), granted
        trainer = next(sa for sa in sas if sa.endswith("-trainer"))
        trainer_rules = can_i_list(kube_cluster, ns, f"system:serviceaccount:{ns}:{trainer}")
        assert {r for r, _, _ in trainer_rules} <= DISCOVERY, trainer_rules  # no API access
    finally:
        cluster_scoped = [o for o in objs if o["kind"].startswith("Cluster")]
        for o in cluster_scoped:
            kube_cluster.kubectl("delete", o["kind"], o["metadata"]["name"], check=False)
        kube_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---- no secrets in logs, status or Jobs -----------------------------------------------------

SECRET_VALUE = (
    "-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbC0{}\n-----END EC PRIVATE KEY-----"
)


def token_kubeconfig(cluster: KubeCluster, namespace: str, path: Path) -> str:
    """A kubeconfig authenticating as a ServiceAccount with a bearer token; the token."""
    cluster.kubectl("create", "serviceaccount", "operator", "-n", namespace)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{namespace}-operator", "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:operator",
    )  # fmt: skip
    token = cluster.kubectl(
        "create", "token", "operator", "-n", namespace, "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    ctx = config["contexts"][0]["context"]
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"] = [
        {"name": "op", "context": {"cluster": ctx["cluster"], "user": "operator"}}
    ]
    config["current-context"] = "op"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return token


@security(
    "operator on a ServiceAccount bearer token with --verbose; a Secret (EC private key) in its"
    " namespace; a line promoted and a training refused",
    "the token, any 'Bearer' header and the Secret's data appear in neither the operator log,"
    " any status, nor events; the training Job has no secretKeyRef/secret env or volume",
)
def test_no_secrets_in_logs_status_or_jobs(
    kube_cluster: KubeCluster, kube_namespace: str, crds: None, tmp_path: Path
) -> None:
    ns = kube_namespace
    token = token_kubeconfig(kube_cluster, ns, tmp_path / "operator.kubeconfig")
    secret = SECRET_VALUE.format(uuid.uuid4().hex)
    kube_cluster.kubectl(
        "create", "secret", "generic", "signing-key", "-n", ns, f"--from-literal=key.pem={secret}"
    )
    root = tmp_path / "models"
    root.mkdir()
    op_cluster = KubeCluster(
        tmp_path / "operator.kubeconfig", kube_cluster.server, kube_cluster.kubectl_bin,
        kube_cluster.helm_bin,
    )  # fmt: skip
    env = OperatorEnv(op_cluster, ns, Store(root), tmp_path / "operator.log")
    dna = make_version(env.store, seed=1).dna
    env.start_operator("--verbose")
    try:
        env.apply(f"""
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {{name: chat}}
spec: {{baseModel: tiny-base, promotion: {{policy: Manual, current: {dna}}}}}
---
apiVersion: certmodel.io/v1alpha1
kind: ModelTraining
metadata: {{name: run}}
spec: {{certifiedModel: chat, baseModel: tiny-base, dataset: {{path: datasets/none.jsonl}}}}
""")
        env.wait("certifiedmodels", "chat", lambda o: condition(o) == ("True", "Ready"))
        env.wait("modeltrainings", "run", lambda o: condition(o) == ("False", "InputNotFound"))
    finally:
        env.stop_operator()
        kube_cluster.kubectl("delete", "clusterrolebinding", f"{ns}-operator", check=False)
    log = env.log_path.read_text(errors="replace")
    assert "certmodel" in log.lower() and len(log) > 1000  # it did log, verbosely
    objects = kube_cluster.kubectl(
        "get", "certifiedmodels,modeltrainings,events,configmaps", "-n", ns, "-o", "json"
    ).stdout
    encoded = base64.b64encode(secret.encode()).decode()
    signature = token.rsplit(".", 1)[-1]
    for where, text in (("operator log", log), ("objects", objects)):
        for needle in (token, signature, secret, encoded, "c2VjcmV0LWtleS1tYXRlcmlhbC0"):
            assert needle not in text, f"secret material in the {where}"
        assert not re.search(r"(?i)bearer\s+[A-Za-z0-9._-]{20,}", text), where
    for job in operator_jobs(ns):
        pod = job["spec"]["template"]["spec"]
        assert all("secret" not in v for v in pod["volumes"])
        for c in containers(pod):
            assert "envFrom" not in c
            assert all("valueFrom" not in e for e in c["env"]), c["env"]


# ---- only safetensors and JSON are ever loaded ----------------------------------------------


def add_to_version(store: Store, dna: str, rel: str, data: bytes, *, listed: bool) -> None:
    """Put a file into a published version; with ``listed``, re-write the manifest so that
    every digest matches (a forged version, not a corrupted one)."""
    folder = store.version_path(dna)
    for dirpath, _dirs, _files in os.walk(folder):
        Path(dirpath).chmod(0o755)
    path = folder / rel
    if path.exists():
        path.chmod(0o644)
    path.write_bytes(data)
    if not listed:
        return
    manifest_path = folder / MANIFEST_NAME
    manifest_path.chmod(0o644)
    manifest = Manifest.model_validate_json(manifest_path.read_text())
    files = [f for f in manifest.files if f.path != rel]
    files.append(FileEntry(path=rel, sha256=file_sha256(path), size=len(data)))
    forged = manifest.model_copy(update={"files": files, "content_digest": content_digest(files)})
    manifest_path.write_bytes(forged.to_json())


PICKLE = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04exec\x94."


@pytest.mark.parametrize(
    ("rel", "listed", "expected"),
    [
        pytest.param(
            "adapter/adapter_model.bin", True, "file type '.bin' is not allowed",
            id="pickle-adapter-in-manifest",
            marks=security(
                "a version whose manifest lists a pickle adapter_model.bin (all digests match)",
                "serving admission refuses it as corrupt ('.bin' not allowed) before loading;"
                " the operator's volume reports it unverified",
            ),
        ),
        pytest.param(
            "pytorch_model.bin", False, "pytorch_model.bin",
            id="pickle-dropped-beside",
            marks=security(
                "a pickle pytorch_model.bin dropped into a published version",
                "serving admission and the operator's volume refuse the version",
            ),
        ),
        pytest.param(
            "adapter/adapter_model.safetensors", True, "not a safetensors file",
            id="pickle-renamed-safetensors",
            marks=security(
                "pickle bytes saved as adapter_model.safetensors (manifest re-digested)",
                "the safetensors header check refuses it; nothing is unpickled",
            ),
        ),
    ],
)  # fmt: skip
def test_pickle_in_a_version_is_never_loaded(
    store: Store, rel: str, listed: bool, expected: str
) -> None:
    manifest = make_version(store, seed=3)
    target = PointerTarget.from_manifest(manifest)
    add_to_version(store, manifest.dna, rel, PICKLE, listed=listed)
    if listed:
        target = target.model_copy(
            update={"content_digest": Manifest.model_validate_json(
                (store.version_path(manifest.dna) / MANIFEST_NAME).read_text()).content_digest}
        )  # fmt: skip
    with pytest.raises(TargetRefusedError) as err:
        check_target(store, target, base_model=None)
    assert err.value.code == "corrupt" and expected in str(err.value), str(err.value)
    facts = ModelsVolume(store.root).facts(manifest.dna, training=None, promote_requested=False)
    assert facts.exists and not facts.verified and expected in facts.problem, facts.problem


SOURCE_DIRS = ("runtime", "operator")
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def python_files() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 50, "the source tree was not found"
    return files


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def keyword(call: ast.Call, name: str) -> Any:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


LOADS_WITHOUT_SAFETENSORS_FLAG: dict[str, str] = {}


@security(
    "the source tree (runtime/, operator/) parsed for loaders that can unpickle",
    "no pickle/dill/joblib/marshal import; torch.load only in runtime/migrate and always"
    " weights_only=True; no trust_remote_code=True; model from_pretrained passes"
    " use_safetensors=True",
)
def test_no_unpickling_loader_in_the_source_tree() -> None:
    problems: list[str] = []
    torch_loads = 0
    for path in python_files():
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                bad = {a.name.split(".")[0] for a in node.names} & UNPICKLERS
                problems += [f"{where}: import {b}" for b in bad]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if module.split(".")[0] in UNPICKLERS:
                    problems.append(f"{where}: from {module} import")
                if module == "torch" and any(a.name == "load" for a in node.names):
                    problems.append(f"{where}: from torch import load")
            elif isinstance(node, ast.Call):
                name = dotted(node.func)
                if name.endswith(("torch.load", "torch.serialization.load")):
                    torch_loads += 1
                    if not rel.startswith("runtime/migrate/"):
                        problems.append(f"{where}: torch.load outside runtime/migrate")
                    if keyword(node, "weights_only") is not True:
                        problems.append(f"{where}: torch.load without weights_only=True")
                if name.endswith(("np.load", "numpy.load")) and keyword(node, "allow_pickle"):
                    problems.append(f"{where}: numpy.load(allow_pickle=...)")
                if keyword(node, "trust_remote_code") is True:
                    problems.append(f"{where}: trust_remote_code=True")
                if (
                    name.endswith(".from_pretrained")
                    and re.search(r"AutoModel|ForCausalLM", name)
                    and keyword(node, "use_safetensors") is not True
                    and keyword(node, "gguf_file") is None  # prepare-base converts GGUF
                    and rel not in LOADS_WITHOUT_SAFETENSORS_FLAG
                ):
                    problems.append(f"{where}: {name} without use_safetensors=True")
    assert problems == []
    assert torch_loads >= 1  # the legacy converter is seen, so the scan does look at calls
