"""Pure builders of the objects the operator creates: training Jobs, their config ConfigMaps,
and pointer ConfigMaps. Tested by value (tests/unit/operator/test_manifests.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certmodel.operator.api import API_VERSION
from certmodel.operator.api.modeltraining import ModelTrainingSpec
from certmodel.operator.decisions.training import EXIT_BAD_INPUT, job_name
from certmodel.runtime.format.pointer import POINTER_KEY, PointerDocument

MANAGED_BY = "certmodel-operator"
CONFIG_MOUNT = "/etc/certmodel"
CONFIG_FILE = "train.json"
MODELS_MOUNT = "/models"
SIGNING_MOUNT = "/var/run/certmodel/signing"
SIGNING_KEY_FILE = "private.pem"
"""The key of the signing Secret that holds the EC private key (PEM)."""


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of this operator deployment that shape what it creates."""

    trainer_image: str = "ghcr.io/certmodel/runtime:0.1.0"
    trainer_service_account: str = "certmodel-trainer"
    models_claim: str = "certmodel-models"
    models_root: str = MODELS_MOUNT
    """Where the operator itself sees the models volume (it mounts it read-only)."""
    signing_key_secret: str | None = None
    """Secret (key ``private.pem``) that training Jobs mount to sign what they publish."""


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(
    *, component: str, model: str, training: str | None = None, dna: str | None = None
) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "certmodel",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "certmodel.io/model": model,
    }
    if training:
        out["certmodel.io/training"] = training
    if dna:
        out["certmodel.io/dna"] = dna
    return out


def training_config_map(
    *, name: str, uid: str, namespace: str, dna: str, model: str, config_json: str
) -> dict[str, Any]:
    """The resolved training config, mounted into the Job's pod as a file."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": job_name(dna),
            "namespace": namespace,
            "labels": labels(component="training", model=model, training=name, dna=dna),
            "ownerReferences": [owner_reference("ModelTraining", name, uid)],
        },
        "data": {CONFIG_FILE: config_json},
    }


RESTRICTED_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def training_job(
    *,
    name: str,
    uid: str,
    namespace: str,
    dna: str,
    spec: ModelTrainingSpec,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The Job that trains version ``dna``.

    Bad input exits with code 2 and fails the Job at once (podFailurePolicy); a disrupted pod
    (eviction, preemption) does not count against the retries; other failures retry up to
    spec.retries times, and a retried pod resumes from the checkpoint in .staging/<dna>/.
    """
    res = spec.resources
    requests: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, str] = {"memory": res.memory}
    if res.gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(res.gpus)
    train = ["certmodel", "train", "--config", f"{CONFIG_MOUNT}/{CONFIG_FILE}"]
    if res.gpus > 1:
        # torchrun through our launcher, which keeps a worker's exit code (2: bad input fails
        # the Job at once, as on one GPU; plain torchrun would exit 1 and be retried).
        train = [
            "python",
            "-m",
            "certmodel.runtime.training.launch",
            f"--nproc_per_node={res.gpus}",
            "-m",
            "certmodel.runtime.training",
            "--config",
            f"{CONFIG_MOUNT}/{CONFIG_FILE}",
        ]
    mounts: list[dict[str, Any]] = [
        {"name": "models", "mountPath": MODELS_MOUNT},
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "models", "persistentVolumeClaim": {"claimName": config.models_claim}},
        {"name": "config", "configMap": {"name": job_name(dna)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if config.signing_key_secret:
        # The key reaches the pod only as a file: the operator never reads the Secret, and
        # the trainer's token is not mounted. A Secret without private.pem fails the run
        # with the trainer's "signing key ...: No such file" (bad input, no retries).
        train += ["--signing-key", f"{SIGNING_MOUNT}/{SIGNING_KEY_FILE}"]
        mounts.append({"name": "signing-key", "mountPath": SIGNING_MOUNT, "readOnly": True})
        volumes.append(
            {
                "name": "signing-key",
                "secret": {"secretName": config.signing_key_secret, "defaultMode": 0o400},
            }
        )
    pod_labels = labels(component="training", model=spec.certified_model, training=name, dna=dna)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": config.trainer_service_account,
        "automountServiceAccountToken": False,
        "securityContext": RESTRICTED_POD,
        "containers": [
            {
                "name": "train",
                "image": spec.image or config.trainer_image,
                "command": train,
                "env": [
                    {"name": "CERTMODEL_ROOT", "value": MODELS_MOUNT},
                    {"name": "CERTMODEL_TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"},
                    {"name": "HOME", "value": "/tmp"},
                ],
                "resources": {"requests": requests, "limits": limits},
                "securityContext": RESTRICTED_CONTAINER,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod_spec["tolerations"] = [t.wire() for t in res.tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(dna),
            "namespace": namespace,
            "labels": pod_labels,
            "ownerReferences": [owner_reference("ModelTraining", name, uid)],
        },
        "spec": {
            "backoffLimit": spec.retries,
            "activeDeadlineSeconds": spec.deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "train",
                            "operator": "In",
                            "values": [EXIT_BAD_INPUT],
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def pointer_config_map(
    *, name: str, namespace: str, line: str, uid: str, document: PointerDocument
) -> dict[str, Any]:
    """The pointer ConfigMap of a line: the document plus flat keys for humans and scripts."""
    target = document.target
    data = {POINTER_KEY: document.to_json(), "revision": str(document.revision)}
    if target is not None:
        data.update(
            {
                "dna": target.dna,
                "path": target.path,
                "kind": target.kind,
                "baseModel": target.base_model,
                "contentDigest": target.content_digest,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(component="pointer", model=line),
            "ownerReferences": [owner_reference("CertifiedModel", line, uid)],
        },
        "data": data,
    }
