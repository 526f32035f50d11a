"""Moving a wheelhouse between engines: what both carriers (a wheelhouse image in a
registry, wheelhouse/image.py; a CI cache directory, wheelhouse/directory.py) share.

- What leaves a volume: the wheels of one platform key and a manifest cut down to what
  describes them (``shipped_manifest``): the wheels' sha256s, the requirement sets, what
  each built wheel was built from. Never pip's or uv's caches, tools, stats or anything
  from the secrets volume.
- What enters a volume: nothing the builder has not checked. The import step runs the
  builder's own script (runtime/wheel_import.py, ``import_main``) in the builder image:
  the other manifest and the wheels this volume lacks are streamed into the container's
  own filesystem (never the volume: an interrupted import leaves nothing there), each
  wheel is hashed as it is copied into the run's staging directory, and only a wheel
  whose sha256 is the one its manifest records is published (atomically, as every
  publish) and recorded, under the wheelhouse lock. The volume's own wheels and
  requirement sets always win.
- Streams, never whole files: wheels move as tar streams between containers
  (``get_archive`` into ``put_archive``) or through files on the host.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from .. import runtime
from ..engine import Engine, Output
from ..engine.base import ArchivePut, ArchiveRead
from ..errors import BuildError, disk_message
from ..plan import HELPERS_DIR, VOLUME_DIR, Step, VolumeMount
from ..platform import PlatformKey
from ..runtime import protocol
from ..runtime.publish import MAX_SETS
from ..runtime.wheel_import import set_fits
from ..tars import ChunkFile, dir_tar, tar_files
from .wheels import wheels_from_manifest

#: where the import step receives what it imports (the container's own filesystem)
INCOMING = "/tmp/warpdrive-incoming"

#: more wanted wheels than this: read the whole wheels directory in one stream
PER_FILE_MAX = 24


@dataclass(frozen=True)
class Wheelhouse:
    """One platform key's wheelhouse in one volume, and the builder image that reads and
    writes it (the import step runs there; it mounts the volume for reads)."""

    volume: str
    key: PlatformKey
    image: str
    python: str = "python3"

    @property
    def wheels_dir(self) -> str:
        return f"{VOLUME_DIR}/{self.key.slug}/wheels"


def wheels_of(manifest: Mapping[str, Any]) -> dict[str, str]:
    """file -> sha256 of a manifest's wheels (only well-formed entries)."""
    wheels = manifest.get("wheels")
    if not isinstance(wheels, dict):
        return {}
    return {f: s for f, s in wheels.items() if isinstance(f, str) and isinstance(s, str)}


def _table(manifest: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key)
    return value if isinstance(value, dict) else {}


def _shipped_set(entry: Any) -> dict[str, Any] | None:
    """A requirement set as it is shipped: its wheels' manifest entries (only the
    fields a Wheel has) and when it was built; None when an entry is not well formed."""
    resolved = wheels_from_manifest(entry.get("resolved") if isinstance(entry, dict) else None)
    if resolved is None:
        return None
    return {
        "resolved": [w.to_manifest() for w in resolved],
        "built_at": str(entry.get("built_at") or ""),
    }


def shipped_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What of a volume's manifest leaves the engine (a wheelhouse image, a CI cache): the
    wheels' sha256s, the requirement sets whose wheels are all there, and what each
    wheel was built from. Only named fields are copied, so nothing else (paths of tools,
    stats of this volume's files) can leak into a layer or a cache."""
    wheels = wheels_of(manifest)
    shipped_sets = {}
    for digest, entry in _table(manifest, "sets").items():
        shipped = _shipped_set(entry)
        if isinstance(digest, str) and shipped is not None and set_fits(shipped, wheels):
            shipped_sets[digest] = shipped
    built = _table(manifest, "built_from")
    return {
        "format": 1,
        "platform_key": manifest.get("platform_key") or {},
        "wheels": wheels,
        "sets": shipped_sets,
        "built_from": {f: s for f, s in built.items() if f in wheels and isinstance(s, str)},
    }


def merge_shipped(older: Mapping[str, Any], newer: Mapping[str, Any]) -> dict[str, Any]:
    """Two shipped manifests of one platform key as one (a push on top of an earlier
    wheelhouse image): ``newer`` wins for a wheel of the same name; its sets are kept and
    the most recent of ``older``'s that still fit fill the room MAX_SETS leaves."""
    wheels = {**wheels_of(older), **wheels_of(newer)}
    sets = dict(newer.get("sets") or {})
    room = max(MAX_SETS, len(sets)) - len(sets)
    previous = sorted((older.get("sets") or {}).items(), key=lambda kv: kv[1]["built_at"])
    for digest, entry in reversed(previous):
        if room > 0 and digest not in sets and set_fits(entry, wheels):
            sets[digest] = entry
            room -= 1
    built = {**(older.get("built_from") or {}), **(newer.get("built_from") or {})}
    return {
        "format": 1,
        "platform_key": newer.get("platform_key") or older.get("platform_key") or {},
        "wheels": wheels,
        "sets": sets,
        "built_from": {f: s for f, s in built.items() if f in wheels},
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=1, sort_keys=True).encode()


def same_platform(manifest: Mapping[str, Any], key: PlatformKey) -> bool:
    """Whether a manifest was written for this platform key."""
    data = manifest.get("platform_key")
    if not isinstance(data, dict):
        return False
    try:
        return PlatformKey.from_dict(data).identity == key.identity
    except TypeError:
        return False


def describe_platform(manifest: Mapping[str, Any]) -> str:
    data = manifest.get("platform_key")
    try:
        return PlatformKey.from_dict(data).slug if isinstance(data, dict) else "an unknown platform"
    except TypeError:
        return "an unknown platform"


# -- the import step ------------------------------------------------------------------


def import_step(wh: Wheelhouse, source: str) -> Step:
    """The builder container that checks and publishes an import (runtime/build_wheels.py,
    import mode): no network, no secrets, the volume mounted."""
    plan = {
        "mode": "import",
        "key": wh.key.slug,
        "volume_dir": VOLUME_DIR,
        "incoming": INCOMING,
        "source": source,
        "platform_key": json.loads(wh.key.to_json()),
    }
    helpers = tar_files(
        {
            "warpdrive-build/plan.json": json.dumps(plan, sort_keys=True).encode(),
            **runtime.files(runtime.BUILDER, "warpdrive-build/"),
        }
    )
    name = INCOMING.rsplit("/", 1)[-1]
    incoming = dir_tar([(name, 0, 0o755), (f"{name}/wheels", 0, 0o755)])
    return Step(
        name="wheelhouse-import",
        image=wh.image,
        command=(wh.python, f"{HELPERS_DIR}/build_wheels.py"),
        files=(("/tmp", helpers), ("/tmp", incoming)),
        mounts=(VolumeMount(wh.volume, VOLUME_DIR),),
        network="none",
    )


@dataclass(frozen=True)
class Imported:
    """What an import step did: the wheels it published, the ones it refused (file,
    sha256 got, sha256 expected), their bytes, and the volume's manifest as it left it.
    ``error``: why nothing was imported ("" when it ran)."""

    added: tuple[str, ...]
    refused: tuple[tuple[str, str, str], ...]
    size: int
    manifest: Mapping[str, Any]
    error: str = ""


def run_import(
    engine: Engine, wh: Wheelhouse, archives: list[ArchivePut], source: str, out: Output
) -> Imported:
    """Stream ``archives`` into the import step and run it; its report. The step's own
    lines (a refused wheel's warning) are shown."""
    lines: list[str] = []

    def tee(line: str) -> None:
        lines.append(line)
        if (protocol.parse(line) or ("", None))[0] not in ("imported", "failure"):
            out(line)

    result = engine.run_with_archives(import_step(wh, source), archives, tee)
    report = _report(lines)
    failure = _report(lines, "failure") or {}
    if result.exit_code != 0 and failure.get("stage") == "disk":
        message, fix = disk_message(failure, wh.volume)
        raise BuildError(f"importing the wheelhouse from {source} failed: {message}", fix=fix)
    if result.exit_code != 0 or report is None:
        raise BuildError(
            f"importing the wheelhouse from {source} failed (exit code {result.exit_code}); "
            "its last lines:\n" + "\n".join("  | " + x for x in lines[-20:]),
            fix="nothing was published from it; run again, or without the import",
        )
    refused = tuple(
        (str(r[0]), str(r[1]), str(r[2])) for r in report.get("refused") or () if len(r) == 3
    )
    return Imported(
        added=tuple(str(f) for f in report.get("added") or ()),
        refused=refused,
        size=int(report.get("bytes") or 0),
        manifest=_table(report, "manifest"),
        error=str(report.get("error") or ""),
    )


def _report(lines: list[str], kind: str = "imported") -> dict[str, Any] | None:
    data = protocol.last(lines, kind)
    return data if isinstance(data, dict) else None


def import_summary(what: str, imported: Imported, sent: int, known: int, seconds: float) -> str:
    """One line: what an import brought, and how long it took."""
    text = (
        f"warpdrive: {what}: {len(imported.added)} wheels imported "
        f"({imported.size / 1e6:.1f} MB), {known} already here"
    )
    if imported.refused:
        text += f", {len(imported.refused)} refused (sha256 mismatch: fetched or built again)"
    elif sent > len(imported.added):
        text += f", {sent - len(imported.added)} kept from this volume"
    return text + f" ({seconds:.1f} s)"


# -- reading wheels out of a container -------------------------------------------------


class Checked(io.RawIOBase):
    """A wheel's bytes as they are read, hashed on the way; reading its last byte raises
    BuildError when they are not what the manifest says (a damaged file is never
    carried whole to a registry or a cache)."""

    def __init__(self, raw: IO[bytes], name: str, size: int, sha256: str, where: str) -> None:
        super().__init__()
        self._raw, self._left = raw, size
        self._name, self._sha, self._where = name, sha256, where
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(min(len(buffer), max(self._left, 1)))
        self._hash.update(data)
        self._left -= len(data)
        if not data or self._left <= 0:
            self._check()
        buffer[: len(data)] = data
        return len(data)

    def _check(self) -> None:
        got = self._hash.hexdigest()
        if self._left != 0 or got != self._sha:
            raise BuildError(
                f"wheel {self._name} in {self._where} does not match the manifest (sha256 "
                f"{got[:12]}..., the manifest says {self._sha[:12]}...); nothing was carried",
                fix="run `nox -s wheelhouse -- --verify` (it fetches or builds it again), "
                "then run this again",
            )


def stream_wheels(
    read: ArchiveRead, directory: str, wanted: Mapping[str, str], where: str
) -> Iterator[tuple[str, int, io.BufferedReader]]:
    """The ``wanted`` wheels (file -> sha256) of ``directory`` in a container, as (file,
    size, readable checked against its sha256), one at a time as they stream out: a few
    are read one by one, many as one stream of the whole directory. Each must be read
    to its end before the next is asked for. A wanted wheel that is not there is a
    BuildError."""
    names = sorted(wanted)
    paths = [directory] if len(names) > PER_FILE_MAX else [f"{directory}/{n}" for n in names]
    seen: set[str] = set()
    for path in paths:
        chunks = read(path)
        if chunks is None:
            continue
        reader = io.BufferedReader(ChunkFile(chunks), 1 << 20)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                raw = tar.extractfile(member) if member.isfile() else None
                if raw is None or name not in wanted or name in seen:
                    continue
                seen.add(name)
                checked = Checked(raw, name, member.size, wanted[name], where)
                yield name, member.size, io.BufferedReader(checked, 1 << 20)
    missing = sorted(set(names) - seen)
    if missing:
        raise BuildError(
            f"{len(missing)} wheels the manifest lists are missing from {where}: "
            + ", ".join(missing[:5]),
            fix="run `nox -s wheelhouse -- --verify` (it fetches or builds them again), "
            "then run this again",
        )
