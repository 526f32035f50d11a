"""The host port of `run -- --watch`, held by this process and forwarded to whichever
container serves now.

Why not publish the user's port on the container itself: a port belongs to one
container, so a switch would stop the old one (the port refuses connections) before the
new one may bind it. Here the listening socket never closes while the loop runs; each
container is published on an ephemeral port of the engine's host and a switch only
changes where the *next* connection goes. A connection keeps the container it was
opened to until it ends (the old container is stopped gracefully, after its open
connections had a moment to finish).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Callable

from ..errors import EngineError

#: bytes read at a time from either side
_CHUNK = 65536
#: how long a connection waits for the first container (the port is held from the start)
FIRST_TARGET_WAIT = 600.0


class Forwarder:
    """A threaded TCP forwarder: one thread accepts, two pipe each connection (a dev
    server sees a handful of connections; threads keep it small and plain)."""

    def __init__(self, host_ip: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host_ip, port))
        except OSError as exc:
            self._listener.close()
            if exc.errno == errno.EADDRINUSE:
                raise EngineError(
                    f"port {port} is already in use on this machine ({exc.strerror})",
                    fix="stop what uses it, or choose another: "
                    f"`nox -s run -- --watch --port {port + 1}`",
                ) from exc
            # an address this machine does not have, a port it may not open: not "in use"
            raise EngineError(
                f"cannot listen on {host_ip} port {port} ({exc.strerror or exc})",
                fix="give an address of this machine (127.0.0.1, 0.0.0.0) and a port above "
                "1023, e.g. `nox -s run -- --watch --port 8080`",
            ) from exc
        self._listener.listen(128)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._target: tuple[str, int] | None = None
        self._has_target = threading.Event()
        #: each open connection: its client socket -> (its upstream socket, its target)
        self._open: dict[socket.socket, tuple[socket.socket, tuple[str, int]]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> tuple[str, int] | None:
        with self._lock:
            return self._target

    def point_to(self, host: str, port: int) -> None:
        """Send every connection from now on to host:port."""
        with self._lock:
            self._target = (host, port)
        self._has_target.set()

    def open_to(self, target: tuple[str, int]) -> int:
        """How many connections to ``target`` are still open."""
        with self._lock:
            return sum(1 for _, t in self._open.values() if t == target)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept, name="warpdrive-forward", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and end every open connection."""
        with self._lock:
            self._closed = True
            sockets = [s for client, (up, _) in self._open.items() for s in (client, up)]
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._has_target.set()  # connections waiting for a first target give up
        for s in sockets:
            _close(s)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(
                target=self._serve, args=(client,), name="warpdrive-conn", daemon=True
            ).start()

    def _serve(self, client: socket.socket) -> None:
        self._has_target.wait(FIRST_TARGET_WAIT)
        target = self.target
        upstream: socket.socket | None = None
        try:
            if target is None or self._closed:
                return
            try:
                upstream = socket.create_connection(target, timeout=10)
            except OSError:
                if self.target in (None, target):
                    raise
                target = self.target  # switched while this one connected: the new one
                assert target is not None
                upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    return
                self._open[client] = (upstream, target)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()
        except OSError:
            pass  # the container went away mid-connection: the client sees it closed
        finally:
            with self._lock:
                self._open.pop(client, None)
            _close(client)
            if upstream is not None:
                _close(upstream)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``sink``'s writing half (a half-close is
    passed on: an HTTP/1.0 client may shut its side down and still read the answer)."""
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


def wait_drained(
    forwarder: Forwarder, target: tuple[str, int], seconds: float, sleep: Callable[[float], None]
) -> bool:
    """Wait up to ``seconds`` for the connections to ``target`` to end; whether they did."""
    steps = max(1, int(seconds / 0.05))
    for _ in range(steps):
        if forwarder.open_to(target) == 0:
            return True
        sleep(0.05)
    return forwarder.open_to(target) == 0
