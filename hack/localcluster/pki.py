"""Certificates and keys for the local control plane, made with the ``openssl`` CLI.

Why the CLI: the project's venv does not carry ``cryptography``, and openssl is on every host
that can run this harness. Everything is generated fresh at each start (a few hundred ms), so no
key ever outlives its cluster.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVICE_IP = "10.0.0.1"  # first address of --service-cluster-ip-range=10.0.0.0/24
APISERVER_SANS = (
    "IP:127.0.0.1",
    f"IP:{SERVICE_IP}",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Every credential of one local cluster."""

    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    node: KeyPair
    scheduler: KeyPair
    sa_key: Path  # service-account token signing key (private)
    sa_pub: Path  # ... and its public half, for the apiserver's verifier


def _key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )
    path.chmod(0o600)


def _signed(
    ca: KeyPair, out: Path, name: str, subject: str, *, server_sans: tuple[str, ...] = ()
) -> KeyPair:
    key, csr, cert, ext = (out / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
    ]
    if server_sans:
        lines += ["extendedKeyUsage=serverAuth", "subjectAltName=" + ",".join(server_sans)]
    else:
        lines += ["extendedKeyUsage=clientAuth"]
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    csr.unlink()
    ext.unlink()
    return KeyPair(cert, key)


def generate(out: Path, node_name: str) -> ClusterPKI:
    """Create a CA, serving/client certificates and the service-account key pair under ``out``.

    Identities follow upstream conventions so the Node and RBAC authorizers treat them as they
    would in a real cluster: ``system:masters`` admin, ``system:kube-controller-manager`` and
    ``system:node:<name>`` in group ``system:nodes`` for the local node agent, and
    ``system:kube-scheduler`` for the agent's pod-binding half.
    """
    out.mkdir(parents=True, exist_ok=True)
    ca = KeyPair(out / "ca.crt", out / "ca.key")
    _key(ca.key)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca.key),
        "-subj",
        "/CN=certmodel-local-ca",
        "-days",
        "30",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        str(ca.cert),
    )
    sa_key, sa_pub = out / "sa.key", out / "sa.pub"
    _key(sa_key)
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    return ClusterPKI(
        ca=ca,
        apiserver=_signed(ca, out, "apiserver", "/CN=kube-apiserver", server_sans=APISERVER_SANS),
        admin=_signed(ca, out, "admin", "/O=system:masters/CN=certmodel-admin"),
        controller_manager=_signed(
            ca, out, "controller-manager", "/CN=system:kube-controller-manager"
        ),
        node=_signed(ca, out, "node", f"/O=system:nodes/CN=system:node:{node_name}"),
        scheduler=_signed(ca, out, "scheduler", "/CN=system:kube-scheduler"),
        sa_key=sa_key,
        sa_pub=sa_pub,
    )


def kubeconfig(path: Path, server: str, ca: Path, client: KeyPair, user: str) -> Path:
    """Write a kubeconfig that references the PEM files by absolute path."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {ca.resolve()}
users:
- name: {user}
  user:
    client-certificate: {client.cert.resolve()}
    client-key: {client.key.resolve()}
contexts:
- name: local
  context: {{cluster: local, user: {user}}}
current-context: local
"""
    )
    path.chmod(0o600)
    return path
