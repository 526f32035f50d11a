"""A real HTTP server on a free loopback port that acts as a registry whose token server
is broken: every registry call answers 401 with a Bearer challenge whose realm is a
token URL that answers ``mode`` (404, 500, bad JSON), or a realm on a closed port
(``unreachable``). The engine and our registry client both speak to it over the
network: nothing of ours is mocked."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Fault:
    registry: str  # host:port, as an image ref names it
    token_url: str


@contextlib.contextmanager
def broken_token_server(mode: str = "404") -> Iterator[Fault]:
    """A registry at 127.0.0.1:PORT whose token server fails as ``mode`` says."""
    closed = free_port()  # nothing listens there

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            host = f"127.0.0.1:{self.server.server_address[1]}"
            if self.path.startswith("/token"):
                if mode == "500":
                    self._answer(500, b"internal error\n", {"Content-Type": "text/plain"})
                elif mode == "json":
                    self._answer(200, b"<html>login</html>", {"Content-Type": "text/html"})
                else:
                    self._answer(404, b"404 page not found\n", {"Content-Type": "text/plain"})
                return
            where = f"127.0.0.1:{closed}" if mode == "unreachable" else host
            challenge = f'Bearer realm="http://{where}/token",service="{host}"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self._answer(
                401,
                body,
                {
                    "Content-Type": "application/json",
                    "WWW-Authenticate": challenge,
                    "Docker-Distribution-API-Version": "registry/2.0",
                },
            )

        do_HEAD = do_GET
        do_POST = do_GET
        do_PUT = do_GET
        do_PATCH = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    where = f"127.0.0.1:{closed}" if mode == "unreachable" else f"127.0.0.1:{port}"
    try:
        yield Fault(f"127.0.0.1:{port}", f"http://{where}/token")
    finally:
        server.shutdown()
        server.server_close()
