"""``certmodel serve``: the hot-reloading, OpenAI-compatible inference server.

Local mode follows the store's ``CURRENT`` file; in a pod, ``--pointer-configmap`` follows the
line's pointer ConfigMap through the Kubernetes API. Torch, transformers and the Kubernetes
client are imported inside the handler, so ``certmodel --help`` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from certmodel.runtime.cli.common import root_parent, store_from
from certmodel.runtime.errors import ExitCode, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        parents=[root_parent()],
        help="serve the CURRENT version over an OpenAI-compatible HTTP API, hot-swapping on moves",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a pod)")
    p.add_argument("--port", type=int, default=8000)
    src = p.add_argument_group("pointer source (default: the CURRENT file under --root)")
    src.add_argument("--pointer-configmap", metavar="NAME", help="watch this pointer ConfigMap")
    src.add_argument("--namespace", help="its namespace (default: the pod's own)")
    src.add_argument("--kubeconfig", help="kubeconfig outside a pod (default: $KUBECONFIG)")
    src.add_argument("--poll-interval", type=float, default=0.1, help="CURRENT poll seconds")
    model = p.add_argument_group("models")
    model.add_argument(
        "--served-model-name",
        default="certmodel",
        help="the name clients use for the live version (DNAs work too)",
    )
    model.add_argument("--base-model", help="refuse versions built on another base model")
    model.add_argument(
        "--public-key",
        type=Path,
        metavar="PUB.pem",
        help="check signatures (certified.sig) with this EC public key before loading; a bad"
        " signature is refused like a corrupt version",
    )
    model.add_argument(
        "--require-signature",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refuse unsigned versions (default: on when --public-key is given)",
    )
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    model.add_argument("--dtype", default="auto",
                       choices=["auto", "float32", "bfloat16", "float16"])  # fmt: skip
    model.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    model.add_argument(
        "--keep",
        type=int,
        default=2,
        help="versions kept loaded: the live one + N-1 for instant rollback",
    )
    model.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        help="seconds before a version that left the kept set is unloaded",
    )
    limits = p.add_argument_group("requests")
    limits.add_argument("--default-max-tokens", type=int, default=16)
    limits.add_argument("--max-tokens", type=int, default=512, help="upper bound per request")
    limits.add_argument("--max-queue", type=int, default=256, help="503 beyond this backlog")
    limits.add_argument("--request-timeout", type=float, default=300.0)
    limits.add_argument("--drain-timeout", type=float, default=30.0,
                        help="on SIGTERM, seconds to let admitted requests finish")  # fmt: skip
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a network; before transformers
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from certmodel.runtime.serving.context import Limits
    from certmodel.runtime.serving.models import quiet_library_noise
    from certmodel.runtime.serving.service import ServeConfig, ServingService

    store = store_from(args)
    require = args.require_signature
    if require is None:
        require = args.public_key is not None
    if args.public_key is not None:
        from certmodel.runtime.format.signing import check_key

        check_key(args.public_key, private=False)  # a bad key fails now, not at the first load
    config = ServeConfig(
        root=store.root, host=args.host, port=args.port, served_name=args.served_model_name,
        base_model=args.base_model, public_key=args.public_key, require_signature=require,
        device=args.device, dtype=args.dtype, threads=args.threads,
        keep=args.keep, grace_s=args.grace_period, max_queue=args.max_queue,
        limits=Limits(default_max_tokens=args.default_max_tokens, max_tokens=args.max_tokens,
                      request_timeout_s=args.request_timeout),
    )  # fmt: skip
    quiet_library_noise()
    service = ServingService(config, _source(args))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        service.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    print(f"certmodel: serving on {service.url}", flush=True)
    stop.wait()
    logging.getLogger(__name__).info("stopping: draining admitted requests")
    service.stop(drain_s=args.drain_timeout)
    return ExitCode.OK


def _source(args: argparse.Namespace) -> Any:
    if args.pointer_configmap:
        from certmodel.runtime.serving.kubesource import (
            ConfigMapPointerSource,
            default_namespace,
            kube_api_client,
        )

        namespace = args.namespace or default_namespace(args.kubeconfig)
        return ConfigMapPointerSource(
            kube_api_client(args.kubeconfig), name=args.pointer_configmap, namespace=namespace
        )
    if args.namespace or args.kubeconfig:
        raise UsageError("--namespace and --kubeconfig need --pointer-configmap")
    from certmodel.runtime.serving.sources import FilePointerSource

    return FilePointerSource(store_from(args).root, interval=args.poll_interval)
