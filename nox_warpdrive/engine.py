"""The only module that imports docker.

It carries out plans (``plan.Step``) against an engine reached through named volumes and
archives only: no host path is ever bind-mounted, so a remote engine (``DOCKER_HOST=
ssh://...`` or ``tcp://...``) works exactly like the local one.

docker-py is imported at its first use: with requests and urllib3 it takes ~0.15 s, a
fifth of a code change's whole `nox -s image`. On a local engine (``DOCKER_HOST`` unset
or ``unix://``) the calls of a build that runs no container (inspect, history, load,
tag) go over the socket with the standard library (``_LocalApi``); everything else, and
every call to a remote engine, goes through docker-py.

Every container it creates is removed in ``finally``; an image it commits is not tagged
here (callers move tags only once a whole build has succeeded).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import re
import socket
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import BuildError, EngineError, LayerRefused
from .owner import (
    PROCESS_LABEL,
    TEMP_PREFIX,
    Owner,
    abandoned,
    age_of,
    me,
    owner_of_name,
    temp_name,
)
from .plan import EXPORT_READY, SECRETS_DIR, CommitSpec, Step
from .tars import tar_files

Output = Callable[[str], None]

#: label on every volume / container this tool creates, to find leftovers
OWNER_LABEL = "io.warpdrive.owner"

START_ENGINE = (
    "start one (on Debian as root: `bash scripts/engine-up.sh` from the nox-warpdrive "
    "checkout, or `dockerd &`), or point DOCKER_HOST at a running engine"
)

#: docker-py's default local socket
DEFAULT_SOCKET = "/var/run/docker.sock"

if TYPE_CHECKING:
    import docker
    import docker.errors
    import docker.types
    import requests.exceptions
else:
    docker = requests = None  # imported by _import_docker(), at first use

_IMPORT_LOCK = threading.Lock()


def _import_docker() -> None:
    """Import docker-py (and requests, for its exceptions) into this module's globals."""
    global docker, requests
    with _IMPORT_LOCK:
        import docker
        import docker.errors
        import docker.types
        import requests.exceptions


def _mount(target: str, source: str, read_only: bool = False) -> Any:
    _import_docker()
    return docker.types.Mount(target, source, type="volume", read_only=read_only)


def _host_shown() -> str:
    """DOCKER_HOST without credentials (an ssh:// or tcp:// URL may carry a user)."""
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    return re.sub(r"(?<=://)[^/@]*@", "", host)


def local_socket(docker_host: str | None = None) -> str | None:
    """The unix socket of a local engine, as docker-py would find it from DOCKER_HOST
    (unset: the default socket); None for any other kind of host."""
    host = os.environ.get("DOCKER_HOST", "") if docker_host is None else docker_host
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :] or DEFAULT_SOCKET
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, blocksize=1 << 20)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ApiError(Exception):
    """The engine could not be reached, or answered with an error."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class _LocalApi:
    """The few Engine API calls a build with no container makes, over a local unix
    socket with http.client (one connection per call: threads share the engine)."""

    def __init__(self, path: str, timeout: float = 600) -> None:
        self.path = path
        self.timeout = timeout
        self.prefix = ""

    def call(
        self,
        method: str,
        path: str,
        body: bytes | IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        """(status, body, response); raises ApiError for a status not in ``ok`` (404
        keeps its status) or no answer."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, self.prefix + path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(f"no answer from unix://{self.path}: {_short(exc)}") from None
        finally:
            conn.close()
        if resp.status not in ok:
            try:
                message = str(json.loads(data).get("message") or "")
            except (ValueError, AttributeError):
                message = data.decode("utf-8", "replace").strip()
            raise ApiError(message or f"HTTP {resp.status}", resp.status)
        return resp.status, data, resp

    def json(self, path: str) -> Any:
        return json.loads(self.call("GET", path)[1])

    def ping(self) -> None:
        """Check that the engine answers, and speak its API version from now on (as
        docker-py does), not some later one's."""
        _, _, resp = self.call("GET", "/_ping")
        version = resp.getheader("API-Version") or ""
        if version and all(p.isdigit() for p in version.split(".")):
            self.prefix = f"/v{version}"

    @staticmethod
    def quote(ref: str) -> str:
        return urllib.parse.quote(ref, safe="/:")


def _quiet_loggers() -> None:
    # nox turns on DEBUG logging; docker-py's and urllib3's request lines would flood it.
    for name in ("urllib3", "docker", "docker.utils.config", "docker.auth"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    env: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    layers: int
    created: str
    #: the layers' diff IDs, base first
    diff_ids: tuple[str, ...] = ()
    #: the tags that name it
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    output_tail: str
    image_id: str | None
    seconds: float


class Engine:
    """A connected Docker engine."""

    def __init__(self, client: Any = None, api: _LocalApi | None = None) -> None:
        """``client``: a docker-py client (made at first use when None); ``api``: the
        local socket, for the calls that need no docker-py."""
        self._client = client
        self._api = api if client is None else None
        self._memory: int | None = None
        #: temporary containers of this process that exist now (name -> container), for
        #: ``abort`` to remove from any thread
        self._live: dict[str, Any] = {}
        self._live_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The docker-py client, made (and docker-py imported) at first use."""
        _import_docker()  # its exceptions are caught around every use of the client
        if self._client is None:
            _quiet_loggers()
            with _IMPORT_LOCK:
                if self._client is None:
                    self._client = docker.from_env(timeout=600)
        return self._client

    # -- connection -----------------------------------------------------------------------

    @classmethod
    def connect(cls) -> Engine:
        path = local_socket()
        if path is not None:
            api = _LocalApi(path)
            try:
                api.ping()
            except ApiError as exc:
                raise EngineError(
                    f"no Docker engine answers ({exc})",
                    fix=START_ENGINE,
                ) from None
            return cls(api=api)
        _import_docker()
        _quiet_loggers()
        try:
            client = docker.from_env(timeout=600)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineError(
                f"no Docker engine answers at {_host_shown()} ({_short(exc)})",
                fix=START_ENGINE,
            ) from None
        except Exception as exc:  # requests/urllib3 connection errors
            raise EngineError(
                f"no Docker engine answers at {_host_shown()} ({_short(exc)})",
                fix="start the engine or fix DOCKER_HOST",
            ) from None
        return cls(client)

    def memory_total(self) -> int:
        """The engine's memory in bytes (0 when it does not say)."""
        if self._memory is None:
            if self._api is not None:
                try:
                    self._memory = int(self._api.json("/info").get("MemTotal") or 0)
                except (ApiError, ValueError, AttributeError):
                    self._memory = 0
                return self._memory
            client = self.client
            try:
                self._memory = int(client.info().get("MemTotal") or 0)
            except (docker.errors.APIError, requests.exceptions.RequestException, ValueError):
                self._memory = 0
        return self._memory

    def describe(self) -> str:
        if self._api is not None:
            return f"unix://{self._api.path}"
        try:
            return str(self.client.api.base_url)
        except Exception:  # pragma: no cover - informational only
            return "docker"

    # -- temporary containers and volumes ---------------------------------------------

    @contextlib.contextmanager
    def _temp_container(self, image: str, what: str, **kwargs: Any) -> Iterator[Any]:
        """A created container, removed on exit however the block ends. It is named (by
        its owner, see owner.py) before it exists, so it is removed even when the create
        call's answer is lost to an interrupt, and found by the next run's sweep when
        this process is killed outright."""
        name = temp_name(what)
        try:
            container = self.client.containers.create(image, name=name, **kwargs)
        except BaseException:
            self._remove_name(name)
            raise
        with self._live_lock:
            self._live[name] = container
        try:
            yield container
        finally:
            _remove(container)
            with self._live_lock:
                self._live.pop(name, None)

    def _remove_name(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.client.api.remove_container(name, force=True)

    def abort(self) -> None:
        """Remove every temporary container of this process now (a build is being
        interrupted: threads that follow one see it end)."""
        with self._live_lock:
            live = list(self._live.values())
        for container in live:
            _remove(container)

    def sweep(self) -> int:
        """Remove what killed runs left: temporary containers and secrets volumes whose
        owner is gone (see ``owner.abandoned``). Best effort, never an error; the count."""
        removed = 0
        now = time.time()
        try:
            for row in self._list_temp_containers():
                names = row.get("Names") or []
                owner = owner_of_name(str(names[0])) if names else None
                running = str(row.get("State") or "") in ("running", "restarting", "paused")
                if abandoned(owner, age_of(row.get("Created") or 0, now), running):
                    self._delete(f"/containers/{row.get('Id')}?force=1&v=0")
                    removed += 1
            for vol in self._list_secret_volumes():
                labels = vol.get("Labels") or {}
                owner = Owner.parse(str(labels.get(PROCESS_LABEL) or ""))
                if abandoned(owner, age_of(str(vol.get("CreatedAt") or ""), now), False):
                    self._delete(f"/volumes/{urllib.parse.quote(str(vol.get('Name')))}")
                    removed += 1
        except Exception:  # a sweep must never fail a build
            return removed
        return removed

    def _list_temp_containers(self) -> list[dict[str, Any]]:
        filters = json.dumps({"name": [TEMP_PREFIX]})
        if self._api is not None:
            query = urllib.parse.urlencode({"all": "1", "filters": filters})
            return list(self._api.json(f"/containers/json?{query}"))
        return list(self.client.api.containers(all=True, filters={"name": TEMP_PREFIX}))

    def _list_secret_volumes(self) -> list[dict[str, Any]]:
        label = f"{OWNER_LABEL}=nox-warpdrive-secrets"
        if self._api is not None:
            query = urllib.parse.urlencode({"filters": json.dumps({"label": [label]})})
            return list(self._api.json(f"/volumes?{query}").get("Volumes") or [])
        return list(self.client.api.volumes(filters={"label": label}).get("Volumes") or [])

    def _delete(self, path: str) -> None:
        if self._api is not None:
            with contextlib.suppress(ApiError):
                self._api.call("DELETE", path, ok=(200, 204, 404, 409))
            return
        kind, _, rest = path.strip("/").partition("/")
        ident = urllib.parse.unquote(rest.split("?", 1)[0])
        with contextlib.suppress(Exception):
            if kind == "containers":
                self.client.api.remove_container(ident, force=True)
            else:
                self.client.api.remove_volume(ident)

    # -- images ---------------------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        if self._api is not None:
            try:
                attrs = self._api.json(f"/images/{self._api.quote(ref)}/json")
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise EngineError(f"cannot inspect image {ref!r}: {exc}") from None
        else:
            client = self.client
            try:
                attrs = client.images.get(ref).attrs
            except docker.errors.ImageNotFound:
                return None
            except docker.errors.APIError as exc:
                raise EngineError(f"cannot inspect image {ref!r}: {_short(exc)}") from None
        cfg = attrs.get("Config") or {}
        diff_ids = tuple(str(d) for d in (attrs.get("RootFS") or {}).get("Layers") or ())
        layers = len(diff_ids)
        return ImageInfo(
            id=str(attrs.get("Id") or ""),
            env=tuple(cfg.get("Env") or ()),
            labels=dict(cfg.get("Labels") or {}),
            size=int(attrs.get("Size") or 0),
            layers=layers,
            created=str(attrs.get("Created") or ""),
            diff_ids=diff_ids,
            tags=tuple(str(t) for t in attrs.get("RepoTags") or ()),
        )

    def images_with_labels(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        client = self.client
        try:
            found = client.images.list(filters=filters)
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot list images: {_short(exc)}") from None
        out = []
        for img in found:
            info = self.image(img.id)
            if info is not None:
                out.append(info)
        return out

    def require_image(self, ref: str, role: str) -> ImageInfo:
        info = self.image(ref)
        if info is None:
            raise EngineError(
                f"{role} {ref!r} is not on the engine ({self.describe()})",
                fix=f"build or load it first (`docker pull {ref}` where a registry is "
                "reachable; for the test images: `bash scripts/base-images.sh`), or set "
                f"`{role}` in [tool.warpdrive]",
            )
        return info

    def tag(self, image_id: str, ref: str) -> None:
        repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
        if self._api is not None:
            query = urllib.parse.urlencode({"repo": repo, "tag": tag or "latest"})
            try:
                self._api.call(
                    "POST", f"/images/{self._api.quote(image_id)}/tag?{query}", ok=(201,)
                )
            except ApiError as exc:
                raise EngineError(f"cannot tag {image_id[:19]} as {ref}: {exc}") from None
            return
        client = self.client
        try:
            ok = client.api.tag(image_id, repo, tag or "latest", force=True)
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot tag {image_id[:19]} as {ref}: {_short(exc)}") from None
        if not ok:
            raise EngineError(f"the engine refused to tag {image_id[:19]} as {ref}")

    def remove_image(self, image_id: str) -> None:
        """Remove an untagged image this tool made and no longer needs (never its
        parents); a failure leaves it behind, nothing worse."""
        if self._api is not None:
            with contextlib.suppress(ApiError):
                self._api.call("DELETE", f"/images/{self._api.quote(image_id)}?noprune=1")
            return
        client = self.client
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_image(image_id, noprune=True)

    def history_text(self, ref: str) -> str:
        """Every ``created_by`` / comment of an image, for leak checks."""
        rows = self.history(ref)
        return "\n".join(f"{r.get('CreatedBy', '')} {r.get('Comment', '')}" for r in rows)

    def history(self, ref: str) -> list[dict[str, Any]]:
        """The image's history rows, newest first (as `docker history`)."""
        if self._api is not None:
            try:
                return list(self._api.json(f"/images/{self._api.quote(ref)}/history"))
            except ApiError as exc:
                raise EngineError(f"cannot read the history of {ref!r}: {exc}") from None
        return list(self.client.api.history(ref))

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        if self._api is not None:
            try:
                return dict(self._api.json(f"/images/{self._api.quote(ref)}/json"))
            except ApiError as exc:
                raise EngineError(f"cannot inspect image {ref!r}: {exc}") from None
        return dict(self.client.api.inspect_image(ref))

    def read_image_path(self, image: str, path: str) -> bytes | None:
        """A tar of ``path`` inside an image (docker cp from a created, never started
        container); None when it does not exist."""
        with self.image_reader(image) as read:
            return read(path)

    @contextlib.contextmanager
    def image_reader(self, image: str) -> Iterator[Callable[[str], bytes | None]]:
        """Read several paths of an image through one created (never started) container."""
        with self._temp_container(image, "read", command=["true"], entrypoint=[]) as container:

            def read(path: str) -> bytes | None:
                try:
                    stream, _ = container.get_archive(path)
                except docker.errors.NotFound:
                    return None
                return b"".join(stream)

            yield read

    def append_layer(
        self,
        parent: str,
        layer: bytes | Path,
        spec: CommitSpec,
        created_by: str = "nox-warpdrive app layer",
        under: Sequence[tuple[str, bytes | str]] = (),
    ) -> str:
        """A new image: ``parent`` plus one layer, with ``spec`` applied to its config as
        ``commit`` would, made with no container at all. ``under``: layers that go between
        the parent's and the new one, as (created_by, a layer tar or the diff ID of a
        layer the engine already has on top of the layers before it).

        The engine loads an image tarball whose manifest names the layers it has by diff
        ID without carrying them (layers the engine has are never read) and carries only
        the new ones. Raises EngineError when the engine refuses (e.g. an image store that
        needs every layer, or a layer named by diff ID that is gone); callers then fall
        back to carrying the layer, or to run + commit.
        """
        raw = self.inspect_raw(parent)
        cfg = dict(raw.get("Config") or {})
        env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
        env.update(dict(spec.env))
        cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
        if spec.cmd is not None:
            cfg["Cmd"] = list(spec.cmd)
        cfg["Entrypoint"] = None
        if spec.user is not None:
            cfg["User"] = spec.user
        if spec.workdir is not None:
            cfg["WorkingDir"] = spec.workdir
        if spec.exposed_ports:
            ports = dict(cfg.get("ExposedPorts") or {})
            ports.update({p: {} for p in spec.exposed_ports})
            cfg["ExposedPorts"] = ports
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **spec.labels}
        for key in ("Hostname", "Domainname", "Image"):
            cfg.pop(key, None)
        diff_ids = list((raw.get("RootFS") or {}).get("Layers") or [])
        parent_layers = len(diff_ids)
        # manifest paths: a layer the engine has is named, not carried (never read)
        layer_paths = [f"{d[7:]}/layer.tar" for d in diff_ids]
        carried: dict[str, bytes] = {}
        for i, (_, under_layer) in enumerate(under):
            if isinstance(under_layer, str):
                diff_ids.append(under_layer)
                layer_paths.append(f"{under_layer[7:]}/layer.tar")
            else:
                diff_ids.append("sha256:" + _sha256(under_layer))
                layer_paths.append(f"under{i}/layer.tar")
                carried[f"under{i}/layer.tar"] = under_layer
        new_diff = "sha256:" + _sha256(layer)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        history = []
        for row in reversed(self.history(parent)):
            entry = {
                "created": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(row.get("Created") or 0))
                ),
                "created_by": row.get("CreatedBy") or "",
            }
            if row.get("Comment"):
                entry["comment"] = row["Comment"]
            if not row.get("Size"):
                entry["empty_layer"] = True
            history.append(entry)
        if sum(1 for h in history if not h.get("empty_layer")) != parent_layers:
            history = []  # cannot be matched to the layers: leave it out rather than lie
        else:
            history += [{"created": created, "created_by": what} for what, _ in under]
        history.append({"created": created, "created_by": created_by, "comment": spec.message})
        config = {
            "architecture": raw.get("Architecture") or "amd64",
            "os": raw.get("Os") or "linux",
            "created": created,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [*diff_ids, new_diff]},
            "history": history,
        }
        if raw.get("Variant"):
            config["variant"] = raw["Variant"]
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = [
            {
                "Config": image_id[7:] + ".json",
                "RepoTags": None,
                "Layers": [*layer_paths, "new/layer.tar"],
            }
        ]
        small = {
            "manifest.json": json.dumps(manifest).encode(),
            image_id[7:] + ".json": config_bytes,
            **carried,
        }
        what = created_by.replace("nox-warpdrive ", "")
        with tempfile.TemporaryFile() as bundle:
            if isinstance(layer, bytes):
                bundle.write(tar_files({**small, "new/layer.tar": layer}))
            else:
                with tarfile.open(fileobj=bundle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, data in [*small.items(), ("new/layer.tar", None)]:
                        directory = name.rpartition("/")[0]
                        if directory and directory not in tar.getnames():
                            info = tarfile.TarInfo(directory)
                            info.type, info.mode = tarfile.DIRTYPE, 0o755
                            tar.addfile(info)
                        if data is not None:
                            info = tarfile.TarInfo(name)
                            info.size = len(data)
                            tar.addfile(info, io.BytesIO(data))
                    info = tarfile.TarInfo("new/layer.tar")
                    info.size = layer.stat().st_size
                    with layer.open("rb") as fh:
                        tar.addfile(info, fh)
            bundle.seek(0)
            if self._api is not None:
                self._load_local(bundle, what)
            else:
                client = self.client
                try:
                    for chunk in client.api.load_image(bundle):
                        if isinstance(chunk, dict) and chunk.get("error"):
                            raise LayerRefused(f"the engine refused the {what}: {chunk['error']}")
                except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                    raise LayerRefused(f"the engine refused the {what}: {_short(exc)}") from None
        if self.image(image_id) is None:
            raise LayerRefused(f"the engine loaded the {what} but does not show the image")
        return image_id

    def _load_local(self, bundle: IO[bytes], what: str) -> None:
        """`docker load` of an image tarball over the local socket."""
        assert self._api is not None
        size = bundle.seek(0, os.SEEK_END)
        bundle.seek(0)
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        try:
            _, data, _ = self._api.call("POST", "/images/load?quiet=1", bundle, headers)
        except ApiError as exc:
            raise LayerRefused(f"the engine refused the {what}: {exc}") from None
        for message in _json_stream(data):
            if message.get("error") or message.get("errorDetail"):
                error = message.get("error") or message["errorDetail"]
                raise LayerRefused(f"the engine refused the {what}: {error}")

    # -- volumes --------------------------------------------------------------------------

    def ensure_volume(self, name: str) -> bool:
        """Create the volume if missing; True when it was created."""
        client = self.client
        try:
            client.volumes.get(name)
            return False
        except docker.errors.NotFound:
            pass
        try:
            self.client.volumes.create(name=name, labels={OWNER_LABEL: "nox-warpdrive"})
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot create volume {name!r}: {_short(exc)}") from None
        return True

    def volume_exists(self, name: str) -> bool:
        client = self.client
        try:
            client.volumes.get(name)
            return True
        except docker.errors.NotFound:
            return False

    def remove_volume(self, name: str) -> None:
        client = self.client
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(name).remove(force=True)

    def read_volume_file(self, volume: str, path: str, image: str) -> bytes | None:
        """Read one file from a volume without starting a container (create, get_archive,
        remove): about a tenth of a second, and works on a remote engine."""
        mounts = [_mount("/v", volume, read_only=True)]
        with self._temp_container(image, "read", command=["true"], mounts=mounts) as container:
            try:
                stream, _ = container.get_archive("/v/" + path.lstrip("/"))
            except docker.errors.NotFound:
                return None
            data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if member.isfile():
                    fh = tar.extractfile(member)
                    return fh.read() if fh else None
        return None

    @contextlib.contextmanager
    def secrets_volume(self, files: Mapping[str, bytes], image: str) -> Iterator[str | None]:
        """A temporary volume holding build-time secrets, removed on exit.

        Secrets must reach build containers without touching a layer, the image config or
        the history: a file put into the container's own filesystem would be committed, an
        env var would be copied into the image config by ``commit``. Data under a mounted
        volume is never committed, and a named volume works on a remote engine.
        """
        if not files:
            yield None
            return
        name = f"warpdrive-secrets-{uuid.uuid4().hex[:12]}"
        labels = {OWNER_LABEL: "nox-warpdrive-secrets", PROCESS_LABEL: me().token}
        try:
            self.client.volumes.create(name=name, labels=labels)
            mounts = [_mount("/s", name)]
            with self._temp_container(
                image, "secrets", command=["true"], mounts=mounts
            ) as container:
                if not container.put_archive("/s", tar_files(files, mode=0o444)):
                    raise EngineError("the engine refused to write the build secrets volume")
            yield name
        finally:
            self.remove_volume(name)

    # -- running steps --------------------------------------------------------------------

    def run(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult:
        """Create the step's container, put its files, start it with live output, wait,
        commit when asked and it succeeded; always remove the container."""
        start = time.monotonic()
        client = self.client
        mounts = [_mount(m.target, m.source, read_only=m.read_only) for m in step.mounts]
        if step.uses_secrets and secrets_volume:
            mounts.append(_mount(SECRETS_DIR, secrets_volume, read_only=True))
        kwargs: dict[str, Any] = {
            "command": list(step.command) if step.command else ["true"],
            "entrypoint": [],
            "mounts": mounts,
            # no labels: `commit` would copy them into the image config
            "environment": [f"{k}={v}" for k, v in step.env],
        }
        if step.user:
            kwargs["user"] = step.user
        if step.workdir:
            kwargs["working_dir"] = step.workdir
        if step.network in ("host", "none", "bridge"):
            kwargs["network_mode"] = step.network
        elif step.network:
            kwargs["network"] = step.network
        if step.tmpfs:
            kwargs["tmpfs"] = {path: "exec,mode=755" for path in step.tmpfs}
        name = temp_name(step.name)
        try:
            container = client.containers.create(step.image, name=name, **kwargs)
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"image {step.image!r} is not on the engine",
                fix="build or pull it first, or fix the image name in [tool.warpdrive]",
            ) from None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot create the {step.name} container: {_short(exc)}") from None
        except BaseException:
            self._remove_name(name)  # it may exist: the answer was lost
            raise
        with self._live_lock:
            self._live[name] = container
        tail: deque[str] = deque(maxlen=60)
        exit_code = 0
        image_id: str | None = None
        try:
            for directory, data in step.files:
                if not container.put_archive(directory, data):
                    raise EngineError(f"the engine refused files for {directory}")
            if step.command is not None:
                container.start()
                ready = _follow(container, out, tail, EXPORT_READY if step.export else None)
                if ready:
                    image_id = self._export(container, step)
                else:
                    exit_code = int(container.wait().get("StatusCode", 1))
                    if exit_code == 0 and step.export:
                        exit_code = 1  # it ended without making anything to read
            if exit_code == 0 and step.commit is not None and image_id is None:
                image_id = self._commit(container, step)
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            raise EngineError(
                f"the {step.name} step failed on the engine: {_short(exc)}",
                fix="check that the engine still runs (`docker info`) and try again; "
                "nothing was tagged or published",
            ) from None
        finally:
            _remove(container)
            with self._live_lock:
                self._live.pop(name, None)
        return RunResult(exit_code, "\n".join(tail), image_id, time.monotonic() - start)

    def run_checked(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult:
        return check_result(step, self.run(step, out, secrets_volume))

    def _export(self, container: Any, step: Step) -> str:
        """The step's layer, read out of the running container (``step.export``), put on
        the step's image as one new layer with the commit's config."""
        command, paths = list(step.export[:1]), list(step.export[1:])
        exec_id = self.client.api.exec_create(container.id, [*command, *paths], user="0:0")
        stderr = bytearray()
        with tempfile.TemporaryDirectory(prefix="warpdrive-layer-") as tmp:
            layer = Path(tmp) / "layer.tar"
            with layer.open("wb") as fh:
                for out, err in self.client.api.exec_start(exec_id, stream=True, demux=True):
                    if out:
                        fh.write(out)
                    if err and len(stderr) < 65536:
                        stderr += err
            code = self.client.api.exec_inspect(exec_id).get("ExitCode")
            if code != 0:
                text = stderr.decode("utf-8", "replace").strip()[-2000:]
                raise BuildError(
                    f"reading the {step.name} layer out of its container failed "
                    f"(exit {code}): {text}",
                    fix="nothing was tagged; report this with the output above",
                )
            assert step.commit is not None
            return self.append_layer(
                step.image, layer, step.commit, created_by=f"nox-warpdrive {step.name} layer"
            )

    def _commit(self, container: Any, step: Step) -> str:
        spec = step.commit
        assert spec is not None
        conf: dict[str, Any] = {}
        if spec.env:
            conf["Env"] = [f"{k}={v}" for k, v in spec.env]
        if spec.cmd is not None:
            conf["Cmd"] = list(spec.cmd)
        if spec.user is not None:
            conf["User"] = spec.user
        if spec.workdir is not None:
            conf["WorkingDir"] = spec.workdir
        if spec.exposed_ports:
            conf["ExposedPorts"] = {p: {} for p in spec.exposed_ports}
        if spec.labels:
            conf["Labels"] = dict(spec.labels)
        result = self.client.api.commit(container.id, message=spec.message or None, conf=conf)
        return str(result["Id"])

    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str:
        """Run a short command in an image and return its combined output."""
        step = Step(name="probe", image=image, command=tuple(command), network=network)
        lines: list[str] = []
        result = self.run(step, lines.append)
        text = "\n".join(lines)
        if result.exit_code != 0:
            return text + f"\n(exit code {result.exit_code})"
        return text

    # -- app containers (the run session) ------------------------------------------------

    def remove_app(self, name: str) -> None:
        """Remove an earlier `run` container of this name (only one this tool started)."""
        client = self.client
        with contextlib.suppress(docker.errors.NotFound):
            old = client.containers.get(name)
            if old.labels.get(OWNER_LABEL) == "nox-warpdrive-run":
                _remove(old)

    def start_app(
        self, image: str, name: str, host_port: int, env: Mapping[str, str] | None = None
    ) -> str:
        """Start the app image like `docker run -d -p PORT:8080 --name NAME`; an older
        container of that name made by this tool is replaced."""
        client = self.client
        with contextlib.suppress(docker.errors.NotFound):
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
                ports={"8080/tcp": host_port},
                environment=dict(env or {}),
                labels={OWNER_LABEL: "nox-warpdrive-run"},
            )
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"image {image!r} is not on the engine", fix="build it first: `nox -s image`"
            ) from None
        except docker.errors.APIError as exc:
            text = str(exc)
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.containers.get(name).remove(force=True)
            if "allocated" in text or "address already in use" in text:
                raise EngineError(
                    f"port {host_port} is already in use",
                    fix="stop what uses it, or choose another port: `nox -s run -- --port 8081`",
                ) from None
            raise EngineError(f"cannot start {image}: {_short(exc)}") from None
        return str(container.id)

    def container_state(self, container_id: str) -> tuple[bool, int | None]:
        """(running, exit code once it stopped)."""
        client = self.client
        try:
            c = client.containers.get(container_id)
        except docker.errors.NotFound:
            return False, None
        state = c.attrs.get("State") or {}
        return bool(state.get("Running")), state.get("ExitCode")

    def follow_logs(self, container_id: str, out: Output) -> None:
        """Stream a container's output until it stops."""
        client = self.client
        with contextlib.suppress(docker.errors.NotFound):
            _follow(client.containers.get(container_id), out, deque(maxlen=1))

    def logs_tail(self, container_id: str, lines: int = 40) -> str:
        client = self.client
        try:
            raw = client.containers.get(container_id).logs(tail=lines)
        except docker.errors.NotFound:
            return ""
        return bytes(raw).decode("utf-8", "replace")

    def stop_app(self, container_id: str, timeout: int = 10) -> int | None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``), remove, return the
        exit code."""
        client = self.client
        try:
            c = client.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        try:
            c.stop(timeout=timeout)
            c.reload()
            code = (c.attrs.get("State") or {}).get("ExitCode")
        finally:
            _remove(c)
        return int(code) if code is not None else None


def check_result(step: Step, result: RunResult) -> RunResult:
    """``result``, or the BuildError of a step that failed."""
    if result.exit_code == 0:
        return result
    if result.exit_code in (137, 143):
        cause = "was killed (out of memory, or stopped by `docker kill`/`docker rm -f`)"
    else:
        cause = f"exited with code {result.exit_code}"
    raise BuildError(
        f"the {step.name} step {cause}; its last lines:\n" + _indent(result.output_tail),
        fix="read the output above for the failing command; nothing was tagged or "
        "published, the previous image and wheelhouse are unchanged",
    )


def _follow(container: Any, out: Output, tail: deque[str], until: str | None = None) -> bool:
    """Show the container's output until it ends, or until the line ``until`` (not shown):
    then True, and the container still runs."""
    pending = b""
    stream = container.logs(stream=True, follow=True, stdout=True, stderr=True)
    try:
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if until is not None and line == until:
                    return True
                tail.append(line)
                out(line)
    finally:
        with contextlib.suppress(Exception):
            stream.close()
    if pending:
        line = pending.decode("utf-8", "replace")
        tail.append(line)
        out(line)
    return False


def _json_stream(data: bytes) -> Iterator[dict[str, Any]]:
    """The objects of a JSON stream as the engine writes them (one or more per line)."""
    decoder = json.JSONDecoder()
    text = data.decode("utf-8", "replace")
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return
        if isinstance(obj, dict):
            yield obj


def _sha256(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with data.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _remove(container: Any) -> None:
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.remove(force=True, v=False)


#: the root causes worth naming inside a requests/urllib3 exception's long repr
_ROOT_CAUSES = re.compile(
    r"\[Errno -?\d+\] ([^'\"()\]\\]+)|(Read timed out|Connection aborted|RemoteDisconnected"
    r"|Connection reset by peer|Connection refused|Name or service not known"
    r"|IncompleteRead|timed out)"
)


def _short(exc: BaseException) -> str:
    """What went wrong, in a few words: the engine's own explanation for an API error,
    the root OS error ("Connection refused") for a connection failure; never the
    ~250-character repr urllib3 builds around it."""
    explanation = getattr(exc, "explanation", None)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(explanation, (str, bytes)) and explanation:
        text = (
            explanation.decode("utf-8", "replace")
            if isinstance(explanation, bytes)
            else explanation
        )
        return (f"HTTP {status}: " if status else "") + text.strip().splitlines()[0][:300]
    text = str(exc)
    found = _ROOT_CAUSES.search(text)
    if found:
        return (found.group(1) or found.group(2)).strip()
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines())
