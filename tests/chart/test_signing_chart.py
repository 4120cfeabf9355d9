"""The chart's signing values (ci/signing-values.yaml): the public key becomes a ConfigMap
mounted read-only into the operator and the inference pods (``--public-key``); the private key's
Secret is only named to the operator (``--signing-key-secret``), which never gets a permission
on Secrets: the training Jobs mount it. Needs the cached helm binary, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from chart.chartkit import CHART, helm, of_kind, one, render
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

SIGNING_VALUES = CHART / "ci" / "signing-values.yaml"
MOUNT = {"name": "signing", "mountPath": "/etc/certmodel/signing", "readOnly": True}
VOLUME = {"name": "signing", "configMap": {"name": "demo-certmodel-signing"}}


def pod(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(objs, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def test_signing_values_wire_the_public_key_and_name_the_secret() -> None:
    objs = render("-f", str(SIGNING_VALUES))
    values = yaml.safe_load(SIGNING_VALUES.read_text())["signing"]

    cm = one(objs, "ConfigMap", "demo-certmodel-signing")
    pem = cm["data"]["public.pem"]
    assert pem.strip() == values["publicKey"].strip()
    assert isinstance(load_pem_public_key(pem.encode()), ec.EllipticCurvePublicKey)

    operator = pod(objs, "demo-certmodel-operator")
    (c,) = operator["containers"]
    assert c["args"][-2:] == [
        "--signing-key-secret=certmodel-signing-key",
        "--public-key=/etc/certmodel/signing/public.pem",
    ]
    assert MOUNT in c["volumeMounts"] and VOLUME in operator["volumes"]

    inference = pod(objs, "demo-certmodel-inference")
    (c,) = inference["containers"]
    assert c["command"][-2:] == ["--public-key", "/etc/certmodel/signing/public.pem"]
    assert MOUNT in c["volumeMounts"] and VOLUME in inference["volumes"]

    # The private key: no pod of the chart mounts it, no Role grants anything on Secrets.
    for workload in of_kind(objs, "Deployment") + of_kind(objs, "Job"):
        volumes = workload["spec"]["template"]["spec"]["volumes"]
        assert all("secret" not in v for v in volumes), workload["metadata"]["name"]
    for role in of_kind(objs, "Role") + of_kind(objs, "ClusterRole"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]


def test_without_signing_values_nothing_is_signed_or_checked() -> None:
    objs = render()
    assert not [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-signing")]
    (c,) = pod(objs, "demo-certmodel-operator")["containers"]
    assert not [a for a in c["args"] if a.startswith(("--signing-key-secret", "--public-key"))]
    (c,) = pod(objs, "demo-certmodel-inference")["containers"]
    assert "--public-key" not in c["command"]


@pytest.mark.parametrize(
    "bad",
    [
        "signing.publicKey=not a key",
        "signing.privateKeySecret=Bad_Name",
        "signing.publicKeyFile=x",
    ],
)
def test_the_schema_refuses_bad_signing_values(bad: str) -> None:
    out = helm("template", "x", str(CHART), "--set", bad, check=False)
    assert out.returncode != 0 and "schema" in out.stderr, (bad, out.stderr)
