"""The certified directory format: DNA names, content digests, manifests, publication,
verification and the local CURRENT pointer.

Torch-free by design: the operator image and the CLI's read commands import it without any ML
dependency. See docs/format.md for the on-disk contract.
"""

FORMAT_VERSION = 1
"""Version of the on-disk format; part of every recipe, so a format change changes every DNA."""
