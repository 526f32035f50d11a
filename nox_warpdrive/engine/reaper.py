"""The owner's last word: a small process that removes this run's containers and secrets
volume the moment the run dies, even by ``kill -9``.

A handled signal cleans up in ``finally`` (sessions.py); SIGKILL cannot be handled, and
the next run's sweep may be hours away, while the build container runs on and the
secrets volume (index credentials, CA) stays. So the first time a run reaches the
engine it starts this process in a session of its own (a ``kill -9`` of the run's
process group does not reach it), holding the read end of a pipe whose write end only
the run holds. When the run ends, however it ends, the kernel closes that end; this
process then sweeps the engine: everything whose owner is gone (owner.py), this run's
first. A run that ended normally left nothing, and the sweep finds nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: the process started for this run (kept: its pipe must stay open while the run lives)
_STARTED: list[subprocess.Popen[bytes]] = []

#: seconds after the first sweep for a second: a container whose create call was in
#: flight when the owner died appears on the engine after it
AGAIN_AFTER = 3.0


def start() -> None:
    """Start the reaper of this process, once; nothing when it cannot be started, or
    with WARPDRIVE_REAPER=0 (the next run's sweep remains, and the build containers'
    watchdog: runtime/watchdog.py)."""
    if _STARTED or os.environ.get("WARPDRIVE_REAPER") == "0":
        return
    here = str(Path(__file__).resolve().parents[2])  # the directory of nox_warpdrive/
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WAIT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": path},
        )
    except OSError:
        return
    _STARTED.append(proc)


#: the reaper's program, run in its own interpreter (so no import of this package's
#: modules from here: the engine imports this file): nothing imported while it waits (a
#: run pays only the start of a bare interpreter), the sweep's imports once the owner
#: is gone; two sweeps, the second for a container whose create call was in flight
_WAIT = f"""
import os, sys, time
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
from nox_warpdrive.engine import connect
from nox_warpdrive.errors import WarpdriveError
for delay in (0.0, {AGAIN_AFTER}):
    time.sleep(delay)
    try:
        connect(timeout=60).sweep()
    except WarpdriveError:
        sys.exit(1)
"""
