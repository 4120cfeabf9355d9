"""Job entrypoint: `python -m certmodel.runtime.training --config FILE` (or under torchrun).

Exactly `certmodel train` with the same arguments, so a Job and a laptop run the same code.
"""

from __future__ import annotations

import sys

from certmodel.runtime.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
