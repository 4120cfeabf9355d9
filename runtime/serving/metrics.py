"""Prometheus metrics of one server, in a registry of its own.

A private :class:`CollectorRegistry` (not the process-global one) lets tests and the benchmark
run several servers in one process without duplicate-metric errors. Names follow Prometheus
conventions; ``certmodel_model_info`` carries the live DNA as a label so dashboards can join
request rates to versions.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SWAP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServingMetrics:
    """Every metric the server exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "certmodel_requests", "HTTP requests by endpoint and status code.",
            ["endpoint", "code"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "certmodel_request_duration_seconds", "Request latency, admission to response.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "certmodel_prompt_tokens", "Prompt tokens processed.", ["dna"], registry=r
        )
        self.completion_tokens = Counter(
            "certmodel_completion_tokens", "Tokens generated.", ["dna"], registry=r
        )
        self.model = Info(
            "certmodel_model", "The version serving new requests (dna, revision).", registry=r
        )
        self.swaps = Counter("certmodel_swaps", "Switches of the live version.", registry=r)
        self.swap_duration = Histogram(
            "certmodel_swap_duration_seconds",
            "Pointer change seen → new version live (verify, load, warm-up, switch).",
            buckets=SWAP_BUCKETS, registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "certmodel_refused_targets", "Pointer targets refused, by reason.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.ready = Gauge("certmodel_ready", "1 once a verified version is live.", registry=r)
        self.loaded = Gauge("certmodel_loaded_versions", "Versions held in memory.", registry=r)
        self.inflight = Gauge(
            "certmodel_inflight_requests", "Generation requests admitted, not finished.",
            registry=r,
        )  # fmt: skip

    def set_model(self, *, dna: str, revision: int, kind: str, base_model: str) -> None:
        self.model.info(
            {"dna": dna, "revision": str(revision), "kind": kind, "base_model": base_model}
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
