"""LoRA training into the certified format (`certmodel train`, the training Job's entrypoint).

Importing this package is torch-free: `config` and `plan` (recipe and DNA from files) are what
the operator uses. The trainer itself (`trainer.train`) imports torch, transformers and peft.
See docs/training.md.
"""
