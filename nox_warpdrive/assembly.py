"""Image assembly as pure functions: the config a new layer's image gets, its history,
and the `docker load` bundle that carries it. No engine here: the engine only loads,
commits and tags; everything it is handed is computed (and unit-tested) here. The one
state kept: the sha256 of layer files the engine hashed as it wrote them.

One image config rule for both ways an image is made (``commit`` of a container and
``load`` of a bundle): :func:`config_changes` is what ``spec`` changes, used as the
commit's ``conf`` and merged into the parent's config for a bundle, so the two cannot
drift.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .plan import CommitSpec


def config_changes(spec: CommitSpec) -> dict[str, Any]:
    """What ``spec`` sets in an image config, in the Engine API's field names."""
    conf: dict[str, Any] = {}
    if spec.env:
        conf["Env"] = [f"{k}={v}" for k, v in spec.env]
    if spec.cmd is not None:
        conf["Cmd"] = list(spec.cmd)
        conf["Entrypoint"] = None  # the command is the whole command line
    if spec.user is not None:
        conf["User"] = spec.user
    if spec.workdir is not None:
        conf["WorkingDir"] = spec.workdir
    if spec.exposed_ports:
        conf["ExposedPorts"] = {p: {} for p in spec.exposed_ports}
    if spec.labels:
        conf["Labels"] = dict(spec.labels)
    return conf


def merge_config(parent: Mapping[str, Any], spec: CommitSpec) -> dict[str, Any]:
    """The parent image's config with ``spec`` applied as the engine's commit applies it:
    variables by name (a new value replaces one), ports and labels added, the rest set."""
    cfg = dict(parent)
    changes = config_changes(spec)
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
    env.update(dict(spec.env))
    cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    cfg["Entrypoint"] = None
    for key in ("Cmd", "User", "WorkingDir"):
        if key in changes:
            cfg[key] = changes[key]
    if spec.exposed_ports:
        cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **changes["ExposedPorts"]}
    cfg["Labels"] = {**(cfg.get("Labels") or {}), **spec.labels}
    for key in ("Hostname", "Domainname", "Image"):
        cfg.pop(key, None)
    return cfg


def config_mismatch(wanted: Mapping[str, Any], got: Mapping[str, Any]) -> str | None:
    """The first field of an image config (``got``, as the engine shows it) that is not
    what the plan made it (``wanted``: :func:`config_changes` or :func:`merge_config`),
    as "Field: wanted X, the image has Y"; None when every planned field is there.
    Variables, ports and labels may have company (the base image's, an engine's own),
    never a different value; an engine that dropped or changed one (Podman 4.3 ignores a
    commit's config, containers/podman#13770) is caught here, not by a user's `run`."""
    for key in ("User", "WorkingDir", "Cmd", "Entrypoint"):  # [], "" and None alike
        if key in wanted and _said(key, wanted[key]) != _said(key, got.get(key)):
            return f"{key}: wanted {wanted[key]!r}, the image has {got.get(key)!r}"
    env = dict(e.split("=", 1) for e in got.get("Env") or () if "=" in e)
    for item in wanted.get("Env") or ():
        name, _, value = str(item).partition("=")
        if env.get(name) != value:
            return f"Env {name}: wanted {value!r}, the image has {env.get(name)!r}"
    ports = got.get("ExposedPorts") or {}
    for port in wanted.get("ExposedPorts") or {}:
        if port not in ports:
            return f"ExposedPorts: wanted {port}, the image exposes {sorted(ports)}"
    labels = got.get("Labels") or {}
    for name, value in (wanted.get("Labels") or {}).items():
        if labels.get(name) != value:
            return f"Labels {name}: wanted {value!r}, the image has {labels.get(name)!r}"
    return None


def _said(key: str, value: Any) -> Any:
    """A config value as it acts: empty is unset, and no working directory is / (what
    Podman writes for the one Docker leaves empty)."""
    if key == "WorkingDir":
        return value or "/"
    return value or None


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


#: the time of what does not come from the app's commit (a deps layer's history row, the
#: files of a deps layer): jib's 1970-01-01T00:00:01Z, earlier than any SOURCE_DATE_EPOCH
#: (reproducible-builds.org: no time later than it), so a deps image is the same whichever
#: commit first built it, and is shared by the next ones
FIXED_EPOCH = 1
FIXED_CREATED = timestamp(FIXED_EPOCH)


def history(
    parent_rows: Sequence[Mapping[str, Any]],
    parent_layers: int,
    added: Sequence[str],
    created: str,
    comment: str = "",
) -> list[dict[str, Any]]:
    """The image history: the parent's rows (the engine lists them newest first), then
    one row per added layer (``added``: their created_by, the last one with
    ``comment``). When the parent's rows cannot be matched to its layers the parent's
    part is left out rather than made up."""
    rows: list[dict[str, Any]] = []
    for row in reversed(parent_rows):
        entry: dict[str, Any] = {
            "created": timestamp(float(row.get("Created") or 0)),
            "created_by": row.get("CreatedBy") or "",
        }
        if row.get("Comment"):
            entry["comment"] = row["Comment"]
        if not row.get("Size"):
            entry["empty_layer"] = True
        rows.append(entry)
    if sum(1 for h in rows if not h.get("empty_layer")) != parent_layers:
        rows = []
        added = added[-1:]
    for i, what in enumerate(added):
        entry = {"created": created, "created_by": what}
        if i == len(added) - 1 and comment:
            entry["comment"] = comment
        rows.append(entry)
    return rows


def sha256_of(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    known = _KNOWN_DIGESTS.get(_file_identity(data))
    if known is not None:
        return known
    h = hashlib.sha256()
    with data.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: the sha256 of files hashed as they were written (a layer read out of a container:
#: hashing its 180 MB again took 0.12 s of a cold build), by what identifies the file's
#: content: a file changed or replaced since has another size, mtime or inode
_KNOWN_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _file_identity(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def written_with_digest(path: Path, digest: str) -> None:
    """``path`` was just written, and its bytes' sha256 is ``digest`` (computed as they
    went by): ``sha256_of`` gives it without reading the file again."""
    if len(_KNOWN_DIGESTS) > 64:
        _KNOWN_DIGESTS.clear()
    _KNOWN_DIGESTS[_file_identity(path)] = digest


#: a layer of a new image: carried (its tar, in memory or in a file) or named by its
#: diff ID (the engine has it, at that place on the same layers below)
LayerData = bytes | Path | str


@dataclass(frozen=True)
class Bundle:
    """An image tarball for `docker load`: the parent's layers and any layer the engine
    has named by diff ID (never read, never carried), the others carried."""

    image_id: str
    config: bytes
    manifest: bytes
    carried: tuple[tuple[str, bytes | Path], ...]

    def members(self) -> list[tuple[str, bytes | Path | None]]:
        """(name, bytes / file / None for a directory), in the order they are written."""
        out: list[tuple[str, bytes | Path | None]] = []
        made: set[str] = set()
        files: list[tuple[str, bytes | Path]] = [
            ("manifest.json", self.manifest),
            (self.image_id[7:] + ".json", self.config),
            *self.carried,
        ]
        for name, data in files:
            directory = name.rpartition("/")[0]
            if directory and directory not in made:
                made.add(directory)
                out.append((directory, None))
            out.append((name, data))
        return out

    def _headers(self) -> Iterator[tuple[bytes, bytes | Path | None, int]]:
        for name, data in self.members():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                size = 0
            else:
                size = len(data) if isinstance(data, bytes) else data.stat().st_size
                info.size = size
            yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), data, size

    def size(self) -> int:
        """The bundle's length in bytes (what ``chunks`` yields), without reading a layer."""
        total = sum(len(h) + size + (-size % tarfile.BLOCKSIZE) for h, _, size in self._headers())
        end = 2 * tarfile.BLOCKSIZE
        return total + end + (-(total + end) % tarfile.RECORDSIZE)

    def chunks(self) -> Iterator[bytes]:
        """The bundle as it is sent: layer files are read 1 MiB at a time as the engine
        takes them, so no layer, and no bundle, is ever whole in memory (a layer file
        that changed size since ``size`` stops it)."""
        total = 0
        for header, data, size in self._headers():
            yield header
            if isinstance(data, bytes):
                yield data
            elif data is not None:
                yield from _file_chunks(data, size)
            pad = -size % tarfile.BLOCKSIZE
            yield b"\0" * pad
            total += len(header) + size + pad
        end = 2 * tarfile.BLOCKSIZE
        yield b"\0" * (end + (-(total + end) % tarfile.RECORDSIZE))

    def write(self, fileobj: IO[bytes]) -> None:
        """Write the bundle (streaming the layers given as files)."""
        for chunk in self.chunks():
            fileobj.write(chunk)


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    left = size
    with path.open("rb") as fh:
        while left and (chunk := fh.read(min(left, 1 << 20))):
            left -= len(chunk)
            yield chunk
    if left:
        raise OSError(f"{path} shrank while it was being loaded")


def layer_bundle(
    parent: Mapping[str, Any],
    parent_history: Sequence[Mapping[str, Any]],
    layer: LayerData,
    spec: CommitSpec,
    *,
    created: str,
    created_by: str = "nox-warpdrive app layer",
    under: Sequence[tuple[str, LayerData]] = (),
) -> Bundle:
    """The bundle that makes ``parent`` (its inspect data and history) plus ``under``
    and ``layer`` into one image with ``spec`` applied to its config."""
    diff_ids = list((parent.get("RootFS") or {}).get("Layers") or [])
    parent_layers = len(diff_ids)
    paths = [f"{d[7:]}/layer.tar" for d in diff_ids]
    carried: list[tuple[str, bytes | Path]] = []
    for i, (_, data) in enumerate([*under, ("", layer)]):
        if isinstance(data, str):
            diff_ids.append(data)
            paths.append(f"{data[7:]}/layer.tar")
        else:
            path = f"under{i}/layer.tar" if i < len(under) else "new/layer.tar"
            diff_ids.append("sha256:" + sha256_of(data))
            paths.append(path)
            carried.append((path, data))
    added = [what for what, _ in under] + [created_by]
    config: dict[str, Any] = {
        "architecture": parent.get("Architecture") or "amd64",
        "os": parent.get("Os") or "linux",
        "created": created,
        "config": merge_config(parent.get("Config") or {}, spec),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history(parent_history, parent_layers, added, created, spec.message),
    }
    if parent.get("Variant"):
        config["variant"] = parent["Variant"]
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    manifest = [{"Config": image_id[7:] + ".json", "RepoTags": None, "Layers": paths}]
    return Bundle(image_id, config_bytes, json.dumps(manifest).encode(), tuple(carried))
