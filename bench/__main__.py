"""``python -m bench ARGS`` (what ``nox -s bench`` runs): the bench, with SIGTERM handled
as Ctrl-C so that a killed bench still removes what it made, and a failure before the
builds start reported in one line rather than a traceback."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from .cli import main
from .common import BenchError


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # `kill` cleans up like Ctrl-C: main's finally removes what it made


def run(argv: Sequence[str]) -> int:
    """The bench's exit status for ``argv``."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return main(argv)
    except BenchError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
