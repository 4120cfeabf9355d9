"""``python -m certmodel.operator``."""

import sys

from certmodel.operator.main import main

sys.exit(main())
