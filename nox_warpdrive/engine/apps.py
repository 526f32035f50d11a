"""The run session's app containers, through docker-py (dockerpy.py's backend): start,
follow, stop and remove the containers `nox -s run` starts from an app image."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Mapping

from ..errors import EngineError
from . import dockerpy
from .base import OWNER_LABEL, Output, short, translated
from .dockerpy import _follow, _remove, _Steps


@translated
class _Apps(_Steps):
    """The run session's app containers."""

    # -- app containers (the run session) ------------------------------------------------

    def remove_app(self, name: str) -> None:
        """Remove an earlier `run` container of this name (only one this tool started)."""
        client = self.client
        with contextlib.suppress(dockerpy.docker.errors.NotFound):
            old = client.containers.get(name)
            if old.labels.get(OWNER_LABEL) == "nox-warpdrive-run":
                _remove(old)

    def start_app(
        self,
        image: str,
        name: str,
        host_port: int,
        env: Mapping[str, str] | None = None,
        host_ip: str = "127.0.0.1",
    ) -> str:
        """Start the app image like `docker run -d -p HOST_IP:PORT:8080 --name NAME`
        (``host_ip``: the address the port is published on; a local run is for this
        machine, not its network); an older container of that name made by this tool is
        replaced."""
        client = self.client
        with contextlib.suppress(dockerpy.docker.errors.NotFound):
            old = client.containers.get(name)
            if old.labels.get(OWNER_LABEL) != "nox-warpdrive-run":
                raise EngineError(
                    f"a container named {name!r} exists and was not started by nox-warpdrive",
                    fix=f"remove it (`docker rm -f {name}`) or pass -- --name OTHER",
                )
            _remove(old)
        try:
            container = self.client.containers.run(
                image,
                detach=True,
                name=name,
                ports={"8080/tcp": (host_ip, host_port)},
                environment=dict(env or {}),
                labels={OWNER_LABEL: "nox-warpdrive-run"},
            )
        except dockerpy.docker.errors.ImageNotFound as exc:
            raise EngineError(
                f"image {image!r} is not on the engine", fix="build it first: `nox -s image`"
            ) from exc
        except dockerpy.docker.errors.APIError as exc:
            text = str(exc)
            with contextlib.suppress(
                dockerpy.docker.errors.NotFound, dockerpy.docker.errors.APIError
            ):
                self.client.containers.get(name).remove(force=True)
            if "allocated" in text or "address already in use" in text:
                raise EngineError(
                    f"port {host_port} is already in use",
                    fix="stop what uses it, or choose another port: `nox -s run -- --port 8081`",
                ) from exc
            raise EngineError(f"cannot start {image}: {short(exc)}") from exc
        return str(container.id)

    def container_state(self, container_id: str) -> tuple[bool, int | None]:
        """(running, exit code once it stopped)."""
        client = self.client
        try:
            c = client.containers.get(container_id)
        except dockerpy.docker.errors.NotFound:
            return False, None
        state = c.attrs.get("State") or {}
        return bool(state.get("Running")), state.get("ExitCode")

    def published_port(self, container_id: str) -> int | None:
        """The host port the app's 8080 is published on (what the engine chose when
        start_app was given port 0); None when it is not (any more) published."""
        client = self.client
        try:
            c = client.containers.get(container_id)
        except dockerpy.docker.errors.NotFound:
            return None
        ports = ((c.attrs.get("NetworkSettings") or {}).get("Ports") or {}).get("8080/tcp")
        for binding in ports or ():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                return int(binding["HostPort"])
        return None

    def follow_logs(self, container_id: str, out: Output) -> None:
        """Stream a container's output until it stops."""
        client = self.client
        with contextlib.suppress(dockerpy.docker.errors.NotFound):
            _follow(client.containers.get(container_id), out, deque(maxlen=1))

    def logs_tail(self, container_id: str, lines: int = 40) -> str:
        client = self.client
        try:
            raw = client.containers.get(container_id).logs(tail=lines)
        except dockerpy.docker.errors.NotFound:
            return ""
        return bytes(raw).decode("utf-8", "replace")

    def stop_app(self, container_id: str, timeout: int = 10) -> int | None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``), remove, return the
        exit code."""
        client = self.client
        try:
            c = client.containers.get(container_id)
        except dockerpy.docker.errors.NotFound:
            return None
        try:
            c.stop(timeout=timeout)
            c.reload()
            code = (c.attrs.get("State") or {}).get("ExitCode")
        finally:
            _remove(c)
        return int(code) if code is not None else None
