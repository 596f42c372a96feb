"""``python -m monai_das.benchmarks.efficiency``: see :py:mod:`monai_das.benchmarks.efficiency`."""

import sys

from monai_das.benchmarks.efficiency.cli import main

sys.exit(main())
