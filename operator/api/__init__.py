"""Typed API models of the certmodel.io/v1alpha1 kinds: the single source of the CRD schemas.

`make generate` turns these models into `crds/*.yaml` (see `crdgen.py`); the operator validates
and reads objects through them too, so what the API server accepts and what the code expects
cannot drift apart.
"""

GROUP = "certmodel.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
