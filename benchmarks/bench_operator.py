"""The operator at scale: time for N CertifiedModels to be Ready, reconcile latency, API traffic
at steady state and memory, against a plain-client baseline, on a fresh local control plane.

For each size N (``--sizes``), in namespaces of its own:

* **baseline**: no operator; a pool of API clients creates each CertifiedModel, its pointer
  ConfigMap and patches its Ready status (the operator's own decision for such a line, computed
  once). The floor of what this API server does on this machine for the same objects.
* **operator**: ``certmodel-operator --standalone`` runs as a real process; once a warm-up line
  is Ready (Kopf's watches are up, the volume's verification cache is warm), the same pool
  creates N CertifiedModels (``policy: Manual``, ``current:`` one of ``--versions`` published
  versions, round robin).

Both are timed the same way: the clock starts at the first create; one LIST every 0.5 s counts
the lines that are Ready=True with ``observedGeneration == generation``. Once the operator's lines
are all Ready: at least ``--settle-seconds`` of rest and until the operator has made no API
request for a few seconds (its backlog drained; capped), then a quiet window of
``--quiet-seconds`` in which the API writes (kube-apiserver's own ``apiserver_request_total``)
and the operator's requests are counted.

Reconcile quantiles are estimated from the buckets of the operator's Prometheus histogram
``certmodel_operator_reconcile_duration_seconds`` (linear within a bucket, as PromQL's
``histogram_quantile``). The API server runs with a metadata-level audit log (the admin user's
requests, and everyone's on certifiedmodels, modeltrainings, configmaps and events), so that
requests can be attributed: the operator's by user agent (``kopf/*`` for Kopf's watches and
patches, the Python client for operator/kube.py), other components by user.

    PYTHONPATH=hack:tests .venv/bin/python benchmarks/bench_operator.py \\
        [--sizes 200,1000] [--quiet-seconds 60] [--out benchmarks/out/operator.md]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from factories import make_version
from localcluster import k8s, procs
from localcluster.binaries import find_binaries
from localcluster.controlplane import ControlPlane
from prometheus_client.parser import text_string_to_metric_families

from certmodel.operator.api import API_VERSION, GROUP, VERSION
from certmodel.operator.api.certifiedmodel import CertifiedModelSpec, CertifiedModelStatus
from certmodel.operator.decisions import manifests
from certmodel.operator.decisions.line import LineSnapshot, PointerState, decide_line
from certmodel.operator.volume import ModelsVolume
from certmodel.runtime.format.store import Store

REPO = Path(__file__).resolve().parents[1]
PLURAL = "certifiedmodels"
BENCH_UA = "certmodel-bench"
ADMIN_USER = "certmodel-admin"  # CN of the harness's admin certificate (the operator's too)
OPERATOR_CLIENTS = ("kopf", "reconcile")
POLL_S = 0.5
IDLE_S = 5.0  # the operator counts as settled after this long without an API request
AUDIT_LAG_S = 1.5  # the audit log is written in batches (at most 1 s late)
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY")
READ_VERBS = ("GET", "LIST", "WATCH")
AUDIT_WRITES = ("create", "update", "patch", "delete", "deletecollection")
AUDIT_READS = ("get", "list", "watch")
RESOURCES = ("certifiedmodels", "modeltrainings", "configmaps", "events")
RECONCILE_METRIC = "certmodel_operator_reconcile_duration_seconds"
WRITES_METRIC = "certmodel_operator_api_writes_total"
MAX_WORKERS = 8  # operator/main.py: settings.execution.max_workers
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [{ADMIN_USER}]
- level: Metadata
  resources:
  - group: {GROUP}
  - group: ""
    resources: [configmaps, events]
- level: None
"""


# -- the control plane, with an audit log -----------------------------------------------------
class AuditedPlane(ControlPlane):
    """The harness's control plane, with kube-apiserver writing a metadata-level audit log."""

    def __init__(self, state_dir: Path, audit_dir: Path) -> None:
        super().__init__(state_dir, gpus=0, die_with_parent=True)
        self.audit_dir = audit_dir
        self.audit_log = audit_dir / "audit.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "kube-apiserver":
            self.audit_dir.mkdir(parents=True, exist_ok=True)
            policy = self.audit_dir / "policy.yaml"
            policy.write_text(AUDIT_POLICY)
            argv = [
                *argv,
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=batch",
                "--audit-log-batch-max-wait=1s",
                "--audit-log-maxsize=0",
            ]
        super()._spawn(name, argv)


def new_client(kubeconfig: Path) -> Any:
    api = k8s.api_client(kubeconfig)
    api.user_agent = BENCH_UA
    return api


def custom_api(api: Any) -> Any:
    """The client's typed APIs want model objects; we pass and read plain dicts."""
    from kubernetes import client

    return client.CustomObjectsApi(api)


def core_api(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


class Clients:
    """One ``ApiClient`` per thread (closed together at the end)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            api = new_client(self.kubeconfig)
            self._local.api = api
            with self._lock:
                self._all.append(api)
        return api

    def close(self) -> None:
        for api in self._all:
            with contextlib.suppress(Exception):
                api.close()


# -- metrics: Prometheus text, /proc, the audit log -------------------------------------------
def http_get(url: str, plane: ControlPlane | None = None, timeout: float = 30) -> str:
    req = urllib.request.Request(url, headers={"User-Agent": BENCH_UA})  # noqa: S310
    ctx = plane.ssl_context() if plane else None
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310
        body: bytes = resp.read()
    return body.decode()


Key = tuple[str, str, str]  # (verb, resource, code)


def count_writes(diff: Counter[Key], verbs: tuple[str, ...] = WRITE_VERBS) -> str:
    """``certifiedmodels 4000, configmaps 1672 (672 x 409)``: by resource, refusals apart."""
    n: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for (verb, resource, code), v in diff.items():
        if verb in verbs and resource in RESOURCES:
            n[resource] += v
            if code.startswith("4"):
                refused[f"{resource} {code}"] += v
    total = sum(n.values())
    parts = [
        f"{r} {v}"
        + "".join(f" ({c} x {k.split()[1]})" for k, c in refused.items() if k.split()[0] == r)
        for r, v in sorted(n.items())
    ]
    return f"{total}" + (": " + ", ".join(parts) if parts else "")


def sum_writes(diff: Counter[Key]) -> int:
    return sum(v for (verb, res, _c), v in diff.items() if verb in WRITE_VERBS and res in RESOURCES)


@dataclass
class ApiserverCounts:
    """``apiserver_request_total`` summed by (verb, resource, code)."""

    by: Counter[Key] = field(default_factory=Counter)

    @classmethod
    def scrape(cls, plane: ControlPlane) -> ApiserverCounts:
        assert plane.info is not None
        text = http_get(f"{plane.info.server}/metrics", plane)
        out: Counter[Key] = Counter()
        prefix = "apiserver_request_total{"
        for line in text.splitlines():  # faster than parsing every family of the API server
            if line.startswith(prefix):
                name, _, value = line.rpartition(" ")
                labels = dict(kv.split("=", 1) for kv in name[len(prefix) : -1].split(","))
                key = tuple(labels.get(k, "").strip('"') for k in ("verb", "resource", "code"))
                out[(key[0], key[1], key[2])] += int(float(value))
        return cls(out)

    def minus(self, before: ApiserverCounts) -> Counter[Key]:
        diff = Counter(self.by)
        diff.subtract(before.by)
        return Counter({k: v for k, v in diff.items() if v})


@dataclass
class OperatorMetrics:
    buckets: dict[float, float]
    count: float
    total: float
    writes: float | None

    @classmethod
    def scrape(cls, port: int) -> OperatorMetrics:
        buckets: dict[float, float] = {}
        count = total = 0.0
        writes: float | None = None
        text = http_get(f"http://127.0.0.1:{port}/metrics")
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                name, labels, value = s.name, s.labels, float(s.value)
                if name.startswith(RECONCILE_METRIC) and labels.get("kind") == "CertifiedModel":
                    if name.endswith("_bucket"):
                        buckets[float(labels["le"])] = value
                    elif name.endswith("_count"):
                        count = value
                    elif name.endswith("_sum"):
                        total = value
                elif name == WRITES_METRIC:
                    writes = (writes or 0.0) + value
        return cls(buckets, count, total, writes)

    def minus(self, before: OperatorMetrics) -> OperatorMetrics:
        return OperatorMetrics(
            {le: v - before.buckets.get(le, 0.0) for le, v in self.buckets.items()},
            self.count - before.count,
            self.total - before.total,
            None if self.writes is None else self.writes - (before.writes or 0.0),
        )

    def quantile(self, q: float) -> str:
        """``histogram_quantile``: linear interpolation inside the bucket that holds ``q``."""
        if self.count <= 0:
            return "n/a"
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le in sorted(self.buckets):
            cum = self.buckets[le]
            if cum >= rank:
                if le == float("inf"):
                    return f"> {lower:g} s"
                inside = cum - below
                frac = (rank - below) / inside if inside else 1.0
                return fmt_s(lower + (le - lower) * frac)
            lower, below = le, cum
        return "n/a"


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` field in KiB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Req:
    """One API request from the audit log."""

    at: float  # requestReceivedTimestamp, epoch seconds
    client: str  # kopf | reconcile | bench | kubectl | a user (other components)
    verb: str
    resource: str
    namespace: str
    code: int


class AuditTail:
    """The API server's audit log, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.reqs: list[Req] = []

    def read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if req := _request(json.loads(line)):
                    self.reqs.append(req)

    def counts(
        self, since: float, until: float, namespace: str | None, clients: tuple[str, ...] = ()
    ) -> Counter[tuple[str, str, str, int]]:
        """(client, verb, resource, code) -> requests in ``[since, until)``."""
        return Counter(
            (r.client, r.verb, r.resource, r.code)
            for r in self.reqs
            if since <= r.at < until
            and (namespace is None or r.namespace in ("", namespace))
            and (not clients or r.client in clients)
        )

    def last(self, namespace: str, clients: tuple[str, ...]) -> float:
        """When the last request of ``clients`` in ``namespace`` (watches aside) arrived."""
        return max(
            (
                r.at
                for r in self.reqs
                if r.client in clients and r.verb != "watch" and r.namespace == namespace
            ),
            default=0.0,
        )


def _request(ev: dict[str, Any]) -> Req | None:
    verb = str(ev["verb"])
    if ev.get("stage") != ("ResponseStarted" if verb == "watch" else "ResponseComplete"):
        return None
    user = str((ev.get("user") or {}).get("username", ""))
    ua = str(ev.get("userAgent") or "")
    if user != ADMIN_USER:
        client = user.replace("system:serviceaccount:kube-system:", "sa:")
    elif ua.startswith("kopf/"):
        client = "kopf"
    elif ua.startswith("OpenAPI-Generator/"):
        client = "reconcile"
    elif ua.startswith(BENCH_UA):
        client = "bench"
    else:
        client = ua.split("/", 1)[0] or "?"
    ref = ev.get("objectRef") or {}
    resource = str(ref.get("resource", "?"))
    if ref.get("subresource"):
        resource += f"/{ref['subresource']}"
    at = parse_time(ev.get("requestReceivedTimestamp"))
    if at is None:
        return None
    code = int((ev.get("responseStatus") or {}).get("code") or 0)
    return Req(at, client, verb, resource, str(ref.get("namespace") or ""), code)


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # fromisoformat wants at most 6 fractional digits
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()


def summarize(
    counts: Counter[tuple[str, str, str, int]], verbs: tuple[str, ...], by_client: bool = False
) -> str:
    """``get certifiedmodels 1024, create configmaps 1943 (942 x 409)``."""
    n: Counter[str] = Counter()
    refused: Counter[tuple[str, int]] = Counter()
    for (client, verb, resource, code), v in counts.items():
        if verb in verbs:
            key = (f"{client}: " if by_client else "") + f"{verb} {resource}"
            n[key] += v
            if code >= 400:
                refused[(key, code)] += v
    parts = [
        f"{k} {v}" + "".join(f" ({c} x {code})" for (rk, code), c in refused.items() if rk == k)
        for k, v in sorted(n.items())
    ]
    return ", ".join(parts) or "0"


def total(
    counts: Counter[tuple[str, str, str, int]], verbs: tuple[str, ...], client: str = ""
) -> int:
    return sum(
        v for (c, verb, _r, _code), v in counts.items() if verb in verbs and client in ("", c)
    )


# -- lines ------------------------------------------------------------------------------------
def line_body(name: str, dna: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CertifiedModel",
        "metadata": {"name": name},
        "spec": {"baseModel": "tiny-base", "promotion": {"policy": "Manual", "current": dna}},
    }


def is_ready(obj: dict[str, Any]) -> bool:
    st = obj.get("status") or {}
    gen = obj["metadata"].get("generation")
    if st.get("observedGeneration") != gen:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )


@dataclass
class Template:
    """What the operator writes for a line on ``dna``: its pointer ConfigMap and status."""

    config_map: dict[str, Any]
    status: dict[str, Any]


def templates(volume: ModelsVolume, dnas: list[str]) -> dict[str, Template]:
    out = {}
    for dna in dnas:
        snap = LineSnapshot(
            name="x",
            generation=1,
            spec=CertifiedModelSpec.model_validate(line_body("x", dna)["spec"]),
            old_status=CertifiedModelStatus(),
            versions=[volume.facts(dna, training=None, promote_requested=False)],
            pointer=PointerState(exists=False),
            serving=[],
            now=datetime.now(UTC),
        )
        plan = decide_line(snap)
        assert plan.pointer is not None
        cm = manifests.pointer_config_map(
            name="x-pointer", namespace="x", line="x", uid="x", document=plan.pointer
        )
        out[dna] = Template(cm, plan.status.wire())
    return out


def create_operator_line(api: Any, ns: str, name: str, dna: str, _tpl: Template | None) -> None:
    custom_api(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, line_body(name, dna)
    )


def create_baseline_line(api: Any, ns: str, name: str, dna: str, tpl: Template | None) -> None:
    """What the operator's writes for a new line come to, done by a plain client."""
    assert tpl is not None
    custom = custom_api(api)
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, line_body(name, dna))
    cm = copy.deepcopy(tpl.config_map)
    meta = cm["metadata"]
    meta.update(name=f"{name}-pointer", namespace=ns)
    meta["labels"]["certmodel.io/model"] = name
    meta["ownerReferences"][0].update(name=name, uid=obj["metadata"]["uid"])
    core_api(api).create_namespaced_config_map(ns, cm)
    status = {**tpl.status, "pointerConfigMap": f"{name}-pointer"}
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, name, {"status": status}
    )


CreateFn = Callable[[Any, str, str, str, "Template | None"], None]


class Creator(threading.Thread):
    """Creates the lines from a pool of clients, in the background."""

    def __init__(
        self,
        clients: Clients,
        ns: str,
        lines: list[tuple[str, str]],
        create: CreateFn,
        tpls: dict[str, Template],
        workers: int,
    ) -> None:
        super().__init__(daemon=True)
        self.clients, self.ns, self.lines, self.create = clients, ns, lines, create
        self.tpls, self.workers = tpls, workers
        self.stop = threading.Event()
        self.started_at = 0.0
        self.done_at: float | None = None
        self.errors: list[str] = []

    def _one(self, item: tuple[str, str]) -> None:
        if self.stop.is_set():
            return
        name, dna = item
        try:
            self.create(self.clients.get(), self.ns, name, dna, self.tpls.get(dna))
        except Exception as exc:  # reported, never raised from the pool
            self.errors.append(f"{name}: {str(exc)[:200]}")

    def _warm(self, barrier: threading.Barrier) -> None:
        core_api(self.clients.get()).read_namespace(self.ns)
        barrier.wait(timeout=60)

    def run(self) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            # Every worker makes its client and opens its connection before the clock starts.
            barrier = threading.Barrier(self.workers)
            for f in [pool.submit(self._warm, barrier) for _ in range(self.workers)]:
                f.result()
            self.started_at = time.monotonic()
            list(pool.map(self._one, self.lines))
        self.done_at = time.monotonic()


def list_lines(api: Any, ns: str) -> list[dict[str, Any]]:
    resp = custom_api(api).list_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


@dataclass
class Convergence:
    n: int
    ready: int = 0
    created: int = 0
    seconds: float | None = None  # to all Ready; None: timed out
    elapsed: float = 0.0
    t0_wall: float = 0.0  # epoch seconds of the first create
    creates_s: float | None = None
    half_s: float | None = None
    errors: list[str] = field(default_factory=list)
    polls: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds while converging
    cpu_wall: float = 0.0  # the wall time they were measured over
    writes: Counter[Key] = field(default_factory=Counter)  # apiserver_request_total delta


def converge(
    clients: Clients,
    poll_api: Any,
    ns: str,
    lines: list[tuple[str, str]],
    create: CreateFn,
    tpls: dict[str, Template],
    workers: int,
    timeout: float,
    check: Callable[[], None] | None = None,
) -> Convergence:
    """Create ``lines`` and poll until all are Ready (or ``timeout``)."""
    names = {name for name, _ in lines}
    res = Convergence(n=len(lines))
    creator = Creator(clients, ns, lines, create, tpls, workers)
    creator.start()
    while not creator.started_at:
        if not creator.is_alive():
            raise RuntimeError("the creating clients could not start")
        time.sleep(0.01)
    t0 = creator.started_at
    res.t0_wall = time.time() - (time.monotonic() - t0)
    try:
        while True:
            tick = time.monotonic()
            items = [o for o in list_lines(poll_api, ns) if o["metadata"]["name"] in names]
            res.polls += 1
            res.created = len(items)
            res.ready = sum(1 for o in items if is_ready(o))
            res.elapsed = time.monotonic() - t0
            if res.half_s is None and res.ready * 2 >= res.n:
                res.half_s = res.elapsed
            if res.ready >= res.n:
                res.seconds = res.elapsed
                break
            if res.elapsed > timeout:
                break
            if check:
                check()
            time.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))
    finally:
        creator.stop.set()
        creator.join(timeout=60)
    if creator.done_at:
        res.creates_s = creator.done_at - t0
    res.errors = creator.errors[:5]
    return res


# -- the operator process ---------------------------------------------------------------------
class OperatorProcess:
    def __init__(self, kubeconfig: Path, ns: str, root: Path, log: Path) -> None:
        self.port = procs.free_port()
        self.log = log
        exe = Path(sys.executable).with_name("certmodel-operator")
        self.argv = [
            str(exe),
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            ns,
            "--models-root",
            str(root),
            "--metrics-port",
            str(self.port),
            "--health-port",
            "0",
            "--standalone",
        ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_problems(self, offset: int = 0) -> tuple[Counter[str], str]:
        """WARNING/ERROR lines logged after byte ``offset``, and the commonest message."""
        with self.log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        levels: Counter[str] = Counter()
        messages: Counter[str] = Counter()
        for line in text.splitlines():
            for level in ("WARNING", "ERROR"):
                if f" {level} " in line:
                    levels[level] += 1
                    message = line.split(f" {level} ", 1)[1]
                    messages[" ".join(w for w in message.split() if "line-" not in w)[:150]] += 1
        common = messages.most_common(1)
        return levels, (f"{common[0][1]} x `{common[0][0]}`" if common else "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- one size ---------------------------------------------------------------------------------
@dataclass
class SizeReport:
    n: int
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: str, operator: str, baseline: str = "—") -> None:
        self.rows.append((figure, operator, baseline))


@dataclass
class Quiet:
    seconds: float
    metrics: OperatorMetrics
    apiserver: Counter[Key]
    audit: Counter[tuple[str, str, str, int]]
    others: Counter[tuple[str, str, str, int]]
    cpu: float
    rss_start_kib: int
    peak_rss_kib: int


class Bench:
    def __init__(
        self,
        plane: AuditedPlane,
        root: Path,
        dnas: list[str],
        args: argparse.Namespace,
        work: Path,
    ) -> None:
        self.plane, self.root, self.dnas, self.args, self.work = plane, root, dnas, args, work
        self.kubeconfig = plane.kubeconfig
        self.tpls = templates(ModelsVolume(root), dnas)
        self.audit = AuditTail(plane.audit_log)

    def namespace(self, api: Any, name: str) -> None:
        core_api(api).create_namespace({"metadata": {"name": name}})

    def lines(self, n: int) -> list[tuple[str, str]]:
        return [(f"line-{i:05d}", self.dnas[i % len(self.dnas)]) for i in range(n)]

    def cpu(self, operator: int | None = None) -> dict[str, float]:
        assert self.plane.info is not None
        out = {k: cpu_seconds(pid) for k, pid in self.plane.info.pids.items()}
        out["benchmark"] = cpu_seconds(os.getpid())
        out["machine"] = machine_busy_seconds()
        if operator:
            out["operator"] = cpu_seconds(operator)
        return out

    def timed(
        self, ns: str, api: Any, create: CreateFn, op: OperatorProcess | None, n: int
    ) -> Convergence:
        clients = Clients(self.kubeconfig)
        try:
            a0 = ApiserverCounts.scrape(self.plane)
            cpu0, c0 = self.cpu(op.pid if op else None), time.monotonic()
            res = converge(
                clients,
                api,
                ns,
                self.lines(n),
                create,
                self.tpls,
                self.args.workers,
                self.args.timeout,
                check=op.check if op else None,
            )
            cpu1, c1 = self.cpu(op.pid if op else None), time.monotonic()
            a1 = ApiserverCounts.scrape(self.plane)
        finally:
            clients.close()
        res.cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        res.cpu_wall = c1 - c0
        res.writes = a1.minus(a0)
        return res

    def run_size(self, n: int) -> SizeReport:
        rep = SizeReport(n)
        api = new_client(self.kubeconfig)
        try:
            print(f"[N={n}] baseline (plain clients, no operator) ...", flush=True)
            ns = f"base-{n}"
            self.namespace(api, ns)
            # As in the operator's namespace: one line first, so that nothing is cold.
            create_baseline_line(api, ns, "warmup", self.dnas[0], self.tpls[self.dnas[0]])
            base = self.timed(ns, api, create_baseline_line, None, n)
            print(f"[N={n}] baseline: {base.ready}/{n} Ready in {base.elapsed:.1f} s", flush=True)
            print(f"[N={n}] operator ...", flush=True)
            self.run_operator(n, api, rep, base)
        finally:
            api.close()
        return rep

    def run_operator(self, n: int, api: Any, rep: SizeReport, base: Convergence) -> None:
        ns = f"op-{n}"
        self.namespace(api, ns)
        op = OperatorProcess(self.kubeconfig, ns, self.root, self.work / f"operator-{n}.log")
        try:
            self.warm_up(api, ns, op)
            m0, log0 = OperatorMetrics.scrape(op.port), op.log_size()
            res = self.timed(ns, api, create_operator_line, op, n)
            w1 = time.time()
            m1 = OperatorMetrics.scrape(op.port)
            rss_converged = proc_status(op.pid, "VmRSS")
            print(
                f"[N={n}] operator: {res.ready}/{n} Ready in {res.elapsed:.1f} s"
                + ("" if res.seconds is not None else " (TIMED OUT)"),
                flush=True,
            )
            quiet: Quiet | None = None
            idle: tuple[float, bool] | None = None
            if res.seconds is not None and self.args.quiet_seconds > 0:
                print(f"[N={n}] settling (until the operator is idle) ...", flush=True)
                idle = self.settle(op, ns, res.t0_wall)
                print(
                    f"[N={n}] quiet window of {self.args.quiet_seconds:g} s "
                    f"(operator idle from {idle[0]:.0f} s) ...",
                    flush=True,
                )
                quiet = self.quiet(op, ns)
            rss_end, hwm = proc_status(op.pid, "VmRSS"), proc_status(op.pid, "VmHWM")
            time.sleep(AUDIT_LAG_S)
            self.audit.read()
            conv = self.audit.counts(res.t0_wall, w1, ns, OPERATOR_CLIENTS)
            self.rows(rep, n, res, base, m1.minus(m0), conv, idle, quiet)
            rep.add("operator RSS when all Ready", f"{rss_converged / 1024:.0f} MiB")
            rep.add("operator RSS at the end", f"{rss_end / 1024:.0f} MiB")
            rep.add("operator peak RSS (VmHWM)", f"{hwm / 1024:.0f} MiB")
            levels, common = op.log_problems(log0)
            rep.add(
                "operator log from the first create on: WARNING / ERROR lines",
                f"{levels['WARNING']} / {levels['ERROR']}" + (f"; {common}" if common else ""),
            )
            if res.errors or base.errors:
                rep.notes.append(f"create errors: {(res.errors + base.errors)[:5]}")
        finally:
            op.stop()

    def warm_up(self, api: Any, ns: str, op: OperatorProcess) -> None:
        """Wait for the operator to serve /metrics and to make a first line Ready."""
        deadline = time.monotonic() + 120
        while True:
            op.check()
            try:
                OperatorMetrics.scrape(op.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        custom_api(api).create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, line_body("warmup", self.dnas[0])
        )
        while not any(
            o["metadata"]["name"] == "warmup" and is_ready(o) for o in list_lines(api, ns)
        ):
            op.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"warm-up line never Ready:\n{op.tail()}")
            time.sleep(0.2)
        time.sleep(2)  # its follow-up events (Kopf's annotations, the ConfigMap's) pass

    def settle(self, op: OperatorProcess, ns: str, t0_wall: float) -> tuple[float, bool]:
        """Rest ``--settle-seconds``, then until the operator made no API request (watches
        aside) for ``IDLE_S``; capped by ``--settle-max``. Returns (when its last request
        was, seconds after the first create; whether it went idle)."""
        start = time.monotonic()
        time.sleep(self.args.settle_seconds)
        while True:
            op.check()
            self.audit.read()
            last = self.audit.last(ns, OPERATOR_CLIENTS)
            if time.time() - last >= IDLE_S + AUDIT_LAG_S:
                return last - t0_wall, True
            if time.monotonic() - start > self.args.settle_max:
                return last - t0_wall, False
            time.sleep(1)

    def quiet(self, op: OperatorProcess, ns: str) -> Quiet:
        m0, a0 = OperatorMetrics.scrape(op.port), ApiserverCounts.scrape(self.plane)
        c0, w0 = cpu_seconds(op.pid), time.time()
        end = time.monotonic() + self.args.quiet_seconds
        peak = start_rss = proc_status(op.pid, "VmRSS")
        while time.monotonic() < end:
            peak = max(peak, proc_status(op.pid, "VmRSS"))
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        w1, c1 = time.time(), cpu_seconds(op.pid)
        m1, a1 = OperatorMetrics.scrape(op.port), ApiserverCounts.scrape(self.plane)
        op.check()
        time.sleep(AUDIT_LAG_S)
        self.audit.read()
        others = tuple({r.client for r in self.audit.reqs} - {*OPERATOR_CLIENTS, "bench"})
        return Quiet(
            seconds=w1 - w0,
            metrics=m1.minus(m0),
            apiserver=a1.minus(a0),
            audit=self.audit.counts(w0, w1, ns, OPERATOR_CLIENTS),
            others=self.audit.counts(w0, w1, None, others),
            cpu=(c1 - c0) / (w1 - w0),
            rss_start_kib=start_rss,
            peak_rss_kib=peak,
        )

    def rows(
        self,
        rep: SizeReport,
        n: int,
        res: Convergence,
        base: Convergence,
        m: OperatorMetrics,
        audit: Counter[tuple[str, str, str, int]],
        idle: tuple[float, bool] | None,
        quiet: Quiet | None,
    ) -> None:
        def conv(c: Convergence) -> str:
            if c.seconds is not None:
                return f"**{c.seconds:.1f} s**"
            return f"timed out at {c.elapsed:.0f} s: {c.ready}/{c.n} Ready, {c.created} created"

        def opt(v: float | None) -> str:
            return f"{v:.1f} s" if v is not None else "n/a"

        def rate(c: Convergence) -> str:
            return f"{c.ready / c.elapsed:.1f}" if c.elapsed else "n/a"

        rep.add(f"time to all {n} Ready", conv(res), conv(base))
        rep.add("time to half Ready", opt(res.half_s), opt(base.half_s))
        rep.add("creates finished at", opt(res.creates_s), opt(base.creates_s))
        rep.add("throughput (lines Ready / s)", rate(res), rate(base))
        if idle is not None:
            rep.add(
                "operator's last API request (its backlog drained) at",
                f"{idle[0]:.1f} s" + ("" if idle[1] else " (still busy: settle capped)"),
            )
        rep.add("reconcile p50 (histogram estimate)", m.quantile(0.5))
        rep.add("reconcile p95 (histogram estimate)", m.quantile(0.95))
        mean = m.total / m.count if m.count else 0.0
        rep.add(
            "reconciles while converging (per line); mean",
            f"{m.count:.0f} ({m.count / n:.1f}); {fmt_s(mean)}",
        )
        rep.add(
            f"Σ reconcile time / wall time (Kopf executor: {MAX_WORKERS} threads)",
            f"{m.total / res.elapsed:.1f}" if res.elapsed else "n/a",
        )
        rep.add(
            "API writes while converging, all clients (apiserver_request_total)",
            count_writes(res.writes) + f" = {sum_writes(res.writes) / n:.1f} per line",
            count_writes(base.writes) + f" = {sum_writes(base.writes) / n:.1f} per line",
        )
        rep.add("operator writes while converging (audit)", summarize(audit, AUDIT_WRITES))
        rep.add("operator reads while converging (audit)", summarize(audit, AUDIT_READS))
        reads = total(audit, ("get", "list"), "reconcile")
        full = sum(  # a reconcile that reads starts with a GET of its line
            v for (c, verb, r, _code), v in audit.items()
            if (c, verb, r) == ("reconcile", "get", PLURAL)
        )  # fmt: skip
        rep.add(
            "GET/LIST per reconcile while converging (per reconcile that read)",
            f"{reads / m.count:.2f} ({reads / full:.1f})" if m.count and full else "n/a",
        )
        shares = (
            ("operator", "operator"),
            ("kube-apiserver", "kube-apiserver"),
            ("etcd", "etcd"),
            ("kube-controller-manager", "kube-controller-manager"),
            ("nodeagent", "node agent"),
            ("benchmark", "this benchmark (creates + polls)"),
        )
        for key, label in shares:
            rep.add(
                f"CPU while converging: {label} (share of one core)",
                self._share(res, key),
                "—" if key == "operator" else self._share(base, key),
            )
        for c in (res, base):
            ours = sum(v for k, v in c.cpu.items() if k != "machine")
            c.cpu["others"] = max(0.0, c.cpu.get("machine", 0.0) - ours)
        rep.add(
            "CPU while converging: processes not of this run (share of one core; should be ~0)",
            self._share(res, "others"),
            self._share(base, "others"),
        )
        rep.add(
            f"CPU while converging: whole machine (of {os.cpu_count()} cores)",
            self._share(res, "machine", os.cpu_count() or 1),
            self._share(base, "machine", os.cpu_count() or 1),
        )
        if quiet is None:
            rep.add("quiet window", "not measured (not all Ready)")
            return
        qs, qm = quiet.seconds, quiet.metrics
        rep.add(
            f"API writes in the quiet window ({qs:.0f} s; apiserver_request_total: "
            + "/".join(RESOURCES)
            + ", all clients)",
            f"**{count_writes(quiet.apiserver)}**",
        )
        rep.add(
            f"`{WRITES_METRIC}` delta in the quiet window",
            "metric absent" if qm.writes is None else f"{qm.writes:.0f}",
        )
        rep.add("operator writes in the quiet window (audit)", summarize(quiet.audit, AUDIT_WRITES))
        rep.add("operator reads in the quiet window (audit)", summarize(quiet.audit, AUDIT_READS))
        rep.add(
            "other components' requests on these resources in the quiet window (audit)",
            summarize(quiet.others, AUDIT_READS + AUDIT_WRITES, by_client=True),
        )
        rep.add(
            "reconciles in the quiet window (timer ticks); p50 / p95",
            f"{qm.count:.0f} ({qm.count / qs:.1f}/s); {qm.quantile(0.5)} / {qm.quantile(0.95)}",
        )
        rep.add("operator CPU in the quiet window (share of one core)", f"{quiet.cpu:.0%}")
        rep.add(
            "operator RSS in the quiet window: at its start / peak",
            f"{quiet.rss_start_kib / 1024:.0f} / {quiet.peak_rss_kib / 1024:.0f} MiB",
        )
        reads_all = Counter(
            {
                f"{verb} {res_}": v
                for (verb, res_, _c), v in quiet.apiserver.items()
                if verb in READ_VERBS and res_ in RESOURCES
            }
        )
        rep.add(
            "reads on these resources in the quiet window, all clients (apiserver_request_total)",
            ", ".join(f"{k} {v}" for k, v in sorted(reads_all.items())) or "0",
        )

    @staticmethod
    def _share(c: Convergence, key: str, cores: int = 1) -> str:
        if not c.cpu_wall or key not in c.cpu:
            return "n/a"
        return f"{c.cpu[key]:.1f} s ({c.cpu[key] / c.cpu_wall / cores:.0%})"


# -- report -----------------------------------------------------------------------------------
def command_line() -> str:
    py = os.path.relpath(sys.executable) if sys.executable.startswith(str(REPO)) else "python"
    pp = os.environ.get("PYTHONPATH", "")
    return (f"PYTHONPATH={pp} " if pp else "") + shlex.join([py, *sys.argv])


def render(reports: list[SizeReport], header: list[str]) -> str:
    out = ["## Operator at scale (`benchmarks/bench_operator.py`)", "", *header, ""]
    for rep in reports:
        out += [f"### N = {rep.n} CertifiedModels", ""]
        out += ["| figure | operator | baseline |", "|---|---|---|"]
        out += [f"| {f} | {o} | {b} |" for f, o, b in rep.rows]
        if rep.notes:
            out += ["", *[f"- {note}" for note in rep.notes]]
        out.append("")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--sizes", default="200,1000", help="comma-separated N (default 200,1000)")
    p.add_argument("--quiet-seconds", type=float, default=60.0, help="0: no quiet window")
    p.add_argument("--settle-seconds", type=float, default=15.0, help="least rest before it")
    p.add_argument(
        "--settle-max", type=float, default=90.0, help="most rest while the operator is busy"
    )
    p.add_argument(
        "--timeout", type=float, default=240.0, help="per size: give up waiting for Ready after"
    )
    p.add_argument("--versions", type=int, default=4, help="published versions shared by lines")
    p.add_argument("--workers", type=int, default=8, help="API clients creating the lines")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "operator.md")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, audit)")
    return p.parse_args(argv)


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    bins = find_binaries()
    started = time.monotonic()
    with workdir(args.keep) as work:
        root = work / "models"
        store = Store(root)
        dnas = [make_version(store, seed=s).dna for s in range(1, args.versions + 1)]
        plane = AuditedPlane(work / "cluster", work / "audit")
        print("starting the local control plane ...", flush=True)
        info = plane.start()
        reports: list[SizeReport] = []
        try:
            kubectl = [str(bins.kubectl), "--kubeconfig", str(plane.kubeconfig)]
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
                check=True,
                capture_output=True,
                timeout=120,
            )
            subprocess.run(
                [*kubectl, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            bench = Bench(plane, root, dnas, args, work)
            for n in sizes:
                reports.append(bench.run_size(n))
        finally:
            plane.stop()
    header = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, kopf {version('kopf')}; kube {info.kube_version}, "
        f"etcd {info.etcd_version} (local control plane with an audit log; up in "
        f"{info.start_to_ready_s:.0f} s). Whole run: {time.monotonic() - started:.0f} s.",
        "",
        f"Each line: `policy: Manual`, `current:` one of {len(dnas)} published versions "
        f"(round robin); {args.workers} API clients create them; one LIST every {POLL_S} s "
        "counts Ready=True with observedGeneration == generation. Each namespace also holds one "
        "warm-up line, made Ready before the clock starts. Reconcile quantiles are estimated "
        "from the histogram's buckets (linear within a bucket). Operator requests are "
        "attributed from the API server's audit log by user agent: `kopf/*` (Kopf's watches "
        "and patches) and the Python client (operator/kube.py). Baseline: per line, create the "
        "CertifiedModel, create its pointer ConfigMap, patch its status (the operator's "
        "decision, precomputed) -- no operator running. The settle before the quiet window "
        f"lasts at least {args.settle_seconds:g} s and until the operator has made no API "
        f"request for {IDLE_S:g} s (at most {args.settle_max:g} s).",
    ]
    text = render(reports, header)
    print()
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"written to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
