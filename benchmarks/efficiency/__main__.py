"""``python -m benchmarks.efficiency``: see :py:mod:`benchmarks.efficiency`."""

import sys

from benchmarks.efficiency.cli import main

sys.exit(main())
