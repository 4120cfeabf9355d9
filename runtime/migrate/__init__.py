"""Migration of a legacy, unstructured model folder into the certified layout (`certmodel migrate`).

Three steps, each testable on its own:

- ``discover`` scans the legacy tree into typed candidates (base models, adapters, merged
  models, the old ``CURRENT`` link) and digests the files a migration would carry over; it
  never writes and never loads a weight.
- ``plan`` turns candidates and the store's state into one action per candidate, with the
  reason, purely (no I/O): the dry run prints exactly this.
- ``apply`` carries the plan out through :meth:`Store.publish` (atomic), sets CURRENT and, when
  asked, removes the legacy files of versions that verified.

Torch is needed only to convert a legacy pickle adapter (``convert``), imported lazily.
See docs/migration.md.
"""
