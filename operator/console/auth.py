"""Who is calling, and may they: TokenReview and SubjectAccessReview, cached briefly.

The console grants exactly what RBAC grants. A request's bearer token goes to a TokenReview
(who is it?), then each action to a SubjectAccessReview with the real resource attributes
(may this user list certifiedmodels in this namespace? patch this one?). Answers are cached
for a few seconds, keyed by a hash of the token (the token itself is never kept or logged),
so a page refreshing every two seconds costs the API server almost nothing, and a revoked
token or a removed RoleBinding takes effect within the TTL.

The reviews themselves are I/O behind the :class:`Reviewer` protocol (kubeio.py implements it);
everything else here is pure.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from certmodel.operator.api import GROUP

K = TypeVar("K")
V = TypeVar("V")

AUTHENTICATED_TTL_S = 30.0
DENIED_TTL_S = 5.0
ALLOWED_TTL_S = 10.0
TICKET_TTL_S = 60.0
MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class Identity:
    """A user as the API server authenticated them (TokenReview status.user)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Access:
    """One action as RBAC sees it (SubjectAccessReview resourceAttributes)."""

    verb: str
    resource: str
    namespace: str
    name: str = ""
    subresource: str = ""
    group: str = GROUP

    def describe(self) -> str:
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        what = f"{res} {self.name!r}" if self.name else res
        return f"{self.verb} {what}.{self.group} in namespace {self.namespace}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class Reviewer(Protocol):
    """The API calls behind the checks; both return the review's ``status`` as a dict."""

    def token_review(self, token: str) -> Mapping[str, Any]: ...

    def access_review(self, body: Mapping[str, Any]) -> Mapping[str, Any]: ...


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_BYTES:
        return None
    if any(c.isspace() or not c.isprintable() for c in token):
        return None
    return token


def token_key(token: str) -> str:
    """The cache key of a token: its sha256, so no token is kept in memory longer than needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def identity_from_review(status: Mapping[str, Any]) -> Identity | None:
    """The authenticated user of a TokenReview status, or None if it was not authenticated."""
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    name = user.get("username")
    if not name:
        return None
    extra = user.get("extra") or {}
    return Identity(
        username=str(name),
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra=tuple(sorted((str(k), tuple(str(x) for x in v or ())) for k, v in extra.items())),
    )


def access_review_body(identity: Identity, access: Access) -> dict[str, Any]:
    """A SubjectAccessReview asking whether ``identity`` may do ``access``."""
    attrs = {
        "group": access.group,
        "resource": access.resource,
        "verb": access.verb,
        "namespace": access.namespace,
    }
    if access.name:
        attrs["name"] = access.name
    if access.subresource:
        attrs["subresource"] = access.subresource
    spec: dict[str, Any] = {"user": identity.username, "resourceAttributes": attrs}
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.groups:
        spec["groups"] = list(identity.groups)
    if identity.extra:
        spec["extra"] = {k: list(v) for k, v in identity.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def decision_from_review(status: Mapping[str, Any]) -> Decision:
    allowed = bool(status.get("allowed")) and not status.get("denied")
    return Decision(allowed, str(status.get("reason") or ""))


class TtlCache(Generic[K, V]):
    """A small thread-safe cache whose entries expire; the oldest go first when full."""

    def __init__(self, *, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic):
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] <= self._clock():
                del self._data[key]
                return None
            return hit[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        with self._lock:
            self._data[key] = (self._clock() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.pop(key, None)
        return hit[1] if hit and hit[0] > self._clock() else None

    def __len__(self) -> int:
        return len(self._data)


class Authenticator:
    """TokenReview + SubjectAccessReview with short-lived caches. Blocking: call it from a
    worker thread, never from the event loop."""

    def __init__(self, reviewer: Reviewer, *, clock: Callable[[], float] = time.monotonic):
        self._reviewer = reviewer
        # A 1-tuple, so that a cached refusal (None) differs from a miss.
        self._identities: TtlCache[str, tuple[Identity | None]] = TtlCache(clock=clock)
        # Refused tokens apart: a flood of bogus tokens must not push out real users' entries.
        self._refused: TtlCache[str, tuple[Identity | None]] = TtlCache(
            max_entries=256, clock=clock
        )
        self._decisions: TtlCache[tuple[Identity, Access], Decision] = TtlCache(clock=clock)
        self.reviews = 0
        """TokenReviews and SubjectAccessReviews sent (the cache's effect is measurable)."""

    def authenticate(self, token: str) -> Identity | None:
        key = token_key(token)
        cached = self._identities.get(key) or self._refused.get(key)
        if cached is not None:
            return cached[0]
        self.reviews += 1
        identity = identity_from_review(self._reviewer.token_review(token))
        if identity is None:
            self._refused.put(key, (None,), DENIED_TTL_S)
        else:
            self._identities.put(key, (identity,), AUTHENTICATED_TTL_S)
        return identity

    def authorize(self, identity: Identity, access: Access) -> Decision:
        key = (identity, access)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        self.reviews += 1
        decision = decision_from_review(
            self._reviewer.access_review(access_review_body(identity, access))
        )
        self._decisions.put(key, decision, ALLOWED_TTL_S if decision.allowed else DENIED_TTL_S)
        return decision


@dataclass(frozen=True)
class Ticket:
    identity: Identity
    namespace: str
    line: str
    dna: str


class DownloadTickets:
    """One-time, short-lived download tickets.

    A browser cannot put an Authorization header on a plain link, and a token must never
    travel in a URL (it would land in history and access logs). So the page asks for a
    ticket with its token (POST), then follows ``...download?ticket=...``: the ticket is
    random, bound to one version and one user, valid once and for a minute."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._tickets: TtlCache[str, Ticket] = TtlCache(max_entries=256, clock=clock)

    def issue(self, ticket: Ticket) -> str:
        value = secrets.token_urlsafe(32)
        self._tickets.put(value, ticket, TICKET_TTL_S)
        return value

    def redeem(self, value: str, *, namespace: str, line: str, dna: str) -> Identity | None:
        ticket = self._tickets.pop(value)
        if ticket is None or (ticket.namespace, ticket.line, ticket.dna) != (namespace, line, dna):
            return None
        return ticket.identity
