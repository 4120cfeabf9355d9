"""EC P-256 key pairs for the signing tests (what `openssl ecparam -name prime256v1 -genkey`
and `openssl ec -pubout` make), written as PEM files."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KeyPair = tuple[Path, Path]
"""(private key file, public key file)."""


def write_key_pair(folder: Path, name: str) -> KeyPair:
    """``folder/name.pem`` (PKCS#8, no password) and ``folder/name.pub.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
