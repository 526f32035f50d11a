"""Side-by-side build times: nox-warpdrive against five Dockerfile peers.

The bench is the ``bench`` package next to this file (see its ``__init__`` and
bench/README.md); this script is the entry point RESULTS.md names when the bench runs
outside nox, and the same as ``python -m bench`` from the checkout:

    python bench/run.py                 # one run
    python bench/run.py --runs 3        # medians of three
    python bench/run.py --help

Writes bench/results/latest.json, one log per build under bench/results/logs/, and
bench/RESULTS.md. Everything the bench creates in Docker (images, the volume, its build
cache) and on disk (app copies) is removed at the end, also when a build fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # `python bench/run.py` puts bench/ first on sys.path, where its modules would shadow
    # installed ones of the same name; the checkout instead, so `bench` is the package
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

    from bench.__main__ import run

    sys.exit(run(sys.argv[1:]))
