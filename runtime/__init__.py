"""The certified-format library, trainer, inference server and CLI (torch-free at import)."""
