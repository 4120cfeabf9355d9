"""The local pointer source: first state, changes, bad documents, duplicates. Torch-free."""

from __future__ import annotations

import queue

from factories import make_version

from certmodel.runtime.format.pointer import FilePointer, PointerDocument
from certmodel.runtime.format.store import Store
from certmodel.runtime.localmode import promote_local
from certmodel.runtime.serving.sources import FilePointerSource


def follow(store: Store) -> tuple[FilePointerSource, queue.Queue[PointerDocument | str]]:
    seen: queue.Queue[PointerDocument | str] = queue.Queue()
    source = FilePointerSource(store.root, interval=0.01)
    source.start(seen.put, lambda message: seen.put(f"error: {message}"))
    return source, seen


def test_delivers_the_empty_pointer_then_each_move(store: Store) -> None:
    a, b = (make_version(store, seed=s).dna for s in (1, 2))
    source, seen = follow(store)
    try:
        assert seen.get(timeout=5) == PointerDocument()
        promote_local(store, a)
        first = seen.get(timeout=5)
        assert isinstance(first, PointerDocument) and (first.dna, first.revision) == (a, 1)
        promote_local(store, b)
        second = seen.get(timeout=5)
        assert isinstance(second, PointerDocument) and (second.dna, second.revision) == (b, 2)
    finally:
        source.stop()


def test_reports_a_document_that_does_not_parse_and_recovers(store: Store) -> None:
    a = make_version(store).dna
    source, seen = follow(store)
    try:
        seen.get(timeout=5)
        FilePointer(store.root).path.write_text("[]")
        error = seen.get(timeout=5)
        assert isinstance(error, str) and "not a valid pointer document" in error
        FilePointer(store.root).path.unlink()
        promote_local(store, a)
        doc = seen.get(timeout=5)
        assert isinstance(doc, PointerDocument) and doc.dna == a
    finally:
        source.stop()


def test_a_rewrite_with_the_same_content_is_not_delivered_twice(store: Store) -> None:
    a = make_version(store).dna
    promote_local(store, a)
    source, seen = follow(store)
    try:
        assert isinstance(seen.get(timeout=5), PointerDocument)
        path = FilePointer(store.root).path
        path.write_text(path.read_text())  # touched, identical
        try:
            extra = seen.get(timeout=0.3)
        except queue.Empty:
            extra = None
        assert extra is None
    finally:
        source.stop()
