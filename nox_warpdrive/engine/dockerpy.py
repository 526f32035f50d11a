"""The docker-py backend: every call through docker-py, for any engine docker-py reaches
(a local socket, ``tcp://`` with or without TLS, ``ssh://``). Named volumes and archives
only, never a bind mount of a host path, so a remote engine works like a local one.

docker-py is imported at first use (~0.15 s with requests and urllib3, a fifth of a code
change's build; local.py needs it only for builds that run a container). Every container
it creates is removed in ``finally``; an image it commits is not tagged here (callers
move tags once a whole build has succeeded). ``base.translated`` translates foreign
exceptions, for every public method.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import assembly
from ..errors import (
    BuildError,
    CommandMissing,
    EmulationMissing,
    EngineError,
    LayerRefused,
    WarpdriveError,
    host_writes,
)
from ..plan import EXPORT_READY, SECRETS_DIR, CommitSpec, Step
from ..platform import platform_of
from ..tars import tar_files
from . import reaper
from .base import (
    OWNER_LABEL,
    ImageInfo,
    Output,
    RunResult,
    check_result,
    engine_fix,
    foreign_cpu,
    listed_images,
    missing_command,
    short,
    step_image_missing,
    translated,
)
from .checked import verified
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
from .ownerwatch import attach_stdin, detach_stdin, watched_command
from .podman import label_filters
from .progress import EVERY as PROGRESS_EVERY

if TYPE_CHECKING:
    import docker as docker  # re-exported: docker_registry.py reads it here
    import docker.errors
    import docker.types
else:
    docker = None  # imported by _import_docker(), at first use

_IMPORT_LOCK = threading.Lock()


def _import_docker() -> None:
    """Import docker-py into this module's globals."""
    global docker
    with _IMPORT_LOCK:
        import docker
        import docker.errors
        import docker.types


def _quiet_loggers() -> None:
    # nox turns on DEBUG logging; docker-py's and urllib3's request lines would flood it.
    for name in ("urllib3", "docker", "docker.utils.config", "docker.auth"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # a credential helper that is not on PATH: docker-py warns (a Python warning, with
    # its file and line) and then fails; the push or pull says so itself, with the fix
    warnings.filterwarnings("ignore", category=UserWarning, module=r"docker\.credentials")


def _mount(target: str, source: str, read_only: bool = False) -> Any:
    _import_docker()
    return docker.types.Mount(target, source, type="volume", read_only=read_only)


def image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    """The record of an image from its inspect data."""
    cfg = attrs.get("Config") or {}
    diff_ids = tuple(str(d) for d in (attrs.get("RootFS") or {}).get("Layers") or ())
    return ImageInfo(
        id=str(attrs.get("Id") or ""),
        env=tuple(cfg.get("Env") or ()),
        labels=dict(cfg.get("Labels") or {}),
        size=int(attrs.get("Size") or 0),
        layers=len(diff_ids),
        created=str(attrs.get("Created") or ""),
        diff_ids=diff_ids,
        tags=tuple(str(t) for t in attrs.get("RepoTags") or ()),
        last_tagged=str((attrs.get("Metadata") or {}).get("LastTagTime") or ""),
        platform=_platform_of(attrs),
    )


def _platform_of(attrs: Mapping[str, Any]) -> str:
    """``os/arch[/variant]`` from the inspect data ("" when it names no architecture)."""
    arch, variant = str(attrs.get("Architecture") or ""), str(attrs.get("Variant") or "")
    return str(platform_of(str(attrs.get("Os") or ""), arch, variant)) if arch else ""


@translated
class _Core:
    """The docker-py client and this process's temporary containers: what every part of
    the backend below builds on."""

    def __init__(self, client: Any = None, timeout: float = 600) -> None:
        """``client``: a docker-py client (made at first use when None)."""
        self._client = client
        self._timeout = timeout
        self._memory: int | None = None
        #: temporary containers of this process that exist now (name -> container), for
        #: ``abort`` to remove from any thread
        self._live: dict[str, Any] = {}
        self._live_lock = threading.Lock()
        #: secrets volumes being written (name -> the write), awaited before a start
        self._writing: dict[str, Future[None]] = {}
        #: the API version docker-py is to speak when already known (local.py's ping)
        self._api_version: str | None = None

    @property
    def client(self) -> Any:
        """The docker-py client, made (and docker-py imported) at first use."""
        _import_docker()
        if self._client is None:
            _quiet_loggers()
            with _IMPORT_LOCK:
                if self._client is None:
                    version = self._api_version or "auto"  # "auto": a /version call
                    self._client = docker.from_env(timeout=self._timeout, version=version)
        return self._client

    def describe(self) -> str:
        return str(self.client.api.base_url)

    # -- temporary containers and volumes ---------------------------------------------

    @contextlib.contextmanager
    def _temp_container(
        self, image: str, what: str, name: str | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """A created container, removed on exit however the block ends. It is named (by
        its owner, see owner.py) before it exists, so it is removed even when the create
        call's answer is lost to an interrupt, and found by the next run's sweep when
        this process is killed outright. ``name``: one made by temp_name beforehand."""
        name = name or temp_name(what)
        reaper.start()  # removes it if this process dies by kill -9
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

    remove_temp = _remove_name  # a running step's container, ended now (its run returns)

    def put_files(self, name: str, files: Sequence[tuple[str, bytes]]) -> None:
        """Tar archives put into the container ``name`` (its id will do), in order."""
        for directory, data in files:
            if not self.client.api.put_archive(name, directory, data):
                raise EngineError(f"the engine refused files for {directory}")

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
        return list(self.client.api.containers(all=True, filters={"name": TEMP_PREFIX}))

    def _list_secret_volumes(self) -> list[dict[str, Any]]:
        label = f"{OWNER_LABEL}=nox-warpdrive-secrets"
        return list(self.client.api.volumes(filters={"label": label}).get("Volumes") or [])

    def _delete(self, path: str) -> None:
        """DELETE an Engine API path (a container or volume), ignoring refusals."""
        kind, _, rest = path.strip("/").partition("/")
        ident = urllib.parse.unquote(rest.split("?", 1)[0])
        with contextlib.suppress(docker.errors.APIError):
            if kind == "containers":
                self.client.api.remove_container(ident, force=True)
            else:
                self.client.api.remove_volume(ident)


@translated
class _Images(_Core):
    """Images: inspect, tag, remove, read files, and new images from layer bundles."""

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        """The image's inspect data; None when the engine has no such image."""
        try:
            return dict(self.client.api.inspect_image(ref))
        except docker.errors.NotFound:
            return None

    def image(self, ref: str) -> ImageInfo | None:
        attrs = self._inspect(ref)
        return image_info(attrs) if attrs is not None else None

    def images_with_labels(
        self, labels: Mapping[str, str], where: Callable[[Mapping[str, str]], bool] | None = None
    ) -> list[ImageInfo]:
        """Images with all these labels; ``where``: of those, the ones whose labels it
        takes (checked on the listing, before any inspect)."""
        api = self.client.api
        params = {"filters": label_filters(labels)}  # not docker-py's: it sends lists
        rows = api._result(api._get(api._url("/images/json"), params=params), True)
        return listed_images(rows, self.image, labels, where)

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
        repo, tag = _split_tag(ref)
        if not self.client.api.tag(image_id, repo, tag, force=True):
            raise EngineError(f"the engine refused to tag {image_id[:19]} as {ref}")

    def remove_image(self, image_id: str) -> None:
        """Remove an untagged image this tool made and no longer needs (never its
        parents); a refusal (a container uses it) leaves it behind, nothing worse."""
        with contextlib.suppress(docker.errors.APIError):
            self.client.api.remove_image(image_id, noprune=True)

    def history(self, ref: str) -> list[dict[str, Any]]:
        """The image's history rows, newest first (as `docker history`)."""
        return list(self.client.api.history(ref))

    def history_text(self, ref: str) -> str:
        """Every ``created_by`` / comment of an image, for leak checks."""
        rows = self.history(ref)
        return "\n".join(f"{r.get('CreatedBy', '')} {r.get('Comment', '')}" for r in rows)

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        attrs = self._inspect(ref)
        if attrs is None:
            raise EngineError(
                f"image {ref!r} is not on the engine ({self.describe()})",
                fix="build or pull it first (the engine answered; it has no such image)",
            )
        return attrs

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

    def save_image(self, ref: str, into: Path) -> None:
        """`docker save` of one image, streamed into the file ``into`` (the layers of
        two builds compared by `image -- --check-reproducible`)."""
        with into.open("wb") as fh:
            for chunk in self.client.api.get_image(ref):
                fh.write(chunk)

    def append_layer(
        self,
        parent: str,
        layer: bytes | Path | str,
        spec: CommitSpec,
        created_by: str = "nox-warpdrive app layer",
        under: Sequence[tuple[str, bytes | str | Path]] = (),
    ) -> str:
        """A new image: ``parent`` plus one layer, with ``spec`` applied to its config as
        ``commit`` would, made with no container at all (assembly.layer_bundle; the engine
        loads it). ``under``: layers between the parent's and the new one, as
        (created_by, a layer tar in memory or in a file, or the diff ID of a layer the
        engine already has there). The bundle is streamed to the engine, layer files a
        piece at a time: never whole in memory, and never copied into a bundle file.
        Raises LayerRefused when the engine refuses (e.g. an image store that needs every
        layer, or a named layer that is gone); callers then carry it, or run + commit."""
        bundle = assembly.layer_bundle(
            self.inspect_raw(parent),
            self.history(parent),
            layer,
            spec,
            created=spec.created or assembly.timestamp(time.time()),
            created_by=created_by,
            under=under,
        )
        what = created_by.replace("nox-warpdrive ", "")
        self._load(bundle, what)
        return verified(self, bundle.image_id, json.loads(bundle.config).get("config") or {}, what)

    def _load(self, bundle: assembly.Bundle | IO[bytes], what: str) -> None:
        """`docker load` of an image tarball (a bundle, streamed; or a file);
        LayerRefused when the engine refuses it."""
        data = bundle.chunks() if isinstance(bundle, assembly.Bundle) else bundle
        try:
            for chunk in self.client.api.load_image(data):
                if isinstance(chunk, dict) and (chunk.get("error") or chunk.get("errorDetail")):
                    error = chunk.get("error") or chunk["errorDetail"]
                    raise LayerRefused(f"the engine refused the {what}: {error}")
        except docker.errors.APIError as exc:
            raise LayerRefused(f"the engine refused the {what}: {short(exc)}") from exc


@translated
class _Steps(_Images):
    """Volumes and build steps: containers that run a plan's Step, with live output."""

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
            raise EngineError(f"cannot create volume {name!r}: {short(exc)}") from exc
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

        The volume is written in a thread while the step's container is created and given
        its files; the run waits for it before the start (45 ms of an added package).
        """
        if not files:
            yield None
            return
        reaper.start()  # removes the volume if this process dies by kill -9
        name = f"warpdrive-secrets-{uuid.uuid4().hex[:12]}"
        labels = {OWNER_LABEL: "nox-warpdrive-secrets", PROCESS_LABEL: me().token}
        writing: Future[None] | None = None
        try:
            self.client.volumes.create(name=name, labels=labels)
            pool = ThreadPoolExecutor(1, "warpdrive-secrets")
            writing = pool.submit(self._write_secrets, name, files, image)
            pool.shutdown(wait=False)  # the thread ends once it is written
            self._writing[name] = writing
            yield name
        finally:
            self._writing.pop(name, None)
            if writing is not None:
                with contextlib.suppress(Exception):
                    writing.result()  # its container is gone before the volume goes
            self.remove_volume(name)

    def _write_secrets(self, name: str, files: Mapping[str, bytes], image: str) -> None:
        mounts = [_mount("/s", name)]
        with self._temp_container(image, "secrets", command=["true"], mounts=mounts) as container:
            if not container.put_archive("/s", tar_files(files, mode=0o444)):
                raise EngineError("the engine refused to write the build secrets volume")

    def _secrets_written(self, name: str | None) -> None:
        """Wait until the secrets volume ``name`` is written (its failure is the step's)."""
        writing = self._writing.get(name) if name else None
        if writing is not None:
            writing.result()

    # -- running steps --------------------------------------------------------------------

    def run(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult:
        """Create the step's container, put its files, start it with live output, wait,
        commit (or export) when asked and it succeeded; always remove the container."""
        return self._run(step, out, secrets_volume)

    def run_export(
        self,
        step: Step,
        out: Output,
        into: Path,
        name: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> RunResult:
        """Run an export step (``step.export``) and write the layer it exports to the file
        ``into`` (a tar) instead of putting it on an image: a layer to upload elsewhere.
        ``name``: the container's (owner.temp_name), for put_files while it runs.
        ``then``: called once the layer is read, while the container still runs (it may
        use it: exec_in, read_out); the container is removed after it returns."""
        if not step.export:
            raise EngineError(f"the {step.name} step exports nothing", fix=engine_fix())
        return self._run(step, out, None, into, name, then)

    def exec_in(
        self, name: str, command: Sequence[str], out: Output, until: str | None = None
    ) -> int:
        """Run ``command`` as root in the running container ``name`` (a step's, during
        run_export's ``then``), its output lines to ``out``: its exit code; or 0 once it
        printed the line ``until`` (not shown), leaving it to end with the container."""
        api = self.client.api
        exec_id = api.exec_create(name, list(command), user="0:0")
        if _show_lines(api.exec_start(exec_id, stream=True), out, until):
            return 0
        code = api.exec_inspect(exec_id).get("ExitCode")
        return int(code) if code is not None else 1

    def read_out(
        self, name: str, command: Sequence[str], into: Path, what: str, out: Output
    ) -> int:
        """What ``command`` (run as root in the running container ``name``) writes to
        its standard output, into the file ``into`` (a tar, as an export step's): the
        bytes read (a long read says how far it is, to ``out``). BuildError when it
        fails."""
        return self._read_out(name, list(command), what, out, into)

    def _run(
        self,
        step: Step,
        out: Output,
        secrets: str | None,
        into: Path | None = None,
        name: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> RunResult:
        start = time.monotonic()
        tail: deque[str] = deque(maxlen=60)
        kwargs = _container_args(step, secrets)
        try:
            with self._temp_container(step.image, step.name, name, **kwargs) as container:
                self.put_files(container.id, step.files)
                self._secrets_written(secrets if step.uses_secrets else None)
                exit_code, image_id = self._drive(container, step, out, tail, into, then)
        except docker.errors.ImageNotFound as exc:
            raise step_image_missing(step) from exc
        except WarpdriveError:
            raise
        except Exception as exc:
            if foreign_cpu(str(exc)):
                raise EmulationMissing(f"the {step.name} step (image {step.image})") from exc
            raise EngineError(
                f"the {step.name} step failed on the engine: {short(exc)}", fix=engine_fix()
            ) from exc
        if exit_code != 0 and foreign_cpu("\n".join(tail)):
            raise EmulationMissing(f"the {step.name} step (image {step.image})")
        return RunResult(exit_code, "\n".join(tail), image_id, time.monotonic() - start)

    def _drive(
        self,
        container: Any,
        step: Step,
        out: Output,
        tail: deque[str],
        into: Path | None = None,
        then: Callable[[], None] | None = None,
    ) -> tuple[int, str | None]:
        """Start, follow, wait; then the image: (exit code, image id or None).
        ``into``: where an export step's layer goes instead of onto an image, ``then``
        what runs once it is there (run_export). Its files are in (_run)."""
        exit_code, image_id = 0, None
        if step.command is not None:
            _start(container, step)
            if _follow(container, out, tail, EXPORT_READY if step.export else None):
                if into is not None:
                    self._read_export(container, step, out, into)
                    if then is not None:
                        then()
                    return 0, None
                return 0, self._export(container, step, out)
            exit_code = int(container.wait().get("StatusCode", 1))
            if exit_code == 0 and step.export:
                exit_code = 1  # it ended without making anything to read
        if exit_code == 0 and step.commit is not None:
            image_id = self._commit(container, step)
        return exit_code, image_id

    def run_checked(self, step: Step, out: Output, secrets_volume: str | None = None) -> RunResult:
        return check_result(step, self.run(step, out, secrets_volume))

    def _export(self, container: Any, step: Step, out: Output) -> str:
        """The step's layer, read out of the running container (``step.export``), put on
        the step's image as one new layer with the commit's config. A long read says how
        far it is (a big virtualenv over a remote engine takes a while)."""
        with tempfile.TemporaryDirectory(prefix="warpdrive-layer-") as tmp:
            layer = Path(tmp) / "layer.tar"
            with host_writes(tmp):
                read = self._read_export(container, step, out, layer)
            # the layer is read: the container goes while it loads (0.2 s of a cold build)
            gone = threading.Thread(target=_remove, args=(container,), name="warpdrive-rm")
            gone.start()
            assert step.commit is not None
            if read >= _BIG_LAYER:  # its load takes seconds too: say so
                size = f"{read / 1e6:.0f} MB"
                out(f"warpdrive: {step.name}: loading the layer ({size}) into the engine")
            try:
                return self.append_layer(step.image, layer, step.commit, created_by=step.created_by)
            finally:
                gone.join()

    def _read_export(self, container: Any, step: Step, out: Output, layer: Path) -> int:
        """The layer an export step made, read out of its running container into the
        file ``layer``; the bytes read."""
        return self._read_out(container.id, list(step.export), f"{step.name} layer", out, layer)

    def _read_out(
        self, container_id: str, command: list[str], what: str, out: Output, layer: Path
    ) -> int:
        """What ``command`` writes to its standard output in the running container, into
        the file ``layer`` (progress lines to ``out``); the bytes read."""
        exec_id = self.client.api.exec_create(container_id, command, user="0:0")
        stderr = bytearray()
        read, said, digest = 0, time.monotonic(), hashlib.sha256()
        with layer.open("wb") as fh:
            for data, err in self.client.api.exec_start(exec_id, stream=True, demux=True):
                if data:
                    fh.write(data)
                    digest.update(data)
                    read += len(data)
                    if time.monotonic() - said >= PROGRESS_EVERY:
                        said = time.monotonic()
                        out(f"warpdrive: {what}: {read / 1e6:.0f} MB read")
                if err and len(stderr) < 65536:
                    stderr += err
        code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        if code != 0:
            text = stderr.decode("utf-8", "replace").strip()[-2000:]
            raise BuildError(
                f"reading the {what} out of its container failed (exit {code}): {text}",
                fix="nothing was tagged; report this with the output above",
            )
        assembly.written_with_digest(layer, digest.hexdigest())
        return read

    def _commit(self, container: Any, step: Step) -> str:
        spec = step.commit
        assert spec is not None
        conf = assembly.config_changes(spec)
        if "Cmd" not in conf and step.command:  # the step's, never the watchdog's
            conf["Cmd"] = list(step.command)
        result = self.client.api.commit(container.id, message=spec.message or None, conf=conf)
        return verified(self, str(result["Id"]), conf, f"{step.name} image")

    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str:
        """Run a short command in an image and return its combined output."""
        step = Step(name="probe", image=image, command=tuple(command), network=network)
        lines: list[str] = []
        result = self.run(step, lines.append)
        text = "\n".join(lines)
        if result.exit_code != 0:
            return text + f"\n(exit code {result.exit_code})"
        return text


def _start(container: Any, step: Step) -> None:
    """Start a step's container, its watchdog's stdin attached first; CommandMissing
    when its image lacks the command (the engine answered: it is the image or the
    configured command that is wrong)."""
    if (getattr(container, "attrs", None) or {}).get("Config", {}).get("OpenStdin"):
        attach_stdin(container)
    try:
        container.start()
    except docker.errors.APIError as exc:
        said = short(exc)
        command = missing_command(said)
        if command is None:
            raise
        raise CommandMissing(step.image, command, said) from exc


#: a layer read out of a container that is worth a line before it is loaded (bytes)
_BIG_LAYER = 50_000_000


def _container_args(step: Step, secrets_volume: str | None) -> dict[str, Any]:
    """docker-py's create() arguments for a step."""
    mounts = [_mount(m.target, m.source, read_only=m.read_only) for m in step.mounts]
    if step.uses_secrets and secrets_volume:
        mounts.append(_mount(SECRETS_DIR, secrets_volume, read_only=True))
    kwargs: dict[str, Any] = {
        "command": watched_command(step.command) if step.command else ["true"],
        "entrypoint": [],
        # for the watchdog: an open stdin, closed by the engine when the owner that
        # attached to it disconnects (stdin_once follows stdin_open in docker-py)
        "stdin_open": bool(step.command),
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
    if step.cpu_shares is not None:
        kwargs["cpu_shares"] = step.cpu_shares
    return kwargs


def _follow(container: Any, out: Output, tail: deque[str], until: str | None = None) -> bool:
    """Show the container's output until it ends, or until the line ``until`` (not shown):
    then True, and the container still runs."""
    stream = container.logs(stream=True, follow=True, stdout=True, stderr=True)
    try:
        return _show_lines(stream, out, until, tail)
    finally:
        with contextlib.suppress(Exception):
            stream.close()


def _show_lines(
    chunks: Iterable[bytes], out: Output, until: str | None = None, tail: deque[str] | None = None
) -> bool:
    """Show a byte stream's lines (kept in ``tail`` too) until it ends, or until the line
    ``until`` (not shown): then True."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if until is not None and line == until:
                return True
            if tail is not None:
                tail.append(line)
            out(line)
    if pending:
        line = pending.decode("utf-8", "replace")
        if tail is not None:
            tail.append(line)
        out(line)
    return False


def _remove(container: Any) -> None:
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        container.remove(force=True, v=False)
    detach_stdin(container)  # after the removal: its close would end the container


def _split_tag(ref: str) -> tuple[str, str]:
    """(repository, tag) of a reference; the tag defaults to latest."""
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    return repo, tag or "latest"
