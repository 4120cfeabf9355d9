"""The registry's pinning and retention rules, without torch: a fake clock and fake models."""

from __future__ import annotations

import pytest
from factories import make_version

from certmodel.runtime.format.store import Store
from certmodel.runtime.serving.registry import (
    LoadedVersion,
    NotReadyError,
    Registry,
    UnknownModelError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def versions(store: Store) -> list[LoadedVersion]:
    return [LoadedVersion(manifest=make_version(store, seed=s), model=None) for s in range(4)]


def test_nothing_is_live_before_the_first_activation() -> None:
    with pytest.raises(NotReadyError):
        Registry().acquire()


def test_a_request_pinned_before_a_switch_keeps_its_version(versions: list[LoadedVersion]) -> None:
    a, b, *_ = versions
    registry = Registry()
    registry.activate(a, revision=1)
    pinned = registry.acquire()
    assert registry.activate(b, revision=2) is a
    assert pinned is a and registry.acquire() is b
    assert registry.live() == (b, 2)


def test_named_versions_are_served_only_while_loaded(versions: list[LoadedVersion]) -> None:
    a, b, *_ = versions
    registry = Registry()
    registry.activate(a, revision=1)
    assert registry.acquire(a.dna) is a
    with pytest.raises(UnknownModelError):
        registry.acquire(b.dna)


@pytest.mark.parametrize(
    ("keep", "loaded_after_four"),
    [(1, [3]), (2, [3, 2]), (3, [3, 2, 1])],
)
def test_keep_retains_the_live_and_previous_versions(
    versions: list[LoadedVersion], keep: int, loaded_after_four: list[int]
) -> None:
    clock = Clock()
    registry = Registry(keep=keep, grace_s=5, clock=clock)
    for revision, version in enumerate(versions, 1):
        registry.activate(version, revision=revision)
    clock.now = 10
    registry.take_evictable()
    assert registry.loaded() == [versions[i].dna for i in loaded_after_four]


def test_unload_waits_for_the_grace_period_and_for_pinned_requests(
    versions: list[LoadedVersion],
) -> None:
    a, b, c, _ = versions
    clock = Clock()
    registry = Registry(keep=2, grace_s=5, clock=clock)
    registry.activate(a, revision=1)
    in_flight = registry.acquire()  # a request still running on a
    registry.activate(b, revision=2)
    clock.now = 1
    registry.activate(c, revision=3)  # a leaves the kept set at t=1
    clock.now = 5.9
    assert registry.take_evictable() == []  # within grace
    clock.now = 7
    assert registry.take_evictable() == []  # grace over, but a request still uses it
    registry.release(in_flight)
    assert registry.take_evictable() == [a]
    assert registry.loaded() == [c.dna, b.dna]


def test_rolling_back_to_a_kept_version_cancels_its_unload(versions: list[LoadedVersion]) -> None:
    a, b, c, _ = versions
    clock = Clock()
    registry = Registry(keep=2, grace_s=5, clock=clock)
    for revision, version in enumerate((a, b, c), 1):
        registry.activate(version, revision=revision)
    registry.activate(a, revision=4)  # back to a before it was unloaded
    clock.now = 100
    assert registry.take_evictable() == [b]
    assert registry.loaded() == [a.dna, c.dna]
