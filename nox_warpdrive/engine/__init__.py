"""The only package that imports docker (docker-py), requests or http.client for the
engine. The rest of the code depends on the ``Engine`` Protocol (base.py); ``connect()``
chooses a backend once: the local socket (local.py) for a local engine, docker-py
(dockerpy.py) for any other. Every foreign exception is translated in base.py.
"""

from __future__ import annotations

from .base import (
    DEFAULT_SOCKET,
    OWNER_LABEL,
    START_ENGINE,
    Engine,
    ImageInfo,
    Output,
    RunResult,
    check_result,
    local_socket,
)
from .docker_registry import DockerEngine
from .local import LocalEngine

__all__ = [
    "DEFAULT_SOCKET",
    "OWNER_LABEL",
    "START_ENGINE",
    "DockerEngine",
    "Engine",
    "ImageInfo",
    "LocalEngine",
    "Output",
    "RunResult",
    "check_result",
    "connect",
    "local_socket",
]


def connect(timeout: float = 600, host: str | None = None) -> Engine:
    """The engine ``host`` names (default: DOCKER_HOST's, the local socket when unset),
    checked to answer; EngineError naming the fix when it does not. ``timeout``: seconds
    any one call may take."""
    path = local_socket(host)
    if path is not None:
        return LocalEngine._connect_local(path, timeout)
    return DockerEngine._connect(timeout, host)
