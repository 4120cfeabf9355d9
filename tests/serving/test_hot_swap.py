"""The server on real tiny models: readiness, hot swaps under load, refusals, rollback, unload."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from serving.servekit import PROMPT, Client, Harness, wait_for

from certmodel.runtime.format.pointer import FilePointer
from certmodel.runtime.localmode import promote_local, rollback_local

pytestmark = [
    pytest.mark.torch,
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),
]


def live(client: Client) -> str | None:
    return client.get("/v1/status")[1]["dna"]


def serving(client: Client, dna: str) -> Callable[[], bool]:
    return lambda: live(client) == dna


def test_not_ready_before_current_then_answers_with_its_dna(harness: Harness) -> None:
    _, client = harness.start()
    assert client.get("/healthz")[0] == 200
    assert client.get("/readyz")[0] == 503
    code, body, _ = client.complete()
    assert (code, body["error"]["code"]) == (503, "not_ready")

    dna = harness.line.adapters[0]
    promote_local(harness.store, dna)
    wait_for("ready", lambda: client.get("/readyz")[0] == 200)

    code, body, headers = client.complete()
    assert code == 200
    assert body["dna"] == body["model"] == headers["X-Model-DNA"] == dna
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] > 0
    status = client.get("/v1/status")[1]
    assert status | {"last_swap": None} == status | {
        "dna": dna, "revision": 1, "ready": True, "converged": True, "loaded": [dna],
        "refused": [], "last_swap": None,
    }  # fmt: skip


def test_swaps_and_rollbacks_under_load_never_fail_nor_mix(harness: Harness) -> None:
    """Four clients hammer the server while CURRENT moves 8 times (adapter ↔ adapter ↔ merged,
    rollbacks included). No request fails, and every response's text is exactly the greedy text
    of the DNA it names: a response produced partly by another version would not match."""
    a, b, c = harness.line.adapters
    m = harness.line.merged
    _, client = harness.start(keep=2, grace_s=0.3)
    expected: dict[str, str] = {}
    for dna in (a, b, c, m):  # each version's greedy text, served alone
        promote_local(harness.store, dna)
        wait_for(f"{dna} live", serving(client, dna))
        expected[dna] = client.complete(model=dna)[1]["choices"][0]["text"]
    assert len(set(expected.values())) == 4, f"versions must answer differently: {expected}"

    results: list[tuple[int, Any, dict[str, str]]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            results.append(client.complete())

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for t in clients:
        t.start()
    moves: list[str] = []
    try:
        for dna in (a, b, None, c, m, None, a, b):
            doc = (
                rollback_local(harness.store) if dna is None else promote_local(harness.store, dna)
            )
            assert doc.dna is not None
            moves.append(doc.dna)
            wait_for(f"{doc.dna} answering", lambda d=doc.dna: client.complete()[1].get("dna") == d)
    finally:
        stop.set()
        for t in clients:
            t.join()

    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:3]
    assert len(results) > 20
    for _, body, headers in results:
        assert headers["X-Model-DNA"] == body["dna"]
        assert body["choices"][0]["text"] == expected[body["dna"]], body
    assert {body["dna"] for _, body, _ in results} >= set(moves) - {moves[0]}


@pytest.mark.reliability(
    "faults",
    "A version's weights corrupted after certification, then CURRENT moved onto it",
    "refused as `corrupt` naming the file (/v1/status, metric); still ready and serving the old"
    " version",
)
def test_corrupt_target_is_refused_and_serving_continues(harness: Harness) -> None:
    a, b, _ = harness.line.adapters
    _, client = harness.start()
    promote_local(harness.store, a)
    wait_for("a live", serving(client, a))
    weights = harness.store.version_path(b) / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))  # corrupted after certification, the pointer moved anyway
    harness.point(b)

    status = wait_for("refusal", lambda: (s := client.get("/v1/status")[1])["refused"] and s)
    assert status["refused"][0]["dna"] == b and status["refused"][0]["code"] == "corrupt"
    assert "adapter/adapter_model.safetensors" in status["refused"][0]["reason"]
    assert (status["dna"], status["ready"], status["converged"]) == (a, True, False)
    code, body, _ = client.complete()
    assert (code, body["dna"]) == (200, a)
    assert client.get("/readyz")[0] == 200
    metrics = client.get("/metrics")[1]
    assert 'certmodel_refused_targets_total{reason="corrupt"} 1.0' in metrics


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("missing", "missing"),
        ("digest", "digest-mismatch"),
        ("base-pin", "wrong-base"),
        ("base-changed", "wrong-base"),
    ],
)
@pytest.mark.reliability(
    "faults",
    "CURRENT moved onto a missing version, a wrong content digest, another base model, or an"
    " adapter whose base model changed on disk",
    "each refused with its own code; the old version keeps answering",
)
def test_bad_targets_are_refused(harness: Harness, case: str, code: str) -> None:
    a = harness.line.adapters[0]
    other = harness.line.other_base
    _, client = harness.start(base_model="tiny-llama")
    promote_local(harness.store, a)
    wait_for("a live", serving(client, a))
    if case == "missing":
        ghost = "tiny-llama-lora-0123456789ab"
        harness.point(other, dna=ghost, path=f"certified/{ghost}")
    elif case == "digest":
        harness.point(harness.line.adapters[1], content_digest="sha256:" + "1" * 64)
    elif case == "base-pin":
        harness.point(other)
    else:  # the adapter's own base was modified on disk after training
        config = harness.store.base_models_dir / "tiny-llama-b" / "config.json"
        config.write_text(config.read_text() + " ")
        harness.services[0].reloader.base_model = None
        harness.point(other)
    status = wait_for("refusal", lambda: (s := client.get("/v1/status")[1])["refused"] and s)
    assert status["refused"][0]["code"] == code, status["refused"]
    assert client.complete()[1]["dna"] == a


def test_rollback_to_a_kept_version_needs_no_load_and_old_ones_unload(harness: Harness) -> None:
    a, b, c = harness.line.adapters
    service, client = harness.start(keep=2, grace_s=0.2)
    for dna in (a, b):
        promote_local(harness.store, dna)
        wait_for(f"{dna} live", serving(client, dna))
    assert client.get("/v1/status")[1]["loaded"] == [b, a]
    rollback_local(harness.store)
    wait_for("a live", serving(client, a))
    assert client.get("/v1/status")[1]["last_swap"]["duration_s"] < 0.5  # no verify, no load
    promote_local(harness.store, c)  # a stays as N-1, b leaves the kept set
    wait_for("c live", serving(client, c))
    wait_for("b unloaded", lambda: client.get("/v1/status")[1]["loaded"] == [c, a])
    assert service.reloader.loader.slot_count() == 1  # all adapters share one base model
    assert client.complete(model=b)[0] == 404


def test_openai_surface(harness: Harness) -> None:
    a = harness.line.adapters[0]
    _, client = harness.start(served_name="tiny")
    promote_local(harness.store, a)
    wait_for("a live", serving(client, a))
    code, body, headers = client.post(
        "/v1/chat/completions",
        {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4,
         "temperature": 0},
    )  # fmt: skip
    assert code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert headers["X-Model-DNA"] == body["dna"] == a
    models = client.get("/v1/models")[1]["data"]
    assert [m["id"] for m in models] == ["tiny", a] and models[0]["dna"] == a
    assert client.complete(stream=True)[0] == 400
    assert client.complete(max_tokens=0)[0] == 400
    assert client.complete(model="gpt-4")[0] == 404
    assert client.post("/v1/completions", {"max_tokens": 2})[0] == 400
    code, body, _ = client.complete(prompt=[PROMPT, "hello world"], n=2)
    assert code == 200 and len(body["choices"]) == 4
    code, body, _ = client.complete(temperature=0.8, seed=7, max_tokens=3)
    assert code == 200
    assert client.get("/nope")[0] == 404


@pytest.mark.reliability(
    "faults",
    "The CURRENT file garbled (not JSON) under a running server",
    "reported as pointer_error in /v1/status; the live version keeps answering",
)
def test_pointer_file_that_does_not_parse_is_reported(harness: Harness) -> None:
    a = harness.line.adapters[0]
    _, client = harness.start()
    promote_local(harness.store, a)
    wait_for("a live", serving(client, a))
    FilePointer(harness.store.root).path.write_text("{not json")
    status = wait_for("error", lambda: (s := client.get("/v1/status")[1])["pointer_error"] and s)
    assert "not a valid pointer document" in status["pointer_error"]
    assert client.complete()[1]["dna"] == a
