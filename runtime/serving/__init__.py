"""The inference server: follows a model line's CURRENT pointer and hot-swaps certified versions.

Layers, top to bottom: ``app`` (HTTP) and ``completions`` (OpenAI-compatible generation: admit,
bind a version, wait) → ``service`` (wiring) → ``reloader`` (pointer changes → verify → load →
warm up → switch) → ``registry`` (which versions are loaded, which is live, who holds which) →
``engine`` (the one thread that touches the models) → ``models`` (torch loading from certified
folders). ``sources`` and ``kubesource`` feed pointer documents in; ``targets`` decides whether a
target may be loaded. See docs/serving.md.
"""
