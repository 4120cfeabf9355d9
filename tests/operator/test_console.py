"""The admin console in real headless Chromium against the real control plane.

The operator runs with its console; users are ServiceAccounts with real RBAC and tokens from
the TokenRequest API (`kubectl create token`), so TokenReview and SubjectAccessReview are the
API server's own. The page must list a version a ModelTraining really trained, its buttons
must move the pointer ConfigMap, the download must be the certified folder, and callers
without a token or without the permission must be refused.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import make_version
from opsupport import OperatorEnv, pointer_dna
from tinymodels import build_tiny_llama, corpus, write_jsonl

from certmodel.runtime.format.verify import verify_version

pytestmark = pytest.mark.cluster

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LINE = "chat"
UI_TIMEOUT_MS = 60_000

RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {name}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}}}
rules:
{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects: [{{kind: ServiceAccount, name: {name}}}]
"""
READ = """  - apiGroups: [certmodel.io]
    resources: [certifiedmodels, modeltrainings]
    verbs: [get, list, watch]
"""
ADMIN = (
    READ
    + """  - apiGroups: [certmodel.io]
    resources: [certifiedmodels]
    verbs: [patch]
  - apiGroups: [certmodel.io]
    resources: [certifiedmodels/download]
    verbs: [get]
"""
)


def line_manifest(base: str, current: str) -> str:
    return f"""
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {{name: {LINE}}}
spec:
  baseModel: {base}
  promotion: {{policy: Manual, current: {current}}}
"""


def user(env: OperatorEnv, name: str, rules: str) -> str:
    """A ServiceAccount bound to a Role of ``rules``; returns a token for it."""
    env.apply(RBAC.format(name=name, rules=rules))
    out = env.cluster.kubectl("create", "token", name, "-n", env.namespace, "--duration=1h")
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_console(env: OperatorEnv) -> str:
    port = free_port()
    env.stop_operator()
    env.start_operator("--console-port", str(port), "--console-host", "127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return base
        except OSError:
            env.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"console never answered:\n{env.log_tail()}") from None
            time.sleep(0.3)


def call(
    url: str, *, token: str | None = None, method: str = "GET", body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, kind, raw = resp.status, resp.headers.get_content_type(), resp.read()
    except urllib.error.HTTPError as err:
        status, kind, raw = err.code, err.headers.get_content_type(), err.read()
    return status, json.loads(raw) if kind == "application/json" else {"bytes": raw}


def current_is(dna: str) -> Any:
    return lambda o: (o.get("status") or {}).get("current") == dna


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the console test needs Debian's chromium (`make browser`)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Any, base: str, token: str) -> tuple[Any, list[str]]:
    """A fresh browser context (its own session storage) signed in with ``token``; the page
    and every URL it requested."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(base + "/")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    page.wait_for_selector(f'article[data-line="{LINE}"]')
    return page, urls


@pytest.mark.torch
def test_the_console_lists_a_trained_version_moves_the_pointer_and_downloads(
    operator_env: OperatorEnv, chromium: Any, tmp_path: Path
) -> None:
    env = operator_env
    base_url = start_console(env)
    build_tiny_llama(env.store.base_models_dir / "tiny-llama")
    write_jsonl(env.store.root / "datasets" / "qa.jsonl", corpus())
    first = make_version(env.store, base="tiny-llama", seed=1).dna
    env.apply(line_manifest("tiny-llama", first))
    env.apply("""
apiVersion: certmodel.io/v1alpha1
kind: ModelTraining
metadata: {name: tune}
spec:
  certifiedModel: chat
  baseModel: tiny-llama
  dataset: {path: datasets/qa.jsonl}
  method: {r: 4, alpha: 8}
  hyperparameters: {maxSteps: 6, batchSize: 4, maxSeqLen: 64, learningRate: 0.003, seed: 1}
  resources: {cpu: "1", memory: 2Gi}
  deadlineSeconds: 600
""")
    admin = user(env, "console-admin", ADMIN)

    page, urls = sign_in(chromium, base_url, admin)
    assert page.text_content("#who") == f"system:serviceaccount:{env.namespace}:console-admin"
    row = page.locator(f'tr[data-dna="{first}"]')
    row.locator(".verified", has_text="verified").wait_for()
    # The training shows up with its phase; it ends Succeeded, all steps done, with its DNA.
    done = page.locator('tr[data-training="tune"].phase-succeeded')
    done.wait_for(timeout=300_000)
    trained = env.get("modeltrainings", "tune")["status"]["dna"]
    assert done.locator(".progress").text_content().strip() == "6/6"
    trained_row = page.locator(f'tr[data-dna="{trained}"]')
    trained_row.locator(".verified", has_text="verified").wait_for()
    assert "tune" in trained_row.text_content()
    assert page.text_content(f'article[data-line="{LINE}"] dd.current') == first

    # "Set as CURRENT" on the trained version: the spec, then the pointer ConfigMap move.
    trained_row.locator("button.set-current").click()
    obj = env.wait("certifiedmodels", LINE, current_is(trained))
    assert pointer_dna(env, LINE) == trained
    promotion = obj["spec"]["promotion"]
    assert (promotion["policy"], promotion["current"]) == ("Manual", trained)
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert "certmodel-console" in managers
    who = obj["metadata"]["annotations"]["certmodel.io/console-changed-by"]
    assert who.startswith(f"system:serviceaccount:{env.namespace}:console-admin set CURRENT")
    page.locator(f'article[data-line="{LINE}"] dd.current', has_text=trained).wait_for()
    assert ("ConsoleSetCurrent", "Normal") in env.events(LINE)

    # "Roll back": CURRENT returns to the first version, recorded as a rollback.
    page.locator(f'article[data-line="{LINE}"] button.rollback').click()
    obj = env.wait("certifiedmodels", LINE, current_is(first))
    assert pointer_dna(env, LINE) == first
    assert obj["status"]["history"][-1]["reason"] == "rollback"
    page.locator(f'article[data-line="{LINE}"] dd.current', has_text=first).wait_for()

    # Download through the page's button: exactly the certified folder, and it verifies.
    with page.expect_download() as info:
        trained_row.locator("button.download").click()
    download = info.value
    assert download.suggested_filename == f"{trained}.tar"
    saved = tmp_path / "download.tar"
    download.save_as(saved)
    manifest = env.store.read_manifest(trained)
    with tarfile.open(saved, mode="r:") as tar:
        names = sorted(tar.getnames())
        tar.extractall(tmp_path / "out", filter="data")
    expected = {"certified.json", *(f.path for f in manifest.files)}
    if (env.store.version_path(trained) / "certified.sig").is_file():
        expected.add("certified.sig")
    assert names == sorted(f"{trained}/{rel}" for rel in expected)
    report = verify_version(tmp_path / "out" / trained)
    assert report.ok, report.problems
    assert report.manifest and report.manifest.content_digest == manifest.content_digest

    # The token travelled only in headers: never in a URL the browser asked for, nor a log.
    assert urls and not any(admin in u for u in urls)
    assert admin not in env.log_path.read_text(errors="replace")
    page.context.close()


@pytest.mark.reliability(
    "security",
    "console: no token, a bogus token, a read-only user pressing the buttons, a corrupt version",
    "401 without or with a bad token; 403 for patch and download without the RBAC grant, the"
    " pointer unmoved; 409 for a corrupt version's download",
)
def test_the_console_refuses_what_rbac_does_not_grant(
    operator_env: OperatorEnv, chromium: Any
) -> None:
    env = operator_env
    base_url = start_console(env)
    a = make_version(env.store, seed=1).dna
    b = make_version(env.store, seed=2).dna
    env.apply(line_manifest("tiny-base", b))
    env.wait("certifiedmodels", LINE, current_is(b))
    env.apply(line_manifest("tiny-base", a))  # b stays listed as the previous version
    env.wait("certifiedmodels", LINE, current_is(a))
    reader = user(env, "console-reader", READ)
    admin = user(env, "console-admin", ADMIN)
    api = f"{base_url}/api/namespaces/{env.namespace}"

    for token in (None, "bogus-token", admin[:-4] + "AAAA"):
        status, body = call(f"{api}/overview", token=token)
        assert status == 401 and "error" in body, (token, status, body)
    status, body = call(f"{api}/lines/{LINE}/current", method="POST", body={"dna": b})
    assert status == 401
    status, body = call(f"{api}/lines/{LINE}/versions/{a}/download?ticket=guessed")
    assert status == 401
    status, body = call(f"{base_url}/api/namespaces/kube-system/overview", token=admin)
    assert status == 404 and "not watched" in body["error"]

    # The read-only user sees the line, but its buttons are refused and nothing moves.
    page, _ = sign_in(chromium, base_url, reader)
    page.locator(f'tr[data-dna="{b}"] .verified', has_text="verified").wait_for()
    page.locator(f'tr[data-dna="{b}"] button.set-current').click()
    page.locator("#notice.error", has_text="may not patch certifiedmodels").wait_for()
    page.locator(f'article[data-line="{LINE}"] button.rollback').click()
    page.locator("#notice.error", has_text="may not patch certifiedmodels").wait_for()
    page.locator(f'tr[data-dna="{b}"] button.download').click()
    page.locator("#notice.error", has_text="may not get certifiedmodels/download").wait_for()
    page.context.close()
    status, body = call(f"{api}/lines/{LINE}/current", token=reader, method="POST", body={"dna": b})
    assert status == 403 and "console-reader may not patch" in body["error"]
    status, body = call(f"{api}/lines/{LINE}/versions/{b}/download", token=reader)
    assert status == 403
    obj = env.get("certifiedmodels", LINE)
    assert obj["spec"]["promotion"]["current"] == a and obj["status"]["current"] == a
    assert pointer_dna(env, LINE) == a

    # Bad input from an allowed user: a non-DNA, a version of no line, a corrupt version.
    status, body = call(
        f"{api}/lines/{LINE}/current", token=admin, method="POST", body={"dna": "../../x"}
    )
    assert status == 400
    status, _ = call(
        f"{api}/lines/{LINE}/versions/tiny-base-lora-000000000000/download", token=admin
    )
    assert status == 404
    weights = env.store.version_path(b) / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    status, body = call(f"{api}/lines/{LINE}/versions/{b}/download", token=admin)
    assert status == 409 and "adapter/adapter_model.safetensors" in body["error"]
    status, body = call(f"{api}/lines/{LINE}/versions/{a}/download", token=admin)
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body["bytes"])) as tar:
        assert f"{a}/certified.json" in tar.getnames()  # the good version still downloads
