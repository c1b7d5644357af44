"""``python -m drill [--faults N] [--seed S] [--rate R] [--big-rows N] [--report PATH]``, or
``python -m drill --cluster [--faults N] [--seed S] [--rate R] [--report PATH]``"""

from __future__ import annotations

import sys

from drill import cluster, run

if __name__ == "__main__":
    if "--cluster" in sys.argv[1:]:
        sys.exit(cluster.main([a for a in sys.argv[1:] if a != "--cluster"]))
    sys.exit(run.main())
