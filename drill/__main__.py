"""``python -m drill [--faults N] [--seed S] [--rate R] [--big-rows N] [--report PATH]``"""

from __future__ import annotations

import sys

from drill.run import main

if __name__ == "__main__":
    sys.exit(main())
