"""The console's authentication logic: bearer parsing, review bodies, caches and tickets.

The real TokenReview/SubjectAccessReview round trip runs in tests/operator/test_console.py;
here a recording fake stands in for the API server to check what is sent and cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from certmodel.operator.console.auth import (
    Access,
    Authenticator,
    DownloadTickets,
    Identity,
    Ticket,
    TtlCache,
    access_review_body,
    identity_from_review,
    parse_bearer,
    token_key,
)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer   abc ", "abc"),
        (None, None),
        ("", None),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("Bearer " + "x" * 20000, None),
    ],
)
def test_parse_bearer(header: str | None, token: str | None) -> None:
    assert parse_bearer(header) == token


def test_token_key_hides_the_token() -> None:
    assert token_key("secret") != "secret" and len(token_key("secret")) == 64
    assert token_key("secret") == token_key("secret") != token_key("secret2")


def test_identity_from_review() -> None:
    status = {
        "authenticated": True,
        "user": {
            "username": "system:serviceaccount:ns:admin",
            "uid": "u1",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["p"]},
        },
    }
    who = identity_from_review(status)
    assert who == Identity(
        "system:serviceaccount:ns:admin",
        "u1",
        ("system:serviceaccounts", "system:authenticated"),
        (("authentication.kubernetes.io/pod-name", ("p",)),),
    )
    assert identity_from_review({"authenticated": False, "error": "bad"}) is None
    assert identity_from_review({"authenticated": True, "user": {}}) is None


def test_access_review_body_carries_the_callers_identity_and_resource() -> None:
    who = Identity("alice", "u1", ("devs",), (("k", ("v",)),))
    body = access_review_body(who, Access("get", "certifiedmodels", "ns", "chat", "download"))
    assert body["spec"] == {
        "user": "alice",
        "uid": "u1",
        "groups": ["devs"],
        "extra": {"k": ["v"]},
        "resourceAttributes": {
            "group": "certmodel.io",
            "resource": "certifiedmodels",
            "subresource": "download",
            "verb": "get",
            "namespace": "ns",
            "name": "chat",
        },
    }
    bare = access_review_body(Identity("bob"), Access("list", "modeltrainings", "ns"))
    assert bare["spec"] == {
        "user": "bob",
        "resourceAttributes": {
            "group": "certmodel.io",
            "resource": "modeltrainings",
            "verb": "list",
            "namespace": "ns",
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeApiServer:
    """Answers reviews like the API server: one good token, alice may only list."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def token_review(self, token: str) -> Mapping[str, Any]:
        self.calls.append("token")
        if token == "good":
            return {"authenticated": True, "user": {"username": "alice"}}
        return {"authenticated": False}

    def access_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        self.calls.append("access")
        verb = body["spec"]["resourceAttributes"]["verb"]
        return {"allowed": verb == "list", "reason": "RBAC"}


def test_reviews_are_cached_and_expire() -> None:
    clock, server = Clock(), FakeApiServer()
    auth = Authenticator(server, clock=clock)
    alice = auth.authenticate("good")
    assert alice == Identity("alice")
    assert auth.authenticate("good") == alice and server.calls == ["token"]
    assert auth.authenticate("bad") is None and auth.authenticate("bad") is None
    assert server.calls == ["token", "token"]  # a refusal is cached too (briefly)
    listing = Access("list", "certifiedmodels", "ns")
    patching = Access("patch", "certifiedmodels", "ns", "chat")
    assert auth.authorize(alice, listing).allowed
    assert not auth.authorize(alice, patching).allowed
    assert auth.authorize(alice, listing).allowed and server.calls.count("access") == 2
    clock.now += 31  # past every TTL: a revoked token or RoleBinding takes effect
    auth.authenticate("good")
    auth.authorize(alice, listing)
    assert server.calls.count("token") == 3 and server.calls.count("access") == 3


def test_ttl_cache_evicts_the_oldest_when_full() -> None:
    cache: TtlCache[str, int] = TtlCache(max_entries=2, clock=Clock())
    for i, key in enumerate("abc"):
        cache.put(key, i, ttl=10)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (None, 1, 2, 2)


def test_download_tickets_are_single_use_bound_and_short_lived() -> None:
    clock = Clock()
    tickets = DownloadTickets(clock=clock)
    who = Identity("alice")
    where = {"namespace": "ns", "line": "chat", "dna": "base-lora-aaaaaaaaaaaa"}
    value = tickets.issue(Ticket(who, "ns", "chat", "base-lora-aaaaaaaaaaaa"))
    assert len(value) >= 40
    assert tickets.redeem(value, **where) == who
    assert tickets.redeem(value, **where) is None  # used
    other = tickets.issue(Ticket(who, "ns", "chat", "base-lora-aaaaaaaaaaaa"))
    assert tickets.redeem(other, **{**where, "dna": "base-lora-bbbbbbbbbbbb"}) is None
    late = tickets.issue(Ticket(who, "ns", "chat", "base-lora-aaaaaaaaaaaa"))
    clock.now += 61
    assert tickets.redeem(late, **where) is None
    assert tickets.redeem("guess", **where) is None
