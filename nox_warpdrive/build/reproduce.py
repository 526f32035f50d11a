"""`image -- --check-reproducible`: the image built a second time, in isolation (a
throwaway volume, its own deps image names, its own host caches: nothing of the first
build reused), and compared with the first. Either the image IDs match, or the first
layer (and path in it, and what differs there) or config field that differs is named.

The second build is the first's own code path run on an engine seen through
:class:`Isolated`, which hides every deps image this check did not make and gives the
ones it makes names of their own; everything it made is removed at the end."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..errors import WarpdriveError
from ..refs import split_ref

#: the prefix of every deps image's name (deps.deps_ref)
DEPS_PREFIX = "warpdrive-deps/"


class Isolated:
    """An engine on which a build sees none of the deps images it did not make: their
    names get this check's prefix (tags, lookups), and label queries list only images
    it tagged. Everything else is the real engine's."""

    def __init__(self, engine: Engine, token: str) -> None:
        self._engine = engine
        self.prefix = f"warpdrive-check-{token}/"
        #: every ref this build tagged (translated), and the image ids
        self.tagged: dict[str, str] = {}

    def translate(self, ref: str) -> str:
        return self.prefix + ref[len(DEPS_PREFIX) :] if ref.startswith(DEPS_PREFIX) else ref

    def image(self, ref: str) -> ImageInfo | None:
        return self._engine.image(self.translate(ref))

    def tag(self, image_id: str, ref: str) -> None:
        ref = self.translate(ref)
        self._engine.tag(image_id, ref)
        self.tagged[ref] = image_id

    def images_with_labels(
        self, labels: Mapping[str, str], where: Callable[[Mapping[str, str]], bool] | None = None
    ) -> list[ImageInfo]:
        made = set(self.tagged.values())
        return [i for i in self._engine.images_with_labels(labels, where) if i.id in made]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@dataclass(frozen=True)
class Member:
    """What a layer says of one path: what a reproducible build must give again."""

    kind: str
    mode: int
    owner: tuple[int, int]
    mtime: int
    size: int
    content: str  # sha256 of a file's bytes, a link's target

    def differs(self, other: Member) -> str:
        """The fields that differ, as 'field a != b'."""
        said = [
            f"{f.name} {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
        return ", ".join(said)


def layer_members(fh: IO[bytes]) -> dict[str, Member]:
    """A layer tar's paths, in the order it holds them."""
    members: dict[str, Member] = {}
    with tarfile.open(fileobj=fh, mode="r|*") as tar:
        for m in tar:
            digest = m.linkname
            if m.isfile():
                data = tar.extractfile(m)
                digest = hashlib.sha256(data.read() if data else b"").hexdigest()
            kind = "file" if m.isfile() else "dir" if m.isdir() else str(m.type, "ascii")
            members[m.name.rstrip("/")] = Member(
                kind, m.mode, (m.uid, m.gid), int(m.mtime), m.size, digest
            )
    return members


def first_path_difference(a: Mapping[str, Member], b: Mapping[str, Member]) -> str:
    """The first path (in the first layer's order, then the second's) that differs."""
    for name in [*a, *(n for n in b if n not in a)]:
        if name not in b:
            return f"{name} is only in the first"
        if name not in a:
            return f"{name} is only in the second"
        if a[name] != b[name]:
            return f"{name}: {a[name].differs(b[name])}"
    order = "the same paths in another order" if list(a) != list(b) else "the same paths"
    return f"{order} (the tar headers differ)"


def first_config_difference(a: Any, b: Any, where: str = "config") -> str | None:
    """The first field of two image configs that differs, by its path."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = first_config_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_config_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"


def compare(first: Path, second: Path) -> str | None:
    """What differs between two saved images (`docker save` tars): the first layer and
    path, else the config field; None when nothing does."""
    with tarfile.open(first) as ta, tarfile.open(second) as tb:
        (ma, ca), (mb, cb) = _manifest(ta), _manifest(tb)
        ids_a, ids_b = ca["rootfs"]["diff_ids"], cb["rootfs"]["diff_ids"]
        for i, (la, lb) in enumerate(zip(ma["Layers"], mb["Layers"], strict=False)):
            if ids_a[i] == ids_b[i]:
                continue
            with _member(ta, la) as fa, _member(tb, lb) as fb:
                path = first_path_difference(layer_members(fa), layer_members(fb))
            return f"layer {i + 1} of {len(ids_a)} ({_history_of(ca, i)}): {path}"
        if len(ids_a) != len(ids_b):
            return f"the first has {len(ids_a)} layers, the second {len(ids_b)}"
        return first_config_difference(ca, cb)


def _manifest(tar: tarfile.TarFile) -> tuple[dict[str, Any], dict[str, Any]]:
    with _member(tar, "manifest.json") as fh:
        manifest = json.load(fh)[0]
    with _member(tar, manifest["Config"]) as fh:
        return manifest, json.load(fh)


@contextlib.contextmanager
def _member(tar: tarfile.TarFile, name: str) -> Iterator[IO[bytes]]:
    fh = tar.extractfile(name)
    if fh is None:
        raise WarpdriveError(f"a saved image lacks {name}")
    with fh:
        yield fh


def _history_of(config: Mapping[str, Any], layer: int) -> str:
    """What made layer ``layer`` (0-based), from the history's non-empty rows."""
    rows = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    if layer < len(rows):
        row = rows[layer]
        return str(row.get("comment") or row.get("created_by") or "?")[:80]
    return "?"


@dataclass(frozen=True)
class Checked:
    """The outcome: ``difference`` None when the image IDs matched."""

    first: str
    second: str
    difference: str | None

    def summary(self) -> str:
        if self.difference is None:
            return f"reproducible: a second build in isolation gave the same image ID {self.first}"
        return (
            f"not reproducible: a second build in isolation gave {self.second[:19]}, "
            f"not {self.first[:19]}; first difference: {self.difference}"
        )


#: a build of ``cfg`` tagged ``ref`` on ``engine`` (image.build_image): its image ID
Build = Callable[[Config, Engine, str], str]


def check(cfg: Config, engine: Engine, out: Output, first_id: str, build: Build) -> Checked:
    """Build the image again in isolation and compare it with ``first_id``; what the
    second build made (images, deps images, volume, host caches) is removed."""
    token = uuid.uuid4().hex[:10]
    isolated = Isolated(engine, token)
    repo = split_ref(cfg.image)[0]
    ref = f"{repo}:warpdrive-check-{token}"
    second_cfg = dataclasses.replace(cfg, volume=f"{cfg.volume}-check-{token}")
    out(f"warpdrive: building the image again in isolation (volume {second_cfg.volume})")
    with tempfile.TemporaryDirectory(prefix="warpdrive-check-") as tmp, cache_home(tmp):
        try:
            second_id = _second(build, second_cfg, cast(Engine, isolated), ref)
            if second_id == first_id:
                return Checked(first_id, second_id, None)
            first_tar, second_tar = Path(tmp) / "first.tar", Path(tmp) / "second.tar"
            engine.save_image(first_id, first_tar)
            engine.save_image(second_id, second_tar)
            return Checked(first_id, second_id, compare(first_tar, second_tar))
        finally:
            _remove(engine, isolated, ref, second_cfg.volume, out)


def _second(build: Build, cfg: Config, engine: Engine, ref: str) -> str:
    """The second build, its failure said as the check's (the first build succeeded)."""
    try:
        return build(cfg, engine, ref)
    except WarpdriveError as exc:
        raise WarpdriveError(
            f"--check-reproducible: the second build, from nothing, failed: {exc.message}",
            fix=exc.fix or "run `nox -s image` from a fresh clone to see the same failure",
        ) from exc


@contextlib.contextmanager
def cache_home(path: str) -> Iterator[None]:
    """Host caches (platform probes, the source index, collected static files) of the
    builds run inside in ``path``: none from outside is read or written (the second
    build here; the integration tests' session too). $XDG_CACHE_HOME is put back after."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


def _remove(engine: Engine, isolated: Isolated, ref: str, volume: str, out: Output) -> None:
    """What the second build made: its tag (the image unless the first's), the deps
    images it tagged, its volume. Best effort: a leftover is said, not raised (the
    check's own outcome, or its failure, is what the run reports)."""
    refs = [ref, *reversed(isolated.tagged)]  # an image before the one it is built on
    for name in refs:
        try:
            if engine.image(name) is not None:
                engine.remove_image(name)
        except WarpdriveError as exc:
            out(f"warpdrive: --check-reproducible left image {name}: {exc.message}")
    try:
        engine.remove_volume(volume)
    except WarpdriveError as exc:
        out(f"warpdrive: --check-reproducible left volume {volume}: {exc.message}")
