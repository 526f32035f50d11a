"""Run the built image the way a deploy would, and tell when it answers."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .engine import Engine, Output
from .errors import EngineError, WarpdriveError


def engine_host(docker_host: str | None = None) -> str:
    """Where a published port is reached: the engine's host for tcp:// and ssh://
    engines, this machine otherwise."""
    url = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST", "")
    if url.startswith(("tcp://", "ssh://", "http://", "https://")):
        host = urllib.parse.urlsplit(url).hostname
        if host:
            return host
    return "127.0.0.1"


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def wait_http(url: str, alive: Callable[[], bool], timeout: float = 60.0) -> int:
    """Poll until the URL gives any HTTP answer; its status. Raises when the container
    stops or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, urllib.error.URLError):
            pass
        if not alive():
            raise WarpdriveError("the container stopped before it answered")
        time.sleep(0.25)
    raise WarpdriveError(f"{url} did not answer within {timeout:.0f} s")


@dataclass(frozen=True)
class Running:
    container_id: str
    name: str
    url: str
    status: int


def start(cfg: Config, engine: Engine, *, port: int, name: str | None = None) -> Running:
    """Start the image, wait for it to answer HTTP."""
    if engine.image(cfg.image) is None:
        raise WarpdriveError(f"image {cfg.image} is not built yet", fix="run `nox -s image` first")
    name = name or f"{cfg.name}-run"
    engine.remove_app(name)  # an earlier `run` of this app frees its port first
    host = engine_host()
    if host == "127.0.0.1" and not port_free(port):
        raise EngineError(
            f"port {port} is already in use on this machine",
            fix=f"stop what uses it, or choose another: `nox -s run -- --port {port + 1}`",
        )
    cid = engine.start_app(cfg.image, name, port)
    url = f"http://{host}:{port}/"

    def alive() -> bool:
        return engine.container_state(cid)[0]

    try:
        status = wait_http(url, alive)
    except WarpdriveError as exc:
        tail = engine.logs_tail(cid)
        engine.stop_app(cid, timeout=2)
        raise WarpdriveError(
            f"{cfg.image} did not start: {exc.message}; its last output:\n{tail}",
            fix="read the output above; `docker run --rm -it IMAGE sh` lets you look inside",
        ) from None
    return Running(cid, name, url, status)


def run(
    cfg: Config, engine: Engine, out: Output, *, port: int, detach: bool, name: str | None
) -> Running:
    running = start(cfg, engine, port=port, name=name)
    out(f"warpdrive: {cfg.image} answers at {running.url} (HTTP {running.status})")
    if detach:
        out(f"warpdrive: left running as {running.name}; stop it with: docker rm -f {running.name}")
        return running
    out("warpdrive: following its output; Ctrl-C stops it")
    try:
        engine.follow_logs(running.container_id, out)
    except KeyboardInterrupt:
        out("warpdrive: stopping")
    finally:
        code = engine.stop_app(running.container_id)
        if code is not None:
            out(f"warpdrive: {running.name} exited with code {code}")
    return running
