"""The owner's hold on its build containers: each runs its step under the watchdog
(runtime/watchdog.py, PID 1), whose stdin this process attaches to before the start and
holds until the container is removed. The container is created with an open stdin that
the engine closes when the attached client disconnects (``StdinOnce``): when this
process dies, however it dies, its socket closes, the watchdog reads EOF and the
container ends. The engine does the noticing, so it works on a remote engine too.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any

from .. import runtime

#: PID 1 of every build container (runtime/watchdog.py): ends it when its owner dies
WATCHDOG = runtime.read("watchdog.py").decode()


def watched_command(command: Sequence[str]) -> list[str]:
    """The step's command under the watchdog, run by the step's own Python. Every build
    step runs a Python (python3, a venv's python, pypy3, graalpy...); any other command
    runs as it is (the reaper and the next run's sweep remain for it)."""
    if "py" not in os.path.basename(command[0]).lower():
        return list(command)
    return [command[0], "-c", WATCHDOG, *command]


def attach_stdin(container: Any) -> None:
    """Attach to a created container's stdin (kept on the container object until
    ``detach_stdin``). Nothing when the engine will not attach: the container then runs
    unwatched, as before."""
    try:
        attached = container.client.api.attach_socket(
            container.id, params={"stdin": 1, "stream": 1}
        )
    except Exception:
        return
    _keep_alive(getattr(attached, "_sock", attached))
    container.warpdrive_stdin = attached


def detach_stdin(container: Any) -> None:
    """Close the attached stdin (after the container is removed: the close ends it)."""
    attached = getattr(container, "warpdrive_stdin", None)
    if attached is None:
        return
    container.warpdrive_stdin = None
    with contextlib.suppress(Exception):
        raw = getattr(attached, "_sock", None)
        attached.close()
        if raw is not None:
            raw.close()


def _keep_alive(sock: Any) -> None:
    """TCP keepalives on a socket nothing is sent on for the length of a build: a proxy
    or NAT in front of a remote engine must not drop it as idle (that would end the
    container). Best effort; a unix socket has no idle timeout."""
    with contextlib.suppress(Exception):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 30)):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
