"""``python -m localcluster up|down|status|env``: the local control plane from a shell.

``up`` leaves the plane running in the background and prints ``KUBECONFIG=<path>`` as its last
line (so ``make cluster-up | tail -1`` can be eval'ed or copied); ``down`` stops exactly the
processes ``up`` recorded. The state folder defaults to ``$CERTMODEL_CACHE/cluster``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from localcluster.binaries import cache_dir
from localcluster.controlplane import ControlPlane


def default_state_dir() -> Path:
    env = os.environ.get("CERTMODEL_CLUSTER_DIR")
    return Path(env) if env else cache_dir() / "cluster"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    ap.add_argument("command", choices=["up", "down", "status", "env"])
    ap.add_argument("--state-dir", type=Path, default=default_state_dir())
    ap.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="make the local node advertise nvidia.com/gpu: N (fake)",
    )
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args(argv)
    cp = ControlPlane.load(args.state_dir)
    alive = cp.running()

    if args.command == "up":
        if alive and all(alive.values()):
            assert cp.info is not None
            print(f"local cluster already running: {cp.info.server}")
            print(f"KUBECONFIG={cp.kubeconfig}")
            return 0
        if alive:
            cp.stop()  # half-dead leftovers: start clean
        cp = ControlPlane(args.state_dir, gpus=args.gpus)
        info = cp.start(timeout=args.timeout)
        print(
            f"local cluster {info.kube_version} (etcd {info.etcd_version}) ready in "
            f"{info.start_to_ready_s:.1f}s: {info.server}"
        )
        print(f"logs: {cp.log_dir}   stop with: make cluster-down")
        print(f"KUBECONFIG={cp.kubeconfig}")
        return 0
    if args.command == "down":
        if not alive:
            print("local cluster: not running")
            return 0
        cp.stop()
        print("local cluster stopped")
        return 0
    if args.command == "status":
        if not alive:
            print("local cluster: not running")
            return 1
        assert cp.info is not None
        for name, ok in alive.items():
            print(f"{name:26} {'running' if ok else 'STOPPED'}  pid {cp.info.pids[name]}")
        print(f"server: {cp.info.server}")
        print(f"KUBECONFIG={cp.kubeconfig}")
        return 0 if all(alive.values()) else 1
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
