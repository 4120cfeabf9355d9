"""Fault injection on the runtime side: real processes killed, a real full disk, real corruption.

Every scenario ends with the same two questions: was anything lost (every version still
verifies, CURRENT names a good one) and does the system converge (the same command run again,
or the server started again, reaches the state an undisturbed run would have)?

- a ``certmodel train`` child is SIGKILLed mid-run, after a checkpoint: the rerun resumes;
- it is SIGKILLed mid-publication, held at each publish fault point (``:hang``) and killed from
  outside: no partial version is ever listed, promoted or served;
- the models volume is a real, full tmpfs (private mount namespace): ENOSPC while writing the
  weights is one clear line, and after freeing space the same command publishes;
- versions are corrupted on the volume after publication: ``verify`` names the file, a running
  ``certmodel serve`` refuses them under load and keeps serving, a restarted one serves nothing
  and says why;
- ``certmodel serve`` is SIGKILLed mid-swap under load and started again: it comes up on the new
  CURRENT, and no answer ever came from anything but one of the two versions.

Reruns of the CLI run in this process (the same ``main``, without the seconds of importing
torch again); every process that is killed is a real child process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faultkit
import pytest
from faultkit import (
    SERVE_FAULT,
    Child,
    Load,
    PrivateTmpfs,
    Runner,
    Server,
    certmodel_argv,
    cli,
    cli_batch,
    cli_json,
    env_with,
    hang_line,
    spawn,
    train_argv,
    wait_for,
)
from tinymodels import build_tiny_llama, corpus, write_jsonl

from certmodel.runtime.errors import ExitCode
from certmodel.runtime.format.store import Store
from certmodel.runtime.format.verify import verify_version
from certmodel.runtime.training.result import TERMINATION_ENV

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


@dataclass(frozen=True)
class Template:
    """A store with base model ``tiny-llama``, four adapters on it and CURRENT at the first."""

    root: Path
    data: Path
    adapters: list[str]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    import peft  # noqa: F401 -- a missing ML stack must fail loudly, never skip

    from certmodel.runtime.localmode import promote_local
    from certmodel.runtime.serving import tiny
    from certmodel.runtime.training.base_models import prepare_from_dir

    tmp = tmp_path_factory.mktemp("runtime-faults")
    store = Store(tmp / "models")
    prepare_from_dir(store, build_tiny_llama(tmp / "tiny-src"), "tiny-llama")
    with warnings.catch_warnings():  # peft trips a transformers deprecation; not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        adapters = [tiny.publish_adapter(store, "tiny-llama", seed=s).dna for s in (1, 2, 3, 4)]
    promote_local(store, adapters[0])
    return Template(store.root, write_jsonl(tmp / "data" / "qa.jsonl", corpus()), adapters)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The in-process reruns train with one thread, like the children (see faultkit.env_with)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def reap() -> Iterator[Callable[[Child], Child]]:
    """Registers children; any still running when the test ends (it failed) is killed."""
    children: list[Child] = []

    def register(child: Child) -> Child:
        children.append(child)
        return child

    yield register
    for child in children:
        child.kill()


@pytest.fixture
def store(template: Template, tmp_path: Path) -> Store:
    root = tmp_path / "models"
    shutil.copytree(template.root, root, symlinks=True)
    return Store(root)


def nothing_lost(
    root: Path, versions: list[str], current: str, run: Runner = cli_batch
) -> dict[str, Any]:
    """Exactly ``versions`` are listed and each verifies; CURRENT is ``current`` and valid.
    Returns the ``validate`` report (which must have no errors) for further checks."""
    commands = [[name, *extra, "--root", str(root), "--json"] for name, *extra in CHECKS]
    (code, listed), (verified, reports), (pointed, pointer), (validated, report) = [
        (code, json.loads(out)) for code, out, _ in run(commands)
    ]
    assert code == 0 and sorted(v["dna"] for v in listed) == sorted(versions), listed
    assert all(v["error"] is None for v in listed), listed
    assert verified == 0 and all(r["ok"] for r in reports), reports
    assert pointed == 0 and pointer["target"]["dna"] == current, pointer
    assert report["current"] == current
    assert [f for f in report["findings"] if f["severity"] == "error"] == [], report["findings"]
    assert validated == 0
    return dict(report)


CHECKS = [["list"], ["verify", "--all"], ["current"], ["validate"]]


def planned_dna(args: list[str]) -> str:
    code, out, err = cli(*args, "--dry-run")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["exists"] is False
    return str(plan["dna"])


def train_events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith('{"')]


# -- 1. training killed mid-step -----------------------------------------------------------


@pytest.mark.reliability(
    "faults",
    "Training process SIGKILLed mid-run, after it wrote a checkpoint (a real `certmodel train`"
    " child, killed while stepping)",
    "the same command resumes from the checkpoint (step > 0, nothing retrained before it) and"
    " publishes one verified version with the planned DNA; nothing half-written under"
    " certified/; the other versions and CURRENT untouched",
)
def test_training_killed_mid_step_resumes_from_its_checkpoint(
    template: Template, store: Store, tmp_path: Path, reap: Callable[[Child], Child]
) -> None:
    total = 240
    args = train_argv(
        store.root, template.data, "--max-steps", str(total), "--checkpoint-every", "10",
        "--seed", "21", "--progress", "json",
    )  # fmt: skip
    dna = planned_dna(args)
    staging = store.staging_path(dna)
    child = reap(spawn(certmodel_argv(*args), tmp_path / "logs" / "train", env=env_with()))
    wait_for(
        "a checkpoint",
        lambda: child.running() and list((staging / "checkpoints").glob("step-*")),
    )
    assert child.kill() == -9, "the run ended before it could be killed mid-run"

    progress = json.loads((staging / "progress.json").read_text())
    assert progress["phase"] == "train" and 0 < progress["step"] < total, progress
    checkpoint = max((staging / "checkpoints").glob("step-*"))
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["dna"] == dna and state["step"] >= 10
    assert not store.version_path(dna).exists()
    nothing_lost(store.root, template.adapters, current=template.adapters[0])

    code, out, err = cli(*args)  # the retried pod: the very same command
    assert code == 0, err
    result = json.loads(out)
    steps = [e["step"] for e in train_events(err) if e["phase"] == "train"]
    assert result["resumed_from_step"] == state["step"] > 0
    assert steps[0] == state["step"] + 1 and steps[-1] == total
    assert (result["status"], result["dna"], result["metrics"]["steps"]) == ("trained", dna, total)
    assert verify_version(store.version_path(dna)).ok
    assert not staging.exists()
    nothing_lost(store.root, [*template.adapters, dna], current=template.adapters[0])


# -- 2. training killed mid-publication ----------------------------------------------------


@pytest.mark.parametrize(
    "point", ["publish.after-manifest", "publish.before-rename", "publish.after-rename"]
)
@pytest.mark.reliability(
    "faults",
    "Training process SIGKILLed mid-publication: held at each publish fault point"
    " (`CERTMODEL_FAULTS=<point>:hang`) and killed from outside",
    "no partial version is listed, verifiable-looking or promotable; a half-published"
    " .staging folder is reported by `validate`; the rerun publishes (resuming from the"
    " checkpoint) or finds the complete version, and leaves .staging clean",
)
def test_training_killed_mid_publication_leaves_no_partial_version(
    point: str, template: Template, store: Store, tmp_path: Path, reap: Callable[[Child], Child]
) -> None:
    args = train_argv(
        store.root, template.data, "--max-steps", "6", "--checkpoint-every", "4", "--seed", "31",
        "--progress", "none",
    )  # fmt: skip
    dna = planned_dna(args)
    env = env_with(CERTMODEL_FAULTS=f"{point}:hang")
    child = reap(spawn(certmodel_argv(*args), tmp_path / "logs" / "train", env=env))
    child.wait_line(hang_line(point))
    staged = store.staging_path(dna) / "version"
    published = point == "publish.after-rename"
    if published:  # the rename happened: complete and verifiable while the process still runs
        assert verify_version(store.version_path(dna)).ok and not staged.exists()
    else:
        assert (staged / "certified.json").is_file() and not store.version_path(dna).exists()
    assert child.kill() == -9

    code, report = cli_json("validate", "--root", str(store.root))
    staging_findings = [f for f in report["findings"] if f["subject"] == f".staging/{dna}"]
    if published:
        nothing_lost(store.root, [*template.adapters, dna], current=template.adapters[0])
        assert [f["severity"] for f in staging_findings] == ["warning"]  # safe to remove
    else:
        assert code == ExitCode.FAILED
        assert [f["severity"] for f in staging_findings] == ["error"]
        assert "half-published" in staging_findings[0]["detail"]
        code, _, err = cli("promote", dna, "--root", str(store.root))
        assert code == ExitCode.NOT_FOUND and f"version {dna} not found" in err
        code, listed = cli_json("list", "--root", str(store.root))
        assert sorted(v["dna"] for v in listed) == sorted(template.adapters)
        code, reports = cli_json("verify", "--all", "--root", str(store.root))
        assert code == 0 and all(r["ok"] for r in reports)
        assert report["current"] == template.adapters[0]  # and it validated (no CURRENT error)
        assert {f["subject"] for f in report["findings"]} == {f".staging/{dna}"}

    code, out, err = cli(*args)  # the retried pod
    assert code == 0, err
    result = json.loads(out)
    assert result["dna"] == dna
    if published:
        assert result["status"] == "exists"
    else:
        assert (result["status"], result["resumed_from_step"]) == ("trained", 4)
    assert not store.staging_path(dna).exists()
    report = nothing_lost(store.root, [*template.adapters, dna], current=template.adapters[0])
    assert report["findings"] == []


# -- 3. disk full while publishing ---------------------------------------------------------


@pytest.mark.reliability(
    "faults",
    "Disk full while publishing: the models volume is a real 4 MiB tmpfs in a private mount"
    " namespace, filled so that writing the adapter weights hits ENOSPC",
    "`certmodel train` exits 1 with one `certmodel: error: no space left ...` line and no"
    " traceback, the same words in its termination message; no partial version; the existing"
    " versions and CURRENT intact and verified; after freeing space the same command publishes"
    " a verified version",
)
def test_disk_full_while_publishing_fails_clearly_and_a_retry_works(
    template: Template, tmp_path: Path, reap: Callable[[Child], Child]
) -> None:
    volume = PrivateTmpfs(tmp_path / "volume", "4m")
    try:
        root = tmp_path / "volume" / "models"  # the path inside the namespace
        seen = volume.view(root)  # the same folder from here
        shutil.copytree(template.root, seen, symlinks=True)

        def inside(commands: list[list[str]]) -> list[tuple[int, str, str]]:
            """The commands run in the namespace: paths through /proc/PID/root do not resolve
            (the base-model checks resolve paths)."""
            argv = volume.argv([sys.executable, faultkit.__file__, "batch", json.dumps(commands)])
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            return [(code, out, err) for code, out, err in json.loads(done.stdout)]

        recipe = ["--max-steps", "4", "--checkpoint-every", "100", "--seed", "41"]
        args = train_argv(root, template.data, *recipe, "--progress", "none")
        dna = planned_dna(train_argv(seen, template.data, *recipe))
        filler = tmp_path / "volume" / "filler"
        free = volume.fill(filler, leave=16 * 1024)
        assert free <= 16 * 1024

        train_there = volume.argv(certmodel_argv(*args))
        termination = tmp_path / "termination-log"  # as a pod's, not on the models volume
        env = env_with(**{TERMINATION_ENV: str(termination)})
        child = reap(spawn(train_there, tmp_path / "logs" / "full", env=env))
        assert child.wait() == ExitCode.FAILED, child.stderr()[-3000:]
        stderr = child.stderr()
        errors = [line for line in stderr.splitlines() if line.startswith("certmodel:")]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert len(errors) == 1 and errors[0].startswith("certmodel: error: no space left")
        assert "free space" in errors[0]
        assert child.stdout() == ""
        failure = json.loads(termination.read_text())  # what the operator reports
        assert failure["status"] == "failed"
        assert failure["error"] == errors[0].removeprefix("certmodel: error: ")
        assert not (seen / "certified" / dna).exists()
        nothing_lost(root, template.adapters, current=template.adapters[0], run=inside)

        volume.view(filler).unlink()  # free space
        child = reap(spawn(train_there, tmp_path / "logs" / "retry", env=env_with()))
        assert child.wait() == 0, child.stderr()[-3000:]
        result = json.loads(child.stdout())
        assert (result["status"], result["dna"]) == ("trained", dna)
        assert not (seen / ".staging" / dna).exists()
        nothing_lost(root, [*template.adapters, dna], current=template.adapters[0], run=inside)
    finally:
        volume.close()


# -- 4. corrupted files on the volume after publication ------------------------------------


def corrupt(store: Store, dna: str, how: str) -> str:
    """Damage version ``dna`` after publication; returns the file a reader must name."""
    version = store.version_path(dna)
    weights = version / "adapter" / "adapter_model.safetensors"
    if how == "flip":  # same size, valid header: only the digest can tell
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
        return "adapter/adapter_model.safetensors"
    if how == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
        return "adapter/adapter_model.safetensors"
    manifest = json.loads((version / "certified.json").read_text())
    manifest["recipe"]["seed"] += 1  # claims another recipe than the one trained
    (version / "certified.json").write_text(json.dumps(manifest, indent=2))
    return "certified.json"


HOW = ["flip", "truncate", "json"]


def refusal(server: Server, dna: str) -> dict[str, Any] | None:
    return next((r for r in server.status()["refused"] if r["dna"] == dna), None)


def force_current(store: Store, dna: str) -> int:
    """Move CURRENT to ``dna`` without the CLI's verification (as a stale or hand-made pointer
    would); returns the new revision."""
    from certmodel.runtime.format import pointer
    from certmodel.runtime.format.pointer import FilePointer, PointerTarget

    target = PointerTarget.from_manifest(store.read_manifest(dna))
    ptr = FilePointer(store.root)
    doc = ptr.read()
    return ptr.swap(pointer.promote(doc, target), expected_revision=doc.revision).revision


@pytest.mark.reliability(
    "faults",
    "Files corrupted on the volume after publication: a flipped byte in the adapter weights,"
    " truncated weights, an edited certified.json field; CURRENT then moved onto each, and the"
    " server restarted while CURRENT names a corrupt one",
    "`certmodel verify` exits 1 naming the file and `promote` refuses; a running `certmodel"
    " serve` refuses each target under load and keeps serving the old version with 0 failed"
    " requests; restarted, it serves nothing (readyz 503) and reports the refusal in"
    " /v1/status; promoting a good version converges",
)
def test_corrupted_versions_are_never_served(
    template: Template, store: Store, tmp_path: Path
) -> None:
    good, *bad = template.adapters
    damaged = {dna: corrupt(store, dna, how) for dna, how in zip(bad, HOW, strict=True)}
    root = str(store.root)
    for dna, rel in damaged.items():
        code, out, _ = cli("verify", dna, "--root", root)
        assert code == ExitCode.FAILED and f"FAILED  {dna}: {store.version_path(dna) / rel}" in out
        code, _, err = cli("promote", dna, "--root", root)
        assert code != 0 and rel in err

    server = Server(store.root, tmp_path / "logs" / "serve")
    try:
        server.start()
        wait_for("the good version live", lambda: server.status()["dna"] == good)
        with Load(server.url) as load:
            load.wait_answers("answers", lambda a: a.code == 200)
            for dna, rel in damaged.items():
                revision = force_current(store, dna)
                refused = wait_for(f"{dna} refused", partial(refusal, server, dna))
                assert refused["code"] == "corrupt" and rel in refused["reason"]
                assert refused["revision"] == revision
                status = server.status()
                assert (status["dna"], status["ready"], status["converged"]) == (good, True, False)
            served = len(load.snapshot())
            wait_for("more answers", lambda: len(load.snapshot()) > served + 3)
        answers = load.snapshot()
        assert [a for a in answers if a.code != 200] == []
        assert {(a.dna, a.header_dna) for a in answers} == {(good, good)}

        server.stop()
        assert server.child is not None and server.child.proc.returncode == 0
        last = list(damaged)[-1]  # CURRENT still names it
        server.start()
        status = wait_for("the refusal", lambda: (s := server.status())["refused"] and s)
        assert (status["dna"], status["ready"], status["pointer_dna"]) == (None, False, last)
        assert status["refused"][0]["code"] == "corrupt"
        assert damaged[last] in status["refused"][0]["reason"]
        from serving.servekit import Client

        client = Client(server.url)
        assert client.get("/readyz")[0] == 503
        code, body, _ = client.complete()
        assert (code, body["error"]["code"]) == (503, "not_ready")
        assert 'certmodel_refused_targets_total{reason="corrupt"} 1.0' in client.get("/metrics")[1]

        code, _, err = cli("promote", good, "--root", root)  # the way out
        assert code == 0, err
        wait_for("the good version live again", lambda: server.status()["dna"] == good)
        assert client.complete()[1]["dna"] == good
    finally:
        server.stop()
    code, report = cli_json("validate", "--root", root)
    assert code == ExitCode.FAILED and report["current"] == good
    broken = {f["subject"] for f in report["findings"] if f["severity"] == "error"}
    assert broken == set(damaged)  # reported, and nothing else is


# -- 5. inference server killed mid-swap ---------------------------------------------------


@pytest.mark.reliability(
    "faults",
    "Inference server SIGKILLed mid-swap under request load: CURRENT moved, the new version"
    " verified and loaded but not yet live (held at `serve.before-switch`), then the process"
    " killed and started again",
    "the restarted server comes up on the new CURRENT, verified, and every answer after the"
    " restart carries its DNA; every successful answer before, during and after came whole"
    " from one of the two versions (DNA in body and header, the exact greedy text of that"
    " DNA); no HTTP error other than 503 not-ready while it loaded",
)
def test_server_killed_mid_swap_comes_back_on_the_new_version(
    template: Template, store: Store, tmp_path: Path
) -> None:
    old, new = template.adapters[:2]
    server = Server(store.root, tmp_path / "logs" / "serve")
    try:
        server.start(faults_spec=f"{SERVE_FAULT}:hang")
        wait_for("the old version live", lambda: server.status()["dna"] == old)
        with Load(server.url) as load:
            load.wait_answers("answers from the old version", lambda a: a.dna == old)
            code, _, err = cli("promote", new, "--root", str(store.root))
            assert code == 0, err
            first = server.child
            assert first is not None
            first.wait_line(hang_line(SERVE_FAULT))  # verified, loaded, warmed up; not live
            status = server.status()
            assert (status["dna"], status["pointer_dna"]) == (old, new)
            assert first.kill() == -9
            killed_at = time.monotonic()

            server.start()
            status = wait_for("the new version live", lambda: (s := server.status())["dna"] and s)
            restarted_at = time.monotonic()
            assert (status["dna"], status["converged"], status["refused"]) == (new, True, [])
            load.wait_answers("answers after the restart", lambda a: a.started > restarted_at)
        answers = load.snapshot()
    finally:
        server.stop()

    ok = [a for a in answers if a.code == 200]
    assert [a for a in answers if a.code not in (0, 200, 503)] == []
    assert all(a.dna == a.header_dna for a in ok)
    assert {a.dna for a in ok} == {old, new}
    texts = {dna: {a.text for a in ok if a.dna == dna} for dna in (old, new)}
    assert all(len(t) == 1 for t in texts.values()), texts  # one greedy text per version
    assert texts[old] != texts[new]
    assert {a.dna for a in ok if a.started < killed_at} == {old}
    assert {a.dna for a in ok if a.started > restarted_at} == {new}
    report = nothing_lost(store.root, template.adapters, current=new)
    assert report["findings"] == []
