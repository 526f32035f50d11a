"""The facts an SBOM and a provenance are made of, gathered while the image is built and
kept on the host: one record per deps key (the virtualenv's distributions: the wheels the
wheelhouse resolved, their sha256, the sdist a wheel compiled here came from, and each
one's license as its metadata gives it) and one per base image id (its Debian packages,
from the image's dpkg status).

Both keys name content that never changes (a deps key covers every wheel's hash, an
image id is the digest of its config), so a record is written once and then only read:
a code change reads nothing out of any image. Reading is done through a created, never
started, container (engine.image_reader), and only when a record is missing."""

from __future__ import annotations

import email.parser
import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine import Engine, ImageInfo
from ..errors import WarpdriveError
from ..layout import VENV
from ..platform import PlatformKey
from ..tars import archived_file
from ..wheelhouse.wheels import Wheel

#: bump when a record's shape changes: older ones are then gathered again
FORMAT = "1"
#: where dpkg keeps what is installed (a distroless image has status.d/ instead: not read)
DPKG_STATUS = "/var/lib/dpkg/status"
#: at most this many records of each kind are kept (oldest first out)
KEEP = 64
#: at most this many wheels' (name, license) are kept (a few apps' worth)
KEEP_DISTS = 4096
#: metadata reads sent to the engine at once
READERS = 4


@dataclass(frozen=True)
class Distribution:
    """One distribution of the image's virtualenv."""

    name: str
    version: str
    #: the wheel file it was installed from, and that file's sha256
    wheel: str
    sha256: str
    #: SPDX expression or license name from the metadata ("" when it says none)
    license: str = ""
    #: the sdist's sha256 when the wheel was compiled in the builder from a known sdist;
    #: "project:<key>" for the app's own project built from its source
    built_from: str = ""

    @property
    def compiled_here(self) -> bool:
        """Built in the builder image: the wheelhouse says so, or its platform tag is one
        no index serves (``linux_x86_64``: a wheel built on this kind of machine)."""
        return bool(self.built_from) or "-linux_" in self.wheel


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str
    #: the source package, when dpkg names one other than the package itself
    source: str = ""


@dataclass(frozen=True)
class BaseRecord:
    """The base image: the reference it was configured by, its id, the registry digests
    the engine knows for it, and its Debian packages."""

    ref: str
    image_id: str
    repo_digests: tuple[str, ...]
    packages: tuple[DebPackage, ...]
    #: the Debian release (os-release VERSION_ID), for purl qualifiers ("" unknown)
    distro_version: str = ""


# --------------------------------------------------------------------------- host cache


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nox-warpdrive" / f"supply-{FORMAT}"


def _path(kind: str, key: str) -> Path:
    return cache_dir() / f"{kind}-{key.replace(':', '_')}.json"


def _load(kind: str, key: str) -> Any:
    try:
        return json.loads(_path(kind, key).read_text())
    except (OSError, ValueError):
        return None


def _store(kind: str, key: str, data: Any) -> None:
    """Written atomically; a cache that cannot be written only costs a read next time."""
    path = _path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, sort_keys=True))
        tmp.replace(path)
        records = sorted(path.parent.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime)
        for old in records[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def has_deps(deps_key: str) -> bool:
    return _path("deps", deps_key).is_file()


def has_base(image_id: str) -> bool:
    return _path("base", image_id).is_file()


def load_deps(deps_key: str) -> tuple[Distribution, ...] | None:
    data = _load("deps", deps_key)
    if not isinstance(data, list):
        return None
    try:
        return tuple(Distribution(**d) for d in data)
    except TypeError:
        return None


def load_base(image_id: str) -> BaseRecord | None:
    data = _load("base", image_id)
    if not isinstance(data, dict):
        return None
    try:
        packages = tuple(DebPackage(**p) for p in data.pop("packages"))
        digests = tuple(data.pop("repo_digests"))
        return BaseRecord(repo_digests=digests, packages=packages, **data)
    except (TypeError, KeyError):
        return None


# --------------------------------------------------------------------------- gathering


def record_deps(
    engine: Engine,
    deps_key: str,
    image: str,
    wheels: Iterable[Wheel],
    built_from: Mapping[str, Any],
    python_version: str,
) -> tuple[Distribution, ...]:
    """The distributions of a deps layer (``image``: one that holds it), their licenses
    read from the installed metadata; stored under ``deps_key``. A wheel's metadata is
    read once per wheel (by its sha256, kept on the host): a package added reads its own
    METADATA alone, not every other one again."""
    wheels = sorted(wheels, key=lambda w: w.filename)
    known = _load_dists()
    missing = [w for w in wheels if w.sha256 not in known]
    if missing:
        read_now = _read_metadata(engine, image, missing, python_version)
        known.update(read_now)
        if read_now:
            _store_dists(known)
    dists = tuple(
        Distribution(
            # the project's name as it spells it (a wheel's file name escapes it)
            name=known.get(w.sha256, ("", ""))[0] or w.name,
            version=w.version,
            wheel=w.filename,
            sha256=w.sha256,
            license=known.get(w.sha256, ("", ""))[1],
            built_from=str(built_from.get(w.filename) or ""),
        )
        for w in wheels
    )
    store_deps(deps_key, dists)
    return dists


def _read_metadata(
    engine: Engine, image: str, wheels: list[Wheel], python_version: str
) -> dict[str, tuple[str, str]]:
    """{sha256: (name, license)} of the wheels whose installed METADATA could be read
    from ``image``: through one created container, a few reads at a time (each is a
    round trip to the engine; a cold deps layer has dozens)."""
    paths = {w.sha256: _metadata_path(w, python_version) for w in wheels}
    with engine.image_reader(image) as read, ThreadPoolExecutor(READERS) as pool:
        found = dict(
            zip(paths, pool.map(lambda p: _metadata(read, p), paths.values()), strict=True)
        )
    return {sha: meta for sha, meta in found.items() if meta is not None}


def metadata_paths(wheels: Iterable[Wheel], python_version: str) -> list[str]:
    """Where the wheels' METADATA files are in the virtualenv (read elsewhere, then
    given to ``remember_metadata``)."""
    return [_metadata_path(w, python_version) for w in wheels]


def remember_metadata(
    wheels: Iterable[Wheel], python_version: str, files: Mapping[str, bytes]
) -> None:
    """METADATA files read elsewhere (path -> bytes: build/early_static.py read them out
    of the deps step's container), kept as ``record_deps`` would have read them from the
    image: it then reads none."""
    found = {}
    for wheel in wheels:
        data = files.get(_metadata_path(wheel, python_version))
        if data:
            found[wheel.sha256] = _name_license(data)
    if found:
        _store_dists({**_load_dists(), **found})


def _load_dists() -> dict[str, tuple[str, str]]:
    """{wheel sha256: (name, license)} kept from earlier reads."""
    data = _load("dists", "by-sha256")
    if not isinstance(data, dict):
        return {}
    return {
        str(sha): (str(v[0]), str(v[1]))
        for sha, v in data.items()
        if isinstance(v, list) and len(v) == 2
    }


def _store_dists(known: Mapping[str, tuple[str, str]]) -> None:
    """Keep the newest KEEP_DISTS entries (a dict keeps the order they were added in)."""
    items = list(known.items())[-KEEP_DISTS:]
    _store("dists", "by-sha256", {sha: list(meta) for sha, meta in items})


def store_deps(deps_key: str, dists: Iterable[Distribution]) -> None:
    """Keep a deps key's distributions (only a complete list: every one with its hash)."""
    _store("deps", deps_key, [asdict(d) for d in dists])


def record_base(engine: Engine, ref: str, base: ImageInfo) -> BaseRecord:
    """The base image's Debian packages (none when it has no dpkg status), stored under
    its id."""
    with engine.image_reader(base.id) as read:
        status = archived_file(read(DPKG_STATUS))
        os_release = archived_file(read("/etc/os-release")) or archived_file(
            read("/usr/lib/os-release")
        )
    raw = engine.inspect_raw(base.id)
    digests = tuple(sorted(str(d) for d in raw.get("RepoDigests") or ()))
    record = BaseRecord(
        ref=ref,
        image_id=base.id,
        repo_digests=digests,
        packages=parse_dpkg_status(status.decode("utf-8", "replace") if status else ""),
        distro_version=_os_release(os_release or b"").get("VERSION_ID", ""),
    )
    data = asdict(record)
    _store("base", base.id, data)
    return record


def ensure_base(engine: Engine, ref: str, base: ImageInfo) -> BaseRecord:
    return load_base(base.id) or record_base(engine, ref, base)


def parse_dpkg_status(text: str) -> tuple[DebPackage, ...]:
    """The installed packages of a dpkg status file (``Status: install ok installed``),
    sorted by name and architecture."""
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # a continuation line of a long field
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if not fields.get("package") or not fields.get("status", "").endswith(" installed"):
            continue
        source = fields.get("source", "").split(" ", 1)[0]
        found.append(
            DebPackage(
                name=fields["package"],
                version=fields.get("version", ""),
                arch=fields.get("architecture", ""),
                source="" if source == fields["package"] else source,
            )
        )
    return tuple(sorted(found, key=lambda p: (p.name, p.arch)))


def license_of(metadata: bytes) -> str:
    """The license a distribution's core metadata declares: ``License-Expression`` (PEP
    639), else a one-line ``License`` field, else the OSI classifiers' names."""
    msg = email.parser.BytesHeaderParser().parsebytes(metadata)
    expression = (msg.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (msg.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 100 and field.upper() != "UNKNOWN":
        return field
    classifiers = [
        c.rsplit("::", 1)[-1].strip()
        for c in msg.get_all("Classifier") or ()
        if c.startswith("License ::") and c.count("::") >= 2
    ]
    return " AND ".join(dict.fromkeys(classifiers)) if classifiers else ""


def _metadata_path(wheel: Wheel, python_version: str) -> str:
    """Where a wheel's METADATA is in the virtualenv: its .dist-info directory is named
    as the wheel file is (name and version, escaped alike)."""
    stem = "-".join(wheel.filename.split("-")[:2])
    short = ".".join(python_version.split(".")[:2]) or "3"
    return f"{VENV}/lib/python{short}/site-packages/{stem}.dist-info/METADATA"


def _metadata(read: Callable[[str], bytes | None], path: str) -> tuple[str, str] | None:
    """(Name, license) of an installed distribution's METADATA; None when unread."""
    try:
        data = archived_file(read(path))
    except WarpdriveError:
        return None
    return _name_license(data) if data else None


def _name_license(metadata: bytes) -> tuple[str, str]:
    name = email.parser.BytesHeaderParser().parsebytes(metadata).get("Name") or ""
    return str(name).strip(), license_of(metadata)


def _os_release(data: bytes) -> dict[str, str]:
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def record_supply(
    engine: Engine,
    base_ref: str,
    base: ImageInfo,
    deps_key: str,
    deps_image: str,
    wheels: Iterable[Wheel] | None,
    built_from: Mapping[str, Any],
    pkey: PlatformKey,
) -> None:
    """During a build: the records this image's SBOM needs that the host lacks (read once
    per base image and once per deps key; a code change only finds both files). ``wheels``
    None: the build did not read the wheelhouse (the deps layer is the current image's),
    so the deps record is gathered when an SBOM is asked for, if it is missing then. A
    failure only costs that later read: the build goes on."""
    try:
        if not has_base(base.id):
            record_base(engine, base_ref, base)
        if wheels is not None and deps_key and not has_deps(deps_key):
            record_deps(engine, deps_key, deps_image, wheels, built_from, pkey.python_version)
    except WarpdriveError:
        pass
