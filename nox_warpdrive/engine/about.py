"""What the engine says about itself, for ``nox -s doctor``: its versions, storage
driver, platform and free disk, a volume's size, and where a registry login would come
from. Read only: nothing here creates, runs or changes anything on the engine, and no
secret is read (a credential helper is named, never run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .base import host_shown, local_socket, translated
from .podman import is_podman


@dataclass(frozen=True)
class EngineAbout:
    """The engine as ``docker info`` and ``docker version`` describe it."""

    address: str
    version: str
    api_version: str
    storage_driver: str
    os: str
    arch: str
    #: where the engine keeps images and volumes (its DockerRootDir)
    root_dir: str
    memory: int
    #: bytes free where the engine keeps its data; None when this host cannot tell (a
    #: remote engine, or a root directory this process cannot see)
    free_disk: int | None
    #: which engine it says it is (``/version`` Components): "Docker" or "Podman"
    kind: str = "Docker"


def free_disk(path: str) -> int | None:
    """Bytes free for the filesystem of ``path`` on this host; None when it cannot be
    told (the path is not visible here)."""
    if not path:
        return None
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def about_of(info: dict[str, Any], version: dict[str, Any]) -> EngineAbout:
    """The record from ``/info`` and ``/version`` (their JSON, as the API gives it). The
    free disk is read only for a local engine (on a remote one the path is another
    machine's)."""
    root = str(info.get("DockerRootDir") or "")
    return EngineAbout(
        address=host_shown(),
        version=str(version.get("Version") or info.get("ServerVersion") or "?"),
        api_version=str(version.get("ApiVersion") or "?"),
        storage_driver=str(info.get("Driver") or "?"),
        os=str(version.get("Os") or info.get("OSType") or "?"),
        arch=str(version.get("Arch") or info.get("Architecture") or "?"),
        root_dir=root,
        memory=int(info.get("MemTotal") or 0),
        free_disk=free_disk(root) if local_socket() is not None else None,
        kind="Podman" if is_podman(version) else "Docker",
    )


@dataclass(frozen=True)
class DiskUsage:
    """What ``docker system df -v`` says: each volume's size, and each image's size and
    the part of it shared with other images (its own is the difference)."""

    volumes: dict[str, int]
    images: dict[str, tuple[int, int]]


def usage_of(df: dict[str, Any]) -> DiskUsage:
    """The record from ``/system/df`` (sizes the engine could not tell are left out)."""
    volumes: dict[str, int] = {}
    for volume in df.get("Volumes") or ():
        size = (volume.get("UsageData") or {}).get("Size")
        if isinstance(size, int) and size >= 0:
            volumes[str(volume.get("Name"))] = size
    images: dict[str, tuple[int, int]] = {}
    for image in df.get("Images") or ():
        size, shared = image.get("Size"), image.get("SharedSize")
        if isinstance(size, int) and size >= 0:
            images[str(image.get("Id"))] = (size, shared if isinstance(shared, int) else 0)
    return DiskUsage(volumes, images)


@translated
class AboutMixin:
    """The read-only calls doctor makes, on top of a backend's ``_info()``,
    ``_version()`` and ``_system_df()`` (docker-py's, or the local socket's)."""

    def _info(self) -> Any:  # pragma: no cover - every backend defines it
        raise NotImplementedError

    def _version(self) -> Any:
        return self.client.version()  # type: ignore[attr-defined]

    def _system_df(self) -> Any:
        return self.client.df()  # type: ignore[attr-defined]

    def about(self) -> EngineAbout:
        """What the engine says of itself; its ``/info`` and ``/version`` are asked once
        per connection (what they say does not change while it runs: each build of a
        deps layer asks for its platform, 15 ms), the free disk each time."""
        asked = getattr(self, "_about_asked", None)
        if asked is None:
            asked = self._about_asked = (dict(self._info()), dict(self._version()))
        return about_of(*asked)

    def disk_usage(self) -> DiskUsage:
        """Volume and image sizes as the engine counts them (``docker system df -v``:
        it walks the volumes, a second or so for a large one)."""
        return usage_of(dict(self._system_df()))

    def login_helper(self, registry: str) -> str | None:
        """The credential helper the Docker config names for ``registry`` (its
        ``credHelpers`` entry, else ``credsStore``), as docker-py would use it; None when
        the config names none (a login is then in its ``auths``, or there is none).
        Nothing is run, nothing secret is read."""
        import docker.auth

        config = docker.auth.load_config()
        helper = config.get_credential_store(registry)
        return str(helper) if helper else None
