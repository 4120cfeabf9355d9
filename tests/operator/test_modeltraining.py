"""ModelTraining on the real API server: a Job really trains on the local node agent, the
version lands on the volume, the line promotes it; dedupe, failures, restarts."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opsupport import OperatorEnv, condition, jobs, phase
from tinymodels import build_tiny_llama, corpus, write_jsonl

from certmodel.runtime.format.verify import verify_version

pytestmark = [pytest.mark.cluster, pytest.mark.torch]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def env(operator_env: OperatorEnv, tiny_base: Path) -> OperatorEnv:
    shutil.copytree(tiny_base, operator_env.store.base_models_dir / "tiny-llama")
    write_jsonl(operator_env.store.root / "datasets" / "qa.jsonl", corpus())
    return operator_env


def training(
    name: str,
    *,
    seed: int = 1,
    promote: bool = True,
    data: str = "datasets/qa.jsonl",
    steps: int = 8,
) -> str:
    return f"""
apiVersion: certmodel.io/v1alpha1
kind: ModelTraining
metadata: {{name: {name}}}
spec:
  certifiedModel: chat
  baseModel: tiny-llama
  dataset: {{path: {data}}}
  method: {{r: 4, alpha: 8}}
  hyperparameters: {{maxSteps: {steps}, batchSize: 4, maxSeqLen: 64, learningRate: 0.003,
                    seed: {seed}}}
  resources: {{cpu: "1", memory: 2Gi}}
  retries: 1
  deadlineSeconds: 600
  promote: {str(promote).lower()}
"""


LINE_LATEST = """
apiVersion: certmodel.io/v1alpha1
kind: CertifiedModel
metadata: {name: chat}
spec:
  baseModel: tiny-llama
  promotion: {policy: Latest}
"""


@contextlib.contextmanager
def serving(env: OperatorEnv) -> Iterator[Callable[[], str]]:
    """`certmodel serve` following the line's pointer ConfigMap; yields ask() -> its DNA."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (env.log_path.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("certmodel")),
            "serve",
            "--root",
            str(env.store.root),
            "--pointer-configmap",
            "chat-pointer",
            "--namespace",
            env.namespace,
            "--kubeconfig",
            str(env.cluster.kubeconfig),
            "--port",
            str(port),
            "--threads",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ask() -> str:
        body = json.dumps({"prompt": "Q: what does the store do?\nA:", "max_tokens": 4}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.headers["X-Model-DNA"])

    try:
        yield ask
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def wait_for_answer(ask: Callable[[], str], dna: str, timeout: float = 60) -> bool:
    """True once the server answers with ``dna`` (connection errors while it starts are ok)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ask() == dna:
                return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def test_train_publish_promote_and_dedupe(env: OperatorEnv) -> None:
    env.apply(LINE_LATEST)
    env.apply(training("v1"))
    running = env.wait("modeltrainings", "v1", lambda o: o.get("status", {}).get("jobName"))
    dna = running["status"]["dna"]
    assert running["status"]["jobName"] == f"train-{dna}"
    done = env.wait("modeltrainings", "v1", phase("Succeeded"), timeout=240)
    st = done["status"]
    assert condition(done) == ("True", "Trained")
    assert st["metrics"]["evalLoss"] > 0 and st["contentDigest"].startswith("sha256:")
    assert st["progress"]["summary"].startswith("8/8")
    assert verify_version(env.store.version_path(dna)).ok
    manifest = env.store.read_manifest(dna)
    assert manifest.base_model.name == "tiny-llama"
    line = env.wait("certifiedmodels", "chat", lambda o: o["status"].get("current") == dna)
    assert line["status"]["versions"][0]["training"] == "v1"
    cm = env.config_map("chat-pointer")
    assert cm is not None and cm["data"]["dna"] == dna

    # The same recipe again: no second Job, the version is reported as it is.
    env.apply(training("v1-again"))
    again = env.wait("modeltrainings", "v1-again", phase("Succeeded"))
    assert again["status"]["dna"] == dna and again["status"]["deduplicated"] is True
    assert condition(again) == ("True", "Deduplicated")
    assert len(jobs(env)) == 1

    printed = env.cluster.kubectl("get", "mt,cmod", "-n", env.namespace).stdout
    assert "Succeeded" in printed and dna in printed and "8/8 (100%)" in printed

    # An inference server watching the pointer ConfigMap serves it, follows a second
    # version, then the rollback -- without a restart.
    with serving(env) as ask:
        assert wait_for_answer(ask, dna)
        env.apply(training("v2", seed=2))
        dna2 = env.wait("modeltrainings", "v2", phase("Succeeded"), timeout=240)["status"]["dna"]
        env.wait("certifiedmodels", "chat", lambda o: o["status"].get("current") == dna2)
        assert wait_for_answer(ask, dna2)
        env.apply(LINE_LATEST.replace("{policy: Latest}", f"{{policy: Manual, current: {dna}}}"))
        line = env.wait("certifiedmodels", "chat", lambda o: o["status"].get("current") == dna)
        assert line["status"]["history"][-1]["reason"] == "rollback"
        assert wait_for_answer(ask, dna)


def test_bad_data_fails_the_job_with_the_trainers_message(env: OperatorEnv) -> None:
    bad = env.store.root / "datasets" / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json\n')
    env.apply(training("bad", data="datasets/bad.jsonl"))
    failed = env.wait("modeltrainings", "bad", phase("Failed"), timeout=180)
    assert condition(failed, "Failed") == ("True", "BadInput")
    assert "bad.jsonl" in failed["status"]["message"] and "2" in failed["status"]["message"]
    job = jobs(env)[0]
    assert job["status"]["failed"] == 1  # podFailurePolicy: bad input is not retried
    assert ("BadInput", "Warning") in env.events("bad")


def test_missing_data_is_reported_then_picked_up(env: OperatorEnv) -> None:
    env.apply(training("later", data="datasets/later.jsonl", steps=4))
    failed = env.wait("modeltrainings", "later", phase("Failed"))
    assert condition(failed, "Failed") == ("True", "InputNotFound")
    assert "later.jsonl" in failed["status"]["message"]
    assert jobs(env) == []
    write_jsonl(env.store.root / "datasets" / "later.jsonl", corpus(40, seed=3))
    env.wait("modeltrainings", "later", phase("Succeeded"), timeout=240)


@pytest.mark.reliability(
    "faults",
    "operator stopped and restarted mid-training",
    "no second Job (same uid); the training completes with its full progress",
)
def test_operator_restarted_mid_training_creates_no_second_job(env: OperatorEnv) -> None:
    env.apply(training("restart", steps=40))
    env.wait("modeltrainings", "restart", lambda o: o.get("status", {}).get("jobName"))
    uid = jobs(env)[0]["metadata"]["uid"]
    env.stop_operator()
    time.sleep(2)
    env.start_operator()
    done = env.wait("modeltrainings", "restart", phase("Succeeded"), timeout=300)
    assert [j["metadata"]["uid"] for j in jobs(env)] == [uid]
    assert done["status"]["progress"]["summary"].startswith("40/40")


def test_invalid_trainings_are_rejected_by_the_api_server(env: OperatorEnv) -> None:
    bad = env.cluster.kubectl(
        "apply",
        "-n",
        env.namespace,
        "-f",
        "-",
        check=False,
        input=training("bad-spec", data="../../etc/passwd"),
    )
    assert bad.returncode != 0
    assert "spec.dataset.path" in bad.stderr
    env.apply(training("immutable"))
    changed = env.cluster.kubectl(
        "apply", "-n", env.namespace, "-f", "-", check=False, input=training("immutable", seed=99)
    )
    assert changed.returncode != 0 and "is part of the recipe and cannot change" in changed.stderr
    env.cluster.kubectl("delete", "mt", "immutable", "-n", env.namespace, "--wait=false")
