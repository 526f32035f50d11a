"""Run the built image the way a deploy would, and tell when it answers."""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .engine import Engine, Output
from .engine.base import foreign_cpu, host_shown
from .errors import ConfigError, EmulationMissing, EngineError, WarpdriveError

#: what a variable name may be (docker accepts more; a shell, and most apps, do not)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_pair(text: str, where: str) -> tuple[str, str]:
    """KEY=VALUE as (KEY, VALUE), the value taken as it is (quotes included, as
    `docker run --env-file` takes it); ConfigError naming ``where`` otherwise (the value
    left out of the message: it may be a secret)."""
    key, sep, value = text.partition("=")
    if not sep or not _ENV_NAME.match(key):
        shown = f"{key.strip()}=..." if sep else text.strip()[:40]
        raise ConfigError(
            f"{where}: {shown!r} is not KEY=VALUE",
            fix="write each variable as KEY=VALUE (a letter or _ first, then letters, "
            "digits or _), e.g. `--env DJANGO_SETTINGS_MODULE=site.settings`",
        )
    return key, value


def env_file(path: Path) -> dict[str, str]:
    """The variables of an env file as `docker run --env-file` reads it: KEY=VALUE per
    line; blank lines and lines starting with # skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the env file {path}: {exc}", fix="pass an existing text file"
        ) from exc
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, value = env_pair(line, f"{path} line {number}")
        found[key] = value
    return found


def run_env(files: Iterable[Path], pairs: Iterable[str]) -> dict[str, str]:
    """The container's variables: the env files in order, then each --env (a later one
    wins, as with docker)."""
    env: dict[str, str] = {}
    for path in files:
        env.update(env_file(path))
    for text in pairs:
        key, value = env_pair(text, "--env")
        env[key] = value
    return env


def engine_host(docker_host: str | None = None) -> str:
    """Where a published port is reached: the engine's host for tcp:// and ssh://
    engines, this machine otherwise."""
    url = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST", "")
    if url.startswith(("tcp://", "ssh://", "http://", "https://")):
        host = urllib.parse.urlsplit(url).hostname
        if host:
            return host
    return "127.0.0.1"


def port_free(port: int, host_ip: str = "0.0.0.0") -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip, port))
        except OSError:
            return False
    return True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer: an app behind production settings sends every request
    to https, and following that onto the plain-HTTP port only garbles the request."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


#: no proxy (the app is on this machine or the engine's) and no redirect followed
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of one GET of ``url`` (any HTTP answer, a redirect or an error
    included), None when nothing answered in HTTP."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_http(
    url: str, alive: Callable[[], bool], timeout: float = 60.0, interval: float = 0.25
) -> int:
    """Poll every ``interval`` s until the URL gives any HTTP answer; its status. Raises
    when the container stops or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http_status(url)
        if status is not None:
            return status
        if not alive():
            raise WarpdriveError("the container stopped before it answered")
        time.sleep(interval)
    raise WarpdriveError(f"{url} did not answer within {timeout:.0f} s")


@dataclass(frozen=True)
class Running:
    container_id: str
    name: str
    url: str
    status: int


@dataclass(frozen=True)
class RunOptions:
    """How `run` starts the image: the host port, the address it is published on
    (None: this machine only, 127.0.0.1, on a local engine; every address of a remote
    engine's host, the only way to reach it from here), the container's variables."""

    port: int = 8080
    host_ip: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    #: the DOCKER_HOST URL of the engine it runs on when that is not DOCKER_HOST's (the
    #: one `engines` names for the platform of `run --platform`): its port is there
    docker_host: str | None = None


def published_on(host_ip: str | None, engine_at: str) -> tuple[str, str]:
    """(the address the port is published on, the host the readiness check asks)."""
    if host_ip is None:
        host_ip = "127.0.0.1" if engine_at == "127.0.0.1" else "0.0.0.0"
    if host_ip in ("0.0.0.0", "::", "127.0.0.1") or engine_at != "127.0.0.1":
        return host_ip, engine_at
    return host_ip, host_ip


def start(cfg: Config, engine: Engine, options: RunOptions) -> Running:
    """Start the image, wait for it to answer HTTP."""
    if engine.image(cfg.image) is None:
        raise WarpdriveError(f"image {cfg.image} is not built yet", fix="run `nox -s image` first")
    name, port = options.name or f"{cfg.name}-run", options.port
    engine.remove_app(name)  # an earlier `run` of this app frees its port first
    at = engine_host(options.docker_host)
    host_ip, host = published_on(options.host_ip, at)
    if at == "127.0.0.1" and not port_free(port, host_ip):
        raise EngineError(
            f"port {port} is already in use on this machine",
            fix=f"stop what uses it, or choose another: `nox -s run -- --port {port + 1}`",
        )
    cid = engine.start_app(cfg.image, name, port, options.env, host_ip)
    url = f"http://{host}:{port}/"

    def alive() -> bool:
        return engine.container_state(cid)[0]

    try:
        status = wait_http(url, alive)
    except WarpdriveError as exc:
        tail = engine.logs_tail(cid)
        engine.stop_app(cid, timeout=2)
        if foreign_cpu(tail):
            raise EmulationMissing(f"{cfg.image} (its server)") from exc
        raise WarpdriveError(
            f"{cfg.image} did not start: {exc.message}; its last output:\n{tail}",
            fix="read the output above; `docker run --rm -it IMAGE sh` lets you look inside",
        ) from exc
    return Running(cid, name, url, status)


def run(cfg: Config, engine: Engine, out: Output, options: RunOptions, *, detach: bool) -> Running:
    running = start(cfg, engine, options)
    out(f"warpdrive: {cfg.image} answers at {running.url} (HTTP {running.status})")
    if detach:
        shown = host_shown(options.docker_host) if options.docker_host else ""
        env = f"DOCKER_HOST={shown} " if shown else ""
        out(
            f"warpdrive: left running as {running.name}; stop it with: "
            f"{env}docker rm -f {running.name}"
        )
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
