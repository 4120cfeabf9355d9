"""``certmodel-operator``: run the Kopf operator (also ``python -m certmodel.operator``)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from certmodel import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="certmodel-operator", description=__doc__)
    p.add_argument("--version", action="version", version=f"certmodel-operator {__version__}")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="namespace to watch (repeatable; default: $POD_NAMESPACE or default)",
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument(
        "--models-root",
        type=Path,
        default=Path("/models"),
        help="where this process sees the models volume (mounted read-only)",
    )
    p.add_argument(
        "--models-claim", default="certmodel-models", help="PVC name mounted into training Jobs"
    )
    p.add_argument("--trainer-image", default=f"ghcr.io/certmodel/runtime:{__version__}")
    p.add_argument("--trainer-service-account", default="certmodel-trainer")
    p.add_argument(
        "--signing-key-secret",
        metavar="NAME",
        help="Secret (key private.pem, an EC private key) that training Jobs mount read-only"
        " to sign the versions they publish; the operator never reads it",
    )
    p.add_argument(
        "--public-key",
        type=Path,
        metavar="PUB.pem",
        help="EC public key that checks signatures (certified.sig) for requireSignature;"
        " without it such lines refuse every target",
    )
    p.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics; 0: off")
    p.add_argument("--health-port", type=int, default=8081, help="liveness /healthz; 0: off")
    p.add_argument(
        "--console-port", type=int, default=8090, help="admin web console (docs/console.md); 0: off"
    )
    p.add_argument("--console-host", default="0.0.0.0", help="address the console listens on")  # noqa: S104
    peering = p.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone", action="store_true", default=True, help="run as the only replica (default)"
    )
    peering.add_argument(
        "--peering", metavar="NAME", help="coordinate replicas through a KopfPeering object"
    )
    p.add_argument(
        "--peering-priority",
        type=int,
        metavar="N",
        help="with --peering: this replica's priority; the highest live one is active, the others"
        " stand by (default: older processes higher, all distinct: Kopf pauses every replica of"
        " a shared priority, so never give several replicas the same N)",
    )
    p.add_argument(
        "--peering-lifetime",
        type=int,
        default=60,
        metavar="SECONDS",
        help="with --peering: how long a silent replica still counts as alive, so the longest a"
        " standby waits to take over from a replica that died without a goodbye (default: 60)",
    )
    p.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig (default: in-cluster, then $KUBECONFIG)",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = str(args.kubeconfig)
    import kopf
    from kubernetes import client, config
    from prometheus_client import start_http_server

    from certmodel.operator import handlers  # noqa: F401 -- registers the handlers
    from certmodel.operator.decisions.manifests import OperatorConfig
    from certmodel.operator.kube import Kube
    from certmodel.operator.recipes import make_resolver
    from certmodel.operator.reconcile import Context
    from certmodel.operator.volume import ModelsVolume, check_public_key
    from certmodel.runtime.errors import CertmodelError

    if args.public_key is not None:
        try:
            check_public_key(args.public_key)
        except CertmodelError as exc:
            print(f"certmodel-operator: error: {exc}", file=sys.stderr)
            return 2
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    ctx = Context(
        kube=Kube(client.ApiClient(), instance=socket.gethostname()),
        volume=ModelsVolume(args.models_root, public_key=args.public_key),
        config=OperatorConfig(
            trainer_image=args.trainer_image,
            trainer_service_account=args.trainer_service_account,
            models_claim=args.models_claim,
            models_root=str(args.models_root),
            signing_key_secret=args.signing_key_secret,
        ),
        resolve=make_resolver(args.models_root),
    )
    if args.metrics_port:
        start_http_server(args.metrics_port)

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Our own typed status and Events; Kopf keeps its bookkeeping in annotations.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="certmodel.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="certmodel.io", key="last-handled-configuration"
        )
        settings.posting.enabled = False
        settings.scanning.disabled = True  # the CRDs are installed by the chart; no CRD RBAC
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 8
        settings.peering.lifetime = args.peering_lifetime

    namespaces = args.namespace or [os.environ.get("POD_NAMESPACE", "default")]
    if args.console_port:
        from certmodel.operator.console.server import start_console

        start_console(  # its own thread and event loop; the operator runs on without it
            client.ApiClient(),
            ctx.volume,
            host=args.console_host,
            port=args.console_port,
            namespaces=None if args.all_namespaces else tuple(namespaces),
        )
    kopf.run(
        clusterwide=args.all_namespaces,
        namespaces=[] if args.all_namespaces else namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        # Distinct priorities (replicas of equal priority would all pause, Kopf's conflict rule),
        # and the oldest replica the highest: a new pod of a rollout stands by instead of
        # taking over from a running one, so a handover happens only when the active one goes.
        priority=2**53 - time.time_ns() // 1000
        if args.peering_priority is None
        else args.peering_priority,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
        if args.health_port
        else None,
        memo=kopf.Memo(ctx=ctx),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
