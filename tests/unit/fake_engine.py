"""The one fake engine of the unit tests: implements the whole Engine Protocol
(nox_warpdrive/engine/base.py) in memory, records what it was asked, and builds, fails or
waits as a test says. Never a fake of docker-py's object model: the real backends are
tested against a fake Engine API server (test_local_api.py, test_engine_faults.py) and a
real engine (tests/integration)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nox_warpdrive.assembly import Bundle
from nox_warpdrive.engine import ImageInfo, RunResult
from nox_warpdrive.engine.about import DiskUsage, EngineAbout
from nox_warpdrive.engine.base import ArchivePut, ArchiveRead
from nox_warpdrive.errors import BuildError, EngineError
from nox_warpdrive.plan import VOLUME_DIR, CommitSpec, Step

GIB = 1 << 30
#: how long a test waits for a gate before failing
WAIT = 10.0

BLANK = ImageInfo("sha256:blank", (), {}, 1, 1, "")


class FakeEngine:
    """``images``: ref -> image; ``candidates``: images only ``images_with_labels``
    lists; ``output``: lines every step prints; ``failures``: what the next steps raise
    (None: that one succeeds); ``gate``: steps wait for it; ``paths``: what image_reader
    finds; ``volume_files``: (volume, path) -> bytes; ``exit_code``: what every step
    exits with (run_checked raises BuildError when it is not 0)."""

    def __init__(
        self,
        images: Mapping[str, ImageInfo] | None = None,
        candidates: Sequence[ImageInfo] = (),
        output: Sequence[str] = (),
        failures: Sequence[BaseException | None] = (),
        gate: threading.Event | None = None,
        memory: int = 8 * GIB,
        paths: Mapping[str, bytes] | None = None,
        volume_files: Mapping[tuple[str, str], bytes] | None = None,
        base: ImageInfo = BLANK,
        exit_code: int = 0,
    ) -> None:
        self.images = dict(images or {})
        self.candidates = list(candidates)
        self.output = tuple(output)
        self.failures = list(failures)
        self.gate = gate
        self.memory = memory
        self.paths = dict(paths or {})
        self.volume_files = dict(volume_files or {})
        self.base = base
        self.exit_code = exit_code
        #: what save_image writes for an image (a `docker save` tar), by ref or id
        self.saved: dict[str, bytes] = {}
        self.entered = threading.Event()
        self.steps: list[Step] = []
        #: (image, name, host port, env, host ip) of every start_app
        self.started_apps: list[tuple[str, str, int, dict[str, str], str]] = []
        self.threads: list[str] = []
        self.tags: list[tuple[str, str]] = []
        self.filters: list[dict[str, str]] = []
        self.built: dict[str, Step] = {}
        self.appended: list[tuple[str, CommitSpec, Sequence[tuple[str, Any]]]] = []
        #: each appended layer's data and its ``under`` layers' (read while they exist)
        self.appended_data: list[tuple[bytes | str, list[tuple[str, bytes | str]]]] = []
        self.removed: list[str] = []
        self.reads: list[tuple[str, str]] = []
        self.readers = 0
        #: (container, command) of every exec_in and read_out; what they give
        self.execs: list[tuple[str, tuple[str, ...]]] = []
        self.exec_output: list[list[str]] = []
        self.exec_codes: list[int] = []
        self.read = b""
        self.volumes: set[str] = set()
        #: every ensure_volume call, in order
        self.ensured: list[str] = []
        #: every secrets volume asked for: (its files, the image)
        self.secrets: list[tuple[dict[str, bytes], str]] = []
        #: the secrets volume each step ran with
        self.secrets_used: list[str | None] = []
        self.aborted = 0
        #: files put into running containers (put_files), containers removed by name
        self.put: list[tuple[str, list[Any]]] = []
        self.removed_temp: list[str] = []
        self.pushed: list[str] = []
        #: the layer an export step run by run_export writes (a tar)
        self.exported = b""
        #: registry -> (user, password), what registry_login gives
        self.logins: dict[str, tuple[str, str]] = {}
        self.loaded: list[Mapping[str, bytes]] = []
        self.loaded_images: list[Bundle] = []
        self.archives: list[tuple[str, bytes]] = []
        #: what about() and disk_usage() say; registry -> credential helper
        self.about_info = EngineAbout(
            "unix:///fake.sock",
            "20.10",
            "1.41",
            "overlay2",
            "linux",
            "amd64",
            "/var/lib/docker",
            memory,
            50 * GIB,
        )
        self.usage = DiskUsage({}, {})
        self.helpers: dict[str, str] = {}

    # -- images
    def describe(self) -> str:
        return "fake://engine"

    def memory_total(self) -> int:
        return self.memory

    def image(self, ref: str) -> ImageInfo | None:
        return self.images.get(ref)

    def images_with_labels(
        self, labels: Mapping[str, str], where: Callable[[Mapping[str, str]], bool] | None = None
    ) -> list[ImageInfo]:
        self.filters.append(dict(labels))
        pool = [*self.candidates, *self.images.values()]
        seen: dict[str, ImageInfo] = {}
        for info in pool:
            if all(info.labels.get(k) == v for k, v in labels.items()) and (
                where is None or where(info.labels)
            ):
                seen.setdefault(info.id, info)
        return list(seen.values())

    def require_image(self, ref: str, role: str) -> ImageInfo:
        found = self.image(ref)
        if found is None:
            raise EngineError(f"{role} {ref!r} is not on the engine", fix="build it")
        return found

    def tag(self, image_id: str, ref: str) -> None:
        self.tags.append((image_id, ref))
        step = self.built.get(image_id)
        labels = dict(step.commit.labels) if step is not None and step.commit else {}
        known = self.images.get(image_id)
        info = known or dataclasses.replace(self.base, id=image_id, labels=labels)
        self.images[ref] = info
        self.images[image_id] = info

    def remove_image(self, image_id: str) -> None:
        self.removed.append(image_id)

    def history(self, ref: str) -> list[dict[str, Any]]:
        return []

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        info = self.require_image(ref, "image")
        return {"Id": info.id, "Config": {"Labels": dict(info.labels)}}

    @contextlib.contextmanager
    def image_reader(self, image: str) -> Iterator[Callable[[str], bytes | None]]:
        self.readers += 1

        def read(path: str) -> bytes | None:
            self.reads.append((image, path))
            return self.paths.get(path)

        yield read

    def save_image(self, ref: str, into: Path) -> None:
        self._next_failure()
        into.write_bytes(self.saved[ref])

    def append_layer(
        self,
        parent: str,
        layer: bytes | Path | str,
        spec: CommitSpec,
        created_by: str = "nox-warpdrive app layer",
        under: Sequence[tuple[str, Any]] = (),
    ) -> str:
        self._next_failure()
        self.appended.append((parent, spec, tuple(under)))

        def read(data: bytes | Path | str) -> bytes | str:
            return data.read_bytes() if isinstance(data, Path) else data

        self.appended_data.append((read(layer), [(what, read(d)) for what, d in under]))
        image_id = f"sha256:appended{len(self.appended)}"
        self.images[image_id] = dataclasses.replace(
            self.base, id=image_id, labels=dict(spec.labels)
        )
        return image_id

    # -- volumes
    def ensure_volume(self, name: str) -> bool:
        self.ensured.append(name)
        new = name not in self.volumes
        self.volumes.add(name)
        return new

    def volume_exists(self, name: str) -> bool:
        return name in self.volumes

    def remove_volume(self, name: str) -> None:
        self.volumes.discard(name)

    def read_volume_file(self, volume: str, path: str, image: str) -> bytes | None:
        return self.volume_files.get((volume, path))

    @contextlib.contextmanager
    def secrets_volume(self, files: Mapping[str, bytes], image: str) -> Iterator[str | None]:
        self.secrets.append((dict(files), image))
        yield "warpdrive-secrets-fake" if files else None

    # -- steps
    def _next_failure(self) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure

    def run(self, step: Step, out: Any, secrets_volume: str | None = None) -> RunResult:
        self.threads.append(threading.current_thread().name)
        self.steps.append(step)
        self.secrets_used.append(secrets_volume)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT), "the test never opened the gate"
        for line in self.output:
            out(line)
        self._next_failure()
        image_id = f"sha256:built{len(self.steps)}" if step.commit is not None else None
        if image_id is not None:
            self.built[image_id] = step
        return RunResult(self.exit_code, "\n".join(self.output), image_id, 7.5)

    def run_checked(self, step: Step, out: Any, secrets_volume: str | None = None) -> RunResult:
        result = self.run(step, out, secrets_volume)
        if result.exit_code != 0:
            raise BuildError(f"step {step.name} failed (exit code {result.exit_code})")
        return result

    def put_files(self, name: str, files: Any) -> None:
        self.put.append((name, list(files)))

    def remove_temp(self, name: str) -> None:
        self.removed_temp.append(name)
        if self.gate is not None:  # the run that waited at the gate ends
            self.gate.set()

    def run_export(
        self,
        step: Step,
        out: Any,
        into: Path,
        name: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> RunResult:
        """An export step: its layer is ``exported`` (a tar) written to ``into``, then
        ``then`` runs."""
        result = self.run(dataclasses.replace(step, commit=None), out)
        if result.exit_code == 0:
            into.write_bytes(self.exported)
            if then is not None:
                then()
        return result

    def exec_in(self, name: str, command: Sequence[str], out: Any, until: str | None = None) -> int:
        """Recorded in ``execs``; its output is ``exec_output`` (one list per call, in
        order: the first left), its exit code ``exec_codes``' next (0 when none left)."""
        self.execs.append((name, tuple(command)))
        for line in self.exec_output.pop(0) if self.exec_output else []:
            out(line)
        return self.exec_codes.pop(0) if self.exec_codes else 0

    def read_out(self, name: str, command: Sequence[str], into: Path, what: str, out: Any) -> int:
        """``read`` (a tar) written to ``into``."""
        self.execs.append((name, tuple(command)))
        into.write_bytes(self.read)
        return len(self.read)

    def run_probe(self, image: str, command: list[str], network: str | None = None) -> str:
        return ""

    def abort(self) -> None:
        self.aborted += 1
        if self.gate is not None:
            self.gate.set()

    def sweep(self) -> int:
        return 0

    # -- registry
    def pull(self, ref: str, out: Any = None, platform: str | None = None) -> ImageInfo | None:
        return self.images.get(ref)

    def push(self, ref: str, out: Any) -> str:
        self.pushed.append(ref)
        return "sha256:pushed"

    def registry_login(self, registry: str) -> tuple[str, str] | None:
        return self.logins.get(registry)

    def load_bundle(self, members: Mapping[str, bytes], what: str) -> None:
        self.loaded.append(dict(members))

    def load_image(self, bundle: Bundle, what: str) -> str:
        labels = json.loads(bundle.config)["config"].get("Labels") or {}
        self.loaded_images.append(bundle)
        self.images[bundle.image_id] = dataclasses.replace(
            self.base, id=bundle.image_id, labels=labels
        )
        return bundle.image_id

    @contextlib.contextmanager
    def archive_reader(
        self, image: str, volume: str | None = None, at: str = VOLUME_DIR
    ) -> Iterator[ArchiveRead]:
        self.readers += 1

        def read(path: str) -> Iterator[bytes] | None:
            self.reads.append((image, path))
            data = self.paths.get(path)
            return iter([data]) if data is not None else None

        yield read

    def run_with_archives(self, step: Step, archives: Sequence[ArchivePut], out: Any) -> RunResult:
        for directory, source in archives:
            stream = source()
            if stream is not None:
                data = stream.read() if hasattr(stream, "read") else b"".join(stream)
                self.archives.append((directory, bytes(data)))
        return self.run(step, out)

    # -- app containers
    def remove_app(self, name: str) -> None:
        pass

    def start_app(
        self,
        image: str,
        name: str,
        host_port: int,
        env: Mapping[str, str] | None = None,
        host_ip: str = "127.0.0.1",
    ) -> str:
        self.started_apps.append((image, name, host_port, dict(env or {}), host_ip))
        return "container"

    def container_state(self, container_id: str) -> tuple[bool, int | None]:
        return False, 0

    def published_port(self, container_id: str) -> int | None:
        return None

    def follow_logs(self, container_id: str, out: Any) -> None:
        pass

    def logs_tail(self, container_id: str, lines: int = 40) -> str:
        return ""

    def stop_app(self, container_id: str, timeout: int = 10) -> int | None:
        return 0

    # -- read only, for doctor
    def about(self) -> EngineAbout:
        return self.about_info

    def disk_usage(self) -> DiskUsage:
        return self.usage

    def login_helper(self, registry: str) -> str | None:
        return self.helpers.get(registry)
