"""certmodel: certified, DNA-named model versions on Kubernetes.

The package's code lives in the top-level ``runtime/`` and ``operator/`` folders of the
repository; ``src/certmodel/{runtime,operator}`` are symbolic links to them, so that both are
importable as ``certmodel.runtime`` and ``certmodel.operator`` (never as a bare ``operator``,
which would shadow the standard library).
"""

__version__ = "0.1.0"
