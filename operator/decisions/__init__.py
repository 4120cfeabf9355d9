"""Pure decisions: snapshots of observed state in, plans (writes, status, events) out.

Nothing here talks to Kubernetes or the file system, so every rule is tested table-driven
without a cluster (tests/unit/operator/).
"""
