"""A simulated engine for the wheelhouse transfer tests: the shared FakeEngine with
images made of real layers (tars in a directory, applied in order), volumes and a
registry on disk, and the import step run for real: runtime/build_wheels.py's
``import_main`` in this process, on the simulated volume. What a test checks is then
what the code under test did to files, not which calls it made."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from fake_engine import FakeEngine

from nox_warpdrive.assembly import Bundle
from nox_warpdrive.engine import ImageInfo, RunResult
from nox_warpdrive.errors import EngineError
from nox_warpdrive.plan import Step
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.runtime import common, wheel_import

KEY = PlatformKey("cp311", "cp311", "linux_x86_64", "glibc", "2.36", "debian", "12", "3.11.2")
BUILDER = ImageInfo("sha256:builder", (), {}, 1, 1, "")


def wheel(name: str, content: bytes | None = None) -> tuple[str, bytes]:
    """A wheel file name and some bytes for it."""
    return f"{name}-1.0-py3-none-any.whl", content or f"wheel {name}".encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_of(root: Path) -> bytes:
    """``root`` as ``get_archive`` gives it: entries named from its basename."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=root.name)
    return buf.getvalue()


class SimEngine(FakeEngine):
    """``root``: where images, layers, volumes, containers and the registry live.
    ``unreachable``: pulls and pushes fail as an unreachable registry does."""

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(images={"builder": BUILDER, BUILDER.id: BUILDER}, **kwargs)
        self.root = root
        self.layers: dict[str, Path] = {}
        self.image_layers: dict[str, list[str]] = {BUILDER.id: []}
        self.configs: dict[str, dict[str, Any]] = {}
        self.registry: dict[str, str] = {}
        self.unreachable = False
        self.containers = 0
        self.sent: list[tuple[str, int]] = []

    # -- images made of layers
    def _fs(self, image: str) -> Path:
        info = self.images[image] if image in self.images else self.images[f"sha256:{image}"]
        fs = self.root / "fs" / info.id[7:19]
        if not fs.exists():
            fs.mkdir(parents=True)
            for diff in self.image_layers.get(info.id, []):
                with tarfile.open(self.layers[diff]) as tar:
                    tar.extractall(fs, filter="tar")
        return fs

    def load_image(self, bundle: Bundle, what: str) -> str:
        config = json.loads(bundle.config)
        diffs = config["rootfs"]["diff_ids"]
        for _, data in bundle.carried:
            raw = data.read_bytes() if isinstance(data, Path) else data
            stored = self.root / "layers" / sha(raw)
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_bytes(raw)
            self.layers["sha256:" + sha(raw)] = stored
        assert all(d in self.layers for d in diffs), "a layer the engine does not have"
        self.image_layers[bundle.image_id] = list(diffs)
        self.configs[bundle.image_id] = config
        labels = config["config"].get("Labels") or {}
        self.images[bundle.image_id] = ImageInfo(
            bundle.image_id, (), labels, 0, len(diffs), "", tuple(diffs)
        )
        self.loaded_images.append(bundle)
        return bundle.image_id

    def inspect_raw(self, ref: str) -> dict[str, Any]:
        info = self.require_image(ref, "image")
        config = self.configs.get(info.id, {})
        return {
            "Id": info.id,
            "Architecture": "amd64",
            "Os": "linux",
            "Config": config.get("config") or {"Labels": dict(info.labels)},
            "RootFS": {"Layers": list(info.diff_ids)},
        }

    def tag(self, image_id: str, ref: str) -> None:
        self.tags.append((image_id, ref))
        self.images[ref] = self.images[image_id]

    # -- the registry
    def pull(self, ref: str, out: Any = None) -> ImageInfo | None:
        if self.unreachable:
            raise EngineError(
                f"cannot pull {ref}: connection refused", fix="check that the registry runs"
            )
        image_id = self.registry.get(ref)
        if image_id is None:
            return None
        self.images[ref] = self.images[image_id]
        return self.images[image_id]

    def push(self, ref: str, out: Any) -> str:
        if self.unreachable:
            raise EngineError(f"pushing {ref} failed", fix="check that the registry runs")
        self.pushed.append(ref)
        self.registry[ref] = self.images[ref].id
        out(f"warpdrive: pushed {ref}")
        return "sha256:pushed"

    # -- containers and volumes
    def volume_dir(self, volume: str) -> Path:
        path = self.root / "volumes" / volume
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _resolve(self, image: str, volume: str | None, at: str, path: str) -> Path:
        if volume is not None and (path == at or path.startswith(at + "/")):
            return self.volume_dir(volume) / path[len(at) :].lstrip("/")
        return self._fs(image) / path.lstrip("/")

    @contextlib.contextmanager
    def archive_reader(
        self, image: str, volume: str | None = None, at: str = "/warpdrive"
    ) -> Iterator[Callable[[str], Iterator[bytes] | None]]:
        self.readers += 1

        def read(path: str) -> Iterator[bytes] | None:
            self.reads.append((image, path))
            found = self._resolve(image, volume, at, path)
            if not found.exists():
                return None
            data = tar_of(found)
            return iter([data[i : i + 1000] for i in range(0, len(data), 1000)])

        yield read

    @contextlib.contextmanager
    def image_reader(self, image: str) -> Iterator[Callable[[str], bytes | None]]:
        with self.archive_reader(image) as read:

            def whole(path: str) -> bytes | None:
                chunks = read(path)
                return b"".join(chunks) if chunks is not None else None

            yield whole

    def read_volume_file(self, volume: str, path: str, image: str) -> bytes | None:
        found = self.volume_dir(volume) / path
        return found.read_bytes() if found.is_file() else None

    def volume_exists(self, name: str) -> bool:
        return (self.root / "volumes" / name).exists()

    def run_with_archives(
        self,
        step: Step,
        archives: Sequence[tuple[str, Callable[[], Iterable[bytes] | IO[bytes] | None]]],
        out: Any,
    ) -> RunResult:
        """Put the files where the container would have them, then run the import step's
        script in this process, with its paths moved into the simulation."""
        self.containers += 1
        box = self.root / "containers" / str(self.containers)
        (box / "tmp").mkdir(parents=True)  # what every image has
        for directory, data in step.files:
            self._extract(box, directory, io.BytesIO(data))
        for directory, source in archives:
            stream = source()
            if stream is None:
                continue
            raw = stream.read() if hasattr(stream, "read") else b"".join(stream)
            self.sent.append((directory, len(raw)))
            self._extract(box, directory, io.BytesIO(bytes(raw)))
        self.steps.append(step)
        plan = json.loads((box / "tmp/warpdrive-build/plan.json").read_bytes())
        volume = step.mounts[0].source
        plan.update(
            volume_dir=str(self.volume_dir(volume)), incoming=str(box / plan["incoming"][1:])
        )
        lines: list[str] = []
        with contextlib.redirect_stdout(_Lines(lines)):
            code = wheel_import.import_main(plan)
        for line in lines:
            out(line)
        shutil.rmtree(box, ignore_errors=True)
        return RunResult(code, "\n".join(lines[-20:]), None, 0.1)

    @staticmethod
    def _extract(box: Path, directory: str, fh: IO[bytes]) -> None:
        dest = box / directory.lstrip("/")
        assert dest.is_dir(), f"put_archive needs {directory} to exist"
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(dest, filter="tar")


class _Lines(io.StringIO):
    """stdout as lines, for the import step's report."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def write(self, text: str) -> int:
        self.lines.extend(x for x in text.splitlines() if x)
        return len(text)


def resolved_entry(filename: str, data: bytes) -> dict[str, Any]:
    """A resolved wheel as the builder records it in a requirement set."""
    name, version = common.wheel_name_version(filename)
    return {
        "file": filename,
        "name": name,
        "version": version,
        "sha256": sha(data),
        "size": len(data),
    }


def put_volume(
    engine: SimEngine,
    volume: str,
    wheels: Mapping[str, bytes],
    sets: Mapping[str, Sequence[str]] | None = None,
    key: PlatformKey = KEY,
) -> dict[str, Any]:
    """Write a wheelhouse into a simulated volume, as the builder would leave it; its
    manifest."""
    root = engine.volume_dir(volume) / key.slug
    (root / "wheels").mkdir(parents=True, exist_ok=True)
    for name, data in wheels.items():
        (root / "wheels" / name).write_bytes(data)
    manifest = {
        "format": 1,
        "platform_key": json.loads(key.to_json()),
        "wheels": {n: sha(d) for n, d in wheels.items()},
        "stats": {n: common.file_stat(str(root / "wheels" / n)) for n in wheels},
        "sets": {
            digest: {
                "resolved": [resolved_entry(f, wheels[f]) for f in files],
                "built_at": f"2026-01-0{i + 1}T00:00:00Z",
            }
            for i, (digest, files) in enumerate((sets or {}).items())
        },
        "tools": {"uv": {"path": "tools/uv-0.5/uv", "version": "0.5"}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def volume_manifest(engine: SimEngine, volume: str, key: PlatformKey = KEY) -> dict[str, Any]:
    path = engine.volume_dir(volume) / key.slug / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wheels_in(engine: SimEngine, volume: str, key: PlatformKey = KEY) -> dict[str, bytes]:
    root = engine.volume_dir(volume) / key.slug / "wheels"
    if not root.exists():
        return {}
    return {p.name: p.read_bytes() for p in root.iterdir() if p.name.endswith(".whl")}


def image_files(engine: SimEngine, ref: str) -> dict[str, bytes]:
    """The files of an image (its layers applied), by path."""
    fs = engine._fs(ref)
    return {str(p.relative_to(fs)): p.read_bytes() for p in fs.rglob("*") if p.is_file()}


def layer_files(engine: SimEngine, diff_id: str) -> list[str]:
    with tarfile.open(engine.layers[diff_id]) as tar:
        return sorted(m.name for m in tar if m.isfile())
