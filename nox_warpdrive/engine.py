"""The only module that imports docker.

It carries out plans (``plan.Step``) against an engine reached through named volumes and
archives only: no host path is ever bind-mounted, so a remote engine (``DOCKER_HOST=
ssh://...`` or ``tcp://...``) works exactly like the local one.

Every container it creates is removed in ``finally``; an image it commits is not tagged
here (callers move tags only once a whole build has succeeded).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tarfile
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import Mount

from .errors import BuildError, EngineError, LayerRefused
from .plan import EXPORT_READY, SECRETS_DIR, CommitSpec, Step, tar_files

Output = Callable[[str], None]

#: label on every volume / container this tool creates, to find leftovers
OWNER_LABEL = "io.warpdrive.owner"


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


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    output_tail: str
    image_id: str | None
    seconds: float


class Engine:
    """A connected Docker engine."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._memory: int | None = None

    # -- connection -----------------------------------------------------------------------

    @classmethod
    def connect(cls) -> Engine:
        _quiet_loggers()
        try:
            client = docker.from_env(timeout=600)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineError(
                f"no Docker engine answers ({_short(exc)})",
                fix="start one (on Debian as root: `bash scripts/engine-up.sh` from the "
                "nox-warpdrive checkout, or `dockerd &`), or point DOCKER_HOST at a running "
                "engine",
            ) from None
        except Exception as exc:  # requests/urllib3 connection errors
            raise EngineError(
                f"no Docker engine answers ({_short(exc)})",
                fix="start the engine or fix DOCKER_HOST",
            ) from None
        return cls(client)

    def memory_total(self) -> int:
        """The engine's memory in bytes (0 when it does not say)."""
        if self._memory is None:
            try:
                self._memory = int(self.client.info().get("MemTotal") or 0)
            except (docker.errors.APIError, requests.exceptions.RequestException, ValueError):
                self._memory = 0
        return self._memory

    def describe(self) -> str:
        try:
            return str(self.client.api.base_url)
        except Exception:  # pragma: no cover - informational only
            return "docker"

    # -- images ---------------------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        try:
            img = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot inspect image {ref!r}: {_short(exc)}") from None
        attrs = img.attrs
        cfg = attrs.get("Config") or {}
        layers = len((attrs.get("RootFS") or {}).get("Layers") or [])
        return ImageInfo(
            id=img.id,
            env=tuple(cfg.get("Env") or ()),
            labels=dict(cfg.get("Labels") or {}),
            size=int(attrs.get("Size") or 0),
            layers=layers,
            created=str(attrs.get("Created") or ""),
        )

    def images_with_labels(self, labels: Mapping[str, str]) -> list[ImageInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            found = self.client.images.list(filters=filters)
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
        try:
            ok = self.client.api.tag(image_id, repo, tag or "latest", force=True)
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot tag {image_id[:19]} as {ref}: {_short(exc)}") from None
        if not ok:
            raise EngineError(f"the engine refused to tag {image_id[:19]} as {ref}")

    def history_text(self, ref: str) -> str:
        """Every ``created_by`` / comment of an image, for leak checks."""
        rows = self.client.api.history(ref)
        return "\n".join(f"{r.get('CreatedBy', '')} {r.get('Comment', '')}" for r in rows)

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        return dict(self.client.api.inspect_image(ref))

    def read_image_path(self, image: str, path: str) -> bytes | None:
        """A tar of ``path`` inside an image (docker cp from a created, never started
        container); None when it does not exist."""
        with self.image_reader(image) as read:
            return read(path)

    @contextlib.contextmanager
    def image_reader(self, image: str) -> Iterator[Callable[[str], bytes | None]]:
        """Read several paths of an image through one created (never started) container."""
        container = self.client.containers.create(image, command=["true"], entrypoint=[])

        def read(path: str) -> bytes | None:
            try:
                stream, _ = container.get_archive(path)
            except docker.errors.NotFound:
                return None
            return b"".join(stream)

        try:
            yield read
        finally:
            _remove(container)

    def append_layer(
        self,
        parent: str,
        layer: bytes | Path,
        spec: CommitSpec,
        created_by: str = "nox-warpdrive app layer",
    ) -> str:
        """A new image: ``parent`` plus one layer, with ``spec`` applied to its config as
        ``commit`` would, made with no container at all.

        The engine loads an image tarball whose manifest names the parent's layers by
        diff ID without carrying them (layers the engine has are never read) and carries
        only the new layer. Raises EngineError when the engine refuses (e.g. an image
        store that needs every layer); callers then fall back to run + commit.
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
        new_diff = "sha256:" + _sha256(layer)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        history = []
        for row in reversed(self.client.api.history(parent)):
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
        if sum(1 for h in history if not h.get("empty_layer")) != len(diff_ids):
            history = []  # cannot be matched to the layers: leave it out rather than lie
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
                "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids] + ["new/layer.tar"],
            }
        ]
        small = {
            "manifest.json": json.dumps(manifest).encode(),
            image_id[7:] + ".json": config_bytes,
        }
        what = created_by.replace("nox-warpdrive ", "")
        with tempfile.TemporaryFile() as bundle:
            if isinstance(layer, bytes):
                bundle.write(tar_files({**small, "new/layer.tar": layer}))
            else:
                with tarfile.open(fileobj=bundle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, data in small.items():
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                    info = tarfile.TarInfo("new")
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    info = tarfile.TarInfo("new/layer.tar")
                    info.size = layer.stat().st_size
                    with layer.open("rb") as fh:
                        tar.addfile(info, fh)
            bundle.seek(0)
            try:
                for chunk in self.client.api.load_image(bundle):
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise LayerRefused(f"the engine refused the {what}: {chunk['error']}")
            except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
                raise LayerRefused(f"the engine refused the {what}: {_short(exc)}") from None
        if self.image(image_id) is None:
            raise LayerRefused(f"the engine loaded the {what} but does not show the image")
        return image_id

    # -- volumes --------------------------------------------------------------------------

    def ensure_volume(self, name: str) -> bool:
        """Create the volume if missing; True when it was created."""
        try:
            self.client.volumes.get(name)
            return False
        except docker.errors.NotFound:
            pass
        try:
            self.client.volumes.create(name=name, labels={OWNER_LABEL: "nox-warpdrive"})
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot create volume {name!r}: {_short(exc)}") from None
        return True

    def volume_exists(self, name: str) -> bool:
        try:
            self.client.volumes.get(name)
            return True
        except docker.errors.NotFound:
            return False

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(name).remove(force=True)

    def read_volume_file(self, volume: str, path: str, image: str) -> bytes | None:
        """Read one file from a volume without starting a container (create, get_archive,
        remove): about a tenth of a second, and works on a remote engine."""
        container = self.client.containers.create(
            image,
            command=["true"],
            mounts=[Mount("/v", volume, type="volume", read_only=True)],
            labels={OWNER_LABEL: "nox-warpdrive"},
        )
        try:
            try:
                stream, _ = container.get_archive("/v/" + path.lstrip("/"))
            except docker.errors.NotFound:
                return None
            data = b"".join(stream)
        finally:
            _remove(container)
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
        self.client.volumes.create(name=name, labels={OWNER_LABEL: "nox-warpdrive-secrets"})
        try:
            container = self.client.containers.create(
                image,
                command=["true"],
                mounts=[Mount("/s", name, type="volume")],
                labels={OWNER_LABEL: "nox-warpdrive"},
            )
            try:
                if not container.put_archive("/s", tar_files(files, mode=0o444)):
                    raise EngineError("the engine refused to write the build secrets volume")
            finally:
                _remove(container)
            yield name
        finally:
            self.remove_volume(name)

    # -- running steps --------------------------------------------------------------------

    def run(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult:
        """Create the step's container, put its files, start it with live output, wait,
        commit when asked and it succeeded; always remove the container."""
        start = time.monotonic()
        mounts = [
            Mount(m.target, m.source, type="volume", read_only=m.read_only) for m in step.mounts
        ]
        if step.uses_secrets and secrets_volume:
            mounts.append(Mount(SECRETS_DIR, secrets_volume, type="volume", read_only=True))
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
        try:
            container = self.client.containers.create(step.image, **kwargs)
        except docker.errors.ImageNotFound:
            raise EngineError(
                f"image {step.image!r} is not on the engine",
                fix="build or pull it first, or fix the image name in [tool.warpdrive]",
            ) from None
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot create the {step.name} container: {_short(exc)}") from None
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
        return RunResult(exit_code, "\n".join(tail), image_id, time.monotonic() - start)

    def run_checked(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult:
        result = self.run(step, out, secrets_volume)
        if result.exit_code != 0:
            raise BuildError(
                f"the {step.name} step exited with code {result.exit_code}; its last lines:\n"
                + _indent(result.output_tail),
                fix="read the output above for the failing command; nothing was tagged or "
                "published, the previous image and wheelhouse are unchanged",
            )
        return result

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
        with contextlib.suppress(docker.errors.NotFound):
            old = self.client.containers.get(name)
            if old.labels.get(OWNER_LABEL) == "nox-warpdrive-run":
                _remove(old)

    def start_app(
        self, image: str, name: str, host_port: int, env: Mapping[str, str] | None = None
    ) -> str:
        """Start the app image like `docker run -d -p PORT:8080 --name NAME`; an older
        container of that name made by this tool is replaced."""
        with contextlib.suppress(docker.errors.NotFound):
            old = self.client.containers.get(name)
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
        try:
            c = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return False, None
        state = c.attrs.get("State") or {}
        return bool(state.get("Running")), state.get("ExitCode")

    def follow_logs(self, container_id: str, out: Output) -> None:
        """Stream a container's output until it stops."""
        with contextlib.suppress(docker.errors.NotFound):
            _follow(self.client.containers.get(container_id), out, deque(maxlen=1))

    def logs_tail(self, container_id: str, lines: int = 40) -> str:
        try:
            raw = self.client.containers.get(container_id).logs(tail=lines)
        except docker.errors.NotFound:
            return ""
        return bytes(raw).decode("utf-8", "replace")

    def stop_app(self, container_id: str, timeout: int = 10) -> int | None:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``), remove, return the
        exit code."""
        try:
            c = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        try:
            c.stop(timeout=timeout)
            c.reload()
            code = (c.attrs.get("State") or {}).get("ExitCode")
        finally:
            _remove(c)
        return int(code) if code is not None else None


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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines())
