"""Prometheus metrics of the operator (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("certmodel_operator_reconciles_total", "Reconciles run.", ["kind", "result"])
RECONCILE_SECONDS = Histogram(
    "certmodel_operator_reconcile_duration_seconds",
    "Time of one reconcile (gather, decide, act).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRAININGS = Gauge(
    "certmodel_operator_trainings", "ModelTrainings by phase (as last reconciled).", ["phase"]
)
TRAINING_SECONDS = Histogram(
    "certmodel_operator_training_duration_seconds",
    "Wall time of successful trainings, from Job start to completion.",
    buckets=(30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
)
POINTER_MOVES = Counter(
    "certmodel_operator_pointer_moves_total", "CURRENT pointer moves.", ["reason"]
)
REFUSALS = Counter(
    "certmodel_operator_refused_targets_total",
    "Targets refused (missing, corrupt, ...).",
    ["reason"],
)
API_WRITES = Counter("certmodel_operator_api_writes_total", "Writes to the Kubernetes API.")
