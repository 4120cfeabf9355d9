"""Turn a Pod's spec into host-side things: volume folders, environment, probe results.

Part of the local node agent (test/dev infrastructure). Pods are handled as plain dicts in the
API's own camelCase shape (``ApiClient.sanitize_for_serialization``), so this code reads like
the YAML it implements. Every lookup goes through the API with the node's own credentials, so
the Node authorizer decides what the "kubelet" may read, as in a real cluster.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shlex
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localcluster.k8s import parse_quantity

Json = dict[str, Any]
# Host variables a container inherits (everything else comes from its spec).
PASS_ENV = (
    "LANG",
    "LC_ALL",
    "TZ",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "CERTMODEL_CACHE",
)


class NotReadyError(Exception):
    """A dependency (ConfigMap, Secret, bound PVC...) is not there yet; retry later."""


def _get(fn: Any, *args: Any, optional: bool = False) -> Any:
    try:
        return fn(*args)
    except ApiException as e:
        if e.status in (403, 404):  # 403: the Node authorizer's graph may lag a new pod
            if optional:
                return None
            raise NotReadyError(
                f"{getattr(fn, '__name__', fn)}{args}: {e.status} {e.reason}"
            ) from e
        raise


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


class PodContext:
    """API access and facts about one pod that volume and env resolution need."""

    def __init__(self, core: Any, pod: Json, node: Json, pod_dir: Path) -> None:
        self.core = core
        self.pod = pod
        self.node = node
        self.pod_dir = pod_dir
        self.ns: str = pod["metadata"]["namespace"]

    # ---------------------------------------------------------------- field and data lookup
    def field(self, path: str) -> str:
        meta, spec, status = self.pod["metadata"], self.pod["spec"], self.pod.get("status") or {}
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations"):
            items = sorted((meta.get(path.split(".")[1]) or {}).items())
            return "\n".join(f'{k}="{v}"' for k, v in items)
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": self.ns,
            "metadata.uid": meta.get("uid", ""),
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        return str(simple.get(path, status.get(path.rsplit(".", 1)[-1], "")))

    def resource(self, ref: Json, container_name: str | None) -> str:
        name = ref.get("containerName") or container_name
        ctr: Json = next((c for c in self.pod["spec"]["containers"] if c["name"] == name), {})
        kind, _, res = ref["resource"].partition(".")
        value = ((ctr.get("resources") or {}).get(kind) or {}).get(res)
        if value is None:
            value = (self.node.get("status", {}).get("allocatable") or {}).get(res, "0")
        divisor = parse_quantity(ref.get("divisor") or "1")
        return str(math.ceil(parse_quantity(value) / divisor))

    def config_data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        if kind == "configMap":
            cm = _get(self.core.read_namespaced_config_map, name, self.ns, optional=optional)
            if cm is None:
                return None
            out = {k: v.encode() for k, v in (cm.data or {}).items()}
            out.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
            return out
        sec = _get(self.core.read_namespaced_secret, name, self.ns, optional=optional)
        if sec is None:
            return None
        return {k: base64.b64decode(v) for k, v in (sec.data or {}).items()}

    def token(self, sa: str, audience: str | None, seconds: int) -> bytes:
        meta = self.pod["metadata"]
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[audience] if audience else [],
                expiration_seconds=seconds,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=meta["name"], uid=meta["uid"]
                ),
            )
        )
        resp = _get(self.core.create_namespaced_service_account_token, sa, self.ns, req)
        return str(resp.status.token).encode()

    # ---------------------------------------------------------------- volumes
    def _keyed(self, dst: Path, kind: str, src: Json, default_mode: int) -> None:
        data = self.config_data(kind, src["name"], bool(src.get("optional")))
        if data is None:
            return
        items = src.get("items") or [{"key": k, "path": k} for k in data]
        for it in items:
            if it["key"] not in data:
                if src.get("optional"):
                    continue
                raise NotReadyError(f"{kind} {src['name']} has no key {it['key']}")
            _write_atomic(dst / it["path"], data[it["key"]], it.get("mode", default_mode))

    def _downward(self, dst: Path, items: list[Json], default_mode: int) -> None:
        for it in items:
            if "fieldRef" in it:
                value = self.field(it["fieldRef"]["fieldPath"])
            else:
                value = self.resource(it["resourceFieldRef"], None)
            _write_atomic(dst / it["path"], value.encode(), it.get("mode", default_mode))

    def _projected(self, dst: Path, vol: Json) -> None:
        mode = vol.get("defaultMode", 0o644)
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        for src in vol.get("sources") or []:
            if "serviceAccountToken" in src:
                t = src["serviceAccountToken"]
                tok = self.token(sa, t.get("audience"), int(t.get("expirationSeconds") or 3607))
                _write_atomic(dst / t["path"], tok, mode)
            elif "configMap" in src:
                self._keyed(dst, "configMap", src["configMap"], mode)
            elif "secret" in src:
                self._keyed(dst, "secret", src["secret"], mode)
            elif "downwardAPI" in src:
                self._downward(dst, src["downwardAPI"].get("items") or [], mode)

    def _pvc_path(self, claim: str) -> str:
        pvc = _get(self.core.read_namespaced_persistent_volume_claim, claim, self.ns)
        if not pvc.spec.volume_name or (pvc.status and pvc.status.phase != "Bound"):
            raise NotReadyError(f"PVC {claim} is not bound yet")
        pv = _get(self.core.read_persistent_volume, pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise RuntimeError(f"PV {pv.metadata.name}: only hostPath/local PVs are supported")
        path = Path(source.path)
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def volumes(self, refresh_only: bool = False) -> dict[str, str]:
        """Materialize every volume; return name -> host folder. Raises NotReadyError to retry."""
        out: dict[str, str] = {}
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            dst = self.pod_dir / "volumes" / name
            if "hostPath" in vol:
                path = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type") in ("DirectoryOrCreate", "", None):
                    path.mkdir(parents=True, exist_ok=True)
                out[name] = str(path)
                continue
            if "persistentVolumeClaim" in vol:
                if not refresh_only:
                    out[name] = self._pvc_path(vol["persistentVolumeClaim"]["claimName"])
                continue
            dst.mkdir(parents=True, exist_ok=True)
            out[name] = str(dst)
            if "projected" in vol:
                self._projected(dst, vol["projected"])
            elif refresh_only:
                continue
            elif "configMap" in vol:
                self._keyed(
                    dst, "configMap", vol["configMap"], vol["configMap"].get("defaultMode", 0o644)
                )
            elif "secret" in vol:
                sec = dict(vol["secret"], name=vol["secret"]["secretName"])
                self._keyed(dst, "secret", sec, sec.get("defaultMode", 0o644))
            elif "downwardAPI" in vol:
                d = vol["downwardAPI"]
                self._downward(dst, d.get("items") or [], d.get("defaultMode", 0o644))
            elif "emptyDir" not in vol:
                raise RuntimeError(f"volume {name}: unsupported type {sorted(vol)}")
        return out

    # ---------------------------------------------------------------- environment
    def base_env(self, venv_bin: str | None, api_port: int) -> dict[str, str]:
        """What every container starts from: no agent environment (no KUBECONFIG!), a private
        HOME, the venv first on PATH, and the in-cluster API address."""
        port = str(api_port)
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env.setdefault("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        home = self.pod_dir / "home"
        home.mkdir(exist_ok=True)
        env.update(
            {
                "PATH": host_env_path(venv_bin),
                "HOME": str(home),
                "HOSTNAME": self.pod["metadata"]["name"],
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port,
                "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
            }
        )
        return env

    def env(self, ctr: Json, base: dict[str, str]) -> dict[str, str]:
        """Container environment: base, then envFrom, then env (later wins), $(VAR) expanded."""
        env = dict(base)
        for src in ctr.get("envFrom") or []:
            kind = "configMap" if "configMapRef" in src else "secret"
            ref = src.get("configMapRef") or src.get("secretRef") or {}
            data = self.config_data(kind, ref["name"], bool(ref.get("optional"))) or {}
            for k, v in data.items():
                env[src.get("prefix", "") + k] = v.decode()
        for e in ctr.get("env") or []:
            if "valueFrom" not in e:
                env[e["name"]] = expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[e["name"]] = self.field(vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                env[e["name"]] = self.resource(vf["resourceFieldRef"], ctr["name"])
            else:
                kind = "configMap" if "configMapKeyRef" in vf else "secret"
                ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef") or {}
                data = self.config_data(kind, ref["name"], bool(ref.get("optional"))) or {}
                if ref["key"] in data:
                    env[e["name"]] = data[ref["key"]].decode()
                elif not ref.get("optional"):
                    raise NotReadyError(f"{kind} {ref['name']} has no key {ref['key']}")
        return env


def mounts(ctr: Json, vols: dict[str, str], env: dict[str, str], term: Path) -> list[Json]:
    """Bind mounts for ``nsexec``: the termination-message file, then every volumeMount."""
    out: list[Json] = [
        {"source": str(term), "target": ctr.get("terminationMessagePath") or "/dev/termination-log"}
    ]
    for m in ctr.get("volumeMounts") or []:
        src = vols[m["name"]]
        if m.get("subPath"):
            src = os.path.join(src, expand(m["subPath"], env))
            if not os.path.exists(src):
                os.makedirs(src, exist_ok=True)
        out.append({"source": src, "target": m["mountPath"], "readOnly": bool(m.get("readOnly"))})
    return out


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, text)


def probe(spec: Json, ctr: Json, pid: int | None) -> bool:
    """Run one readiness/liveness probe against the container (all pods share 127.0.0.1)."""
    timeout = float(spec.get("timeoutSeconds") or 1)

    def port_of(p: Any) -> int:
        if isinstance(p, int) or str(p).isdigit():
            return int(p)
        return int(next(x["containerPort"] for x in ctr.get("ports") or [] if x.get("name") == p))

    try:
        if "httpGet" in spec:
            h = spec["httpGet"]
            scheme = (h.get("scheme") or "HTTP").lower()
            host = h.get("host") or "127.0.0.1"
            url = f"{scheme}://{host}:{port_of(h['port'])}{h.get('path') or '/'}"
            req = urllib.request.Request(url)  # noqa: S310 - probe of a local process
            for hdr in h.get("httpHeaders") or []:
                req.add_header(hdr["name"], hdr["value"])
            with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
                return 200 <= int(r.status) < 400
        if "tcpSocket" in spec:
            with socket.create_connection(
                ("127.0.0.1", port_of(spec["tcpSocket"]["port"])), timeout
            ):
                return True
        if "exec" in spec and pid:
            cmd = ["nsenter", "-t", str(pid), "-m", "--", *spec["exec"]["command"]]
            return (
                subprocess.run(cmd, capture_output=True, timeout=timeout, check=False).returncode
                == 0
            )
    except Exception:
        return False
    return True


def describe(cmd: list[str], limit: int = 160) -> str:
    """One log-friendly line for a command (scripts passed with -c can be long)."""
    text = " ".join(shlex.quote(c) for c in cmd).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def host_env_path(venv_bin: str | None) -> str:
    parts = [venv_bin] if venv_bin else []
    parts += (os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))
