"""Image assembly as pure functions: the config a new layer's image gets, its history,
and the `docker load` bundle that carries it. No engine here: the engine only loads,
commits and tags; everything it is handed is computed (and unit-tested) here.

One image config rule for both ways an image is made (``commit`` of a container and
``load`` of a bundle): :func:`config_changes` is what ``spec`` changes, used as the
commit's ``conf`` and merged into the parent's config for a bundle, so the two cannot
drift.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .plan import CommitSpec
from .tars import writer


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


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


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
    h = hashlib.sha256()
    with data.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """An image tarball for `docker load`: the parent's layers named by diff ID (the
    engine has them: never read, never carried), ``under`` layers carried or named, and
    one new layer carried."""

    image_id: str
    config: bytes
    manifest: bytes
    carried: tuple[tuple[str, bytes], ...]
    layer: bytes | Path

    def write(self, fileobj: IO[bytes]) -> None:
        """Write the bundle (streaming a layer given as a file)."""
        members: list[tuple[str, bytes | Path]] = [
            ("manifest.json", self.manifest),
            (self.image_id[7:] + ".json", self.config),
            *self.carried,
            ("new/layer.tar", self.layer),
        ]
        made: set[str] = set()
        with writer(fileobj) as tar:
            for name, data in members:
                directory = name.rpartition("/")[0]
                if directory and directory not in made:
                    made.add(directory)
                    info = tar.tarinfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                info = tar.tarinfo(name)
                if isinstance(data, bytes):
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    info.size = data.stat().st_size
                    with data.open("rb") as fh:
                        tar.addfile(info, fh)


def layer_bundle(
    parent: Mapping[str, Any],
    parent_history: Sequence[Mapping[str, Any]],
    layer: bytes | Path,
    spec: CommitSpec,
    *,
    created: str,
    created_by: str = "nox-warpdrive app layer",
    under: Sequence[tuple[str, bytes | str]] = (),
) -> Bundle:
    """The bundle that makes ``parent`` (its inspect data and history) plus ``under``
    and ``layer`` into one image with ``spec`` applied to its config."""
    diff_ids = list((parent.get("RootFS") or {}).get("Layers") or [])
    parent_layers = len(diff_ids)
    paths = [f"{d[7:]}/layer.tar" for d in diff_ids]
    carried: list[tuple[str, bytes]] = []
    for i, (_, under_layer) in enumerate(under):
        if isinstance(under_layer, str):
            diff_ids.append(under_layer)
            paths.append(f"{under_layer[7:]}/layer.tar")
        else:
            diff_ids.append("sha256:" + sha256_of(under_layer))
            paths.append(f"under{i}/layer.tar")
            carried.append((f"under{i}/layer.tar", under_layer))
    diff_ids.append("sha256:" + sha256_of(layer))
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
    manifest = [
        {"Config": image_id[7:] + ".json", "RepoTags": None, "Layers": [*paths, "new/layer.tar"]}
    ]
    return Bundle(image_id, config_bytes, json.dumps(manifest).encode(), tuple(carried), layer)
