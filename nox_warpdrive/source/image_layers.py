"""The app layers of one build, from the files to the engine: the tree they hold (the
source, the launcher and its config, the directories above them), what the current
image's app layers are (its label, and their listings kept on the host), the layers
written to temporary files as they stream from the source files, and the one
``docker load`` that puts them on the deps image. The split itself is layers.py's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..engine import Engine, ImageInfo
from ..errors import host_writes

# the label that lists an app image's app layers ([[role, key, diff ID], ...] bottom up),
# and the one naming the diff ID of its layer of collected static files
from ..labels import LAYERS_LABEL as LAYERS_LABEL
from ..labels import STATIC_LAYER_LABEL as STATIC_LAYER_LABEL
from ..layout import APP_ROOT, APP_SRC, APP_UID
from ..plan import CommitSpec
from ..tars import Content, stream_tar
from . import index as source_index
from .archive import check_link, open_file, source_date_epoch
from .context import Entry, paused_gc
from .index import SourceTree
from .layers import (
    ASSETS,
    CODE,
    STATIC,
    AppTree,
    LayerPlan,
    Listed,
    Previous,
    Rec,
    Tree,
    group,
    is_asset,
    listing,
    parse_listing,
    plan_layers,
    whiteout_target,
)

#: the directories above the app files, as the deps layer has them (layout.skeleton_tar)
_SKELETON = (
    ("opt", 0, 0o755),
    (APP_ROOT[1:], 0, 0o755),
    (APP_ROOT[1:] + "/.warpdrive", 0, 0o755),
    (APP_ROOT[1:] + "/bin", 0, 0o755),
    (APP_ROOT[1:] + "/lib", 0, 0o755),
    (APP_SRC[1:], APP_UID, 0o2775),
)


def app_tree(
    root: Path, entries: Sequence[Entry], digests: Mapping[str, str], runtime: Mapping[str, bytes]
) -> AppTree:
    """The files of the app layers: the skeleton, the source under APP_SRC (owned by the
    app user, modes made from the executable bit, every mtime SOURCE_DATE_EPOCH) and
    ``runtime`` (name under APP_ROOT -> bytes: the launcher, executable, and its
    config), owned by root with mtime 0, as the deps layer's files are. What a build
    makes through the source index (:func:`app_tree_of`), made here file by file."""
    src, epoch = APP_SRC[1:], source_date_epoch()
    tree: Tree = {}
    assets: list[str] = []
    asset_bytes = 0
    for entry in entries:
        name = f"{src}/{entry.relpath}"
        line = source_index.member_line(entry, epoch)
        if entry.kind == "file":
            line += f"{digests[entry.relpath]}\0{entry.size}"
            if is_asset(entry.relpath, entry.size):
                assets.append(name)
                asset_bytes += entry.size
        tree[name] = line
    return app_tree_of(root, SourceTree(tree, assets, asset_bytes, "", group(tree)), runtime)


def app_tree_of(
    root: Path,
    source: SourceTree,
    runtime: Mapping[str, bytes],
    held: Mapping[str, bytes] | None = None,
) -> AppTree:
    """:func:`app_tree`, from the source's members as the index gave them (nothing is
    made again file by file). ``held``: relpath -> the bytes of source files that
    changed while they were read (steady.py), which the layers hold as read."""
    tree: Tree = {name: Rec("dir", mode, uid, 0, 0, "", 0).line() for name, uid, mode in _SKELETON}
    inline: dict[str, bytes] = {f"{APP_SRC[1:]}/{rel}": data for rel, data in (held or {}).items()}
    for rel, data in runtime.items():
        name = f"{APP_ROOT[1:]}/{rel}"
        mode = 0o755 if rel.startswith("bin/") else 0o644
        tree[name] = Rec("file", mode, 0, 0, 0, _sha256(data), len(data)).line()
        inline[name] = data
    outside = group(tree)  # the few members above APP_SRC, by directory
    tree.update(source.tree)
    dirs = {**outside, **source.dirs} if outside is not None and source.dirs is not None else {}
    assets = frozenset(source.assets)
    return AppTree(tree, root, APP_SRC[1:], inline, assets, source.asset_bytes, dirs)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- previous


def previous_layers(current: ImageInfo | None, below: Sequence[str]) -> Previous | None:
    """The current image's app layers (its label), when they sit on exactly the layers
    ``below`` the new ones will (the deps layers); else None, and nothing of it can be
    named. With the listings of its assets and code layers when the host still has
    them: without, new layers are made from the tree alone, and still named when they
    are the same (an image pulled from a registry, on a fresh runner)."""
    layers = _label_rows(current) if current is not None else None
    if current is None or layers is None or current.diff_ids[: -len(layers)] != tuple(below):
        return None
    bases: dict[str, Listed] = {}
    for role, key, _ in layers:
        data = source_index.load_listing(key) if role in (ASSETS, CODE) else None
        found = parse_listing(data) if data is not None else None
        if found is not None:
            bases[role] = found
    lower = source_index.load_lower(_lower_key(layers)) if bases else None
    return Previous(layers, bases, lower)


def _lower_key(layers: Sequence[Sequence[str]]) -> str:
    """The key of the members of the assets and code layers, by directory (their keys')."""
    keys = [f"{role}:{key}" for role, key, *_ in layers if role in (ASSETS, CODE)]
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def app_layer_count(info: ImageInfo) -> int | None:
    """How many of an app image's top layers are its app layers (the static layer
    included), as its label says; None when it has no label that matches its layers."""
    rows = _label_rows(info)
    return len(rows) if rows is not None else None


def _label_rows(info: ImageInfo) -> tuple[tuple[str, str, str], ...] | None:
    """The (role, key, diff ID) rows of an image's app-layers label, when the label is
    well formed and its diff IDs are the image's top layers."""
    try:
        rows = json.loads(info.labels.get(LAYERS_LABEL, ""))
        layers = tuple((str(r), str(k), str(d)) for r, k, d in rows)
    except (ValueError, TypeError):
        return None
    if not layers or tuple(d for _, _, d in layers) != info.diff_ids[-len(layers) :]:
        return None
    return layers


# --------------------------------------------------------------------------- writing


def _order(name: str) -> tuple[str, ...]:
    """Tree order, parents first, and a whiteout just before the member of the same
    path (a path whose kind changed is deleted, then made again)."""
    hidden = whiteout_target(name)
    if hidden is not None:
        return (*hidden.split("/"), "\0")
    return (*name.split("/"), "\1")


def _members(app: AppTree, tree: Tree) -> Iterator[tuple[tarfile.TarInfo, Content, str]]:
    for name in sorted(tree, key=_order):
        rec = Rec.parse(tree[name])
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.mtime = rec.mode, rec.uid, rec.gid, rec.mtime
        info.uname = info.gname = ""
        content: Content = None
        if rec.kind == "dir":
            info.type = tarfile.DIRTYPE
        elif rec.kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, rec.digest
            source = app.source(name)
            if isinstance(source, str):
                check_link(app.root, source, rec.digest)  # still that link, still inside
        elif rec.kind == "file":
            info.size = rec.size
            source = app.source(name)
            content = source if isinstance(source, bytes) else _opener(app, source, rec.size)
        yield info, content, rec.digest if rec.kind == "file" else ""


def _opener(app: AppTree, relpath: str, size: int) -> Callable[[], BinaryIO]:
    def opened() -> BinaryIO:
        handle = open_file(app.root, relpath, size)
        if os.fstat(handle.fileno()).st_size > size:
            app.grown.append(relpath)  # a log being written: its first bytes, as hashed
        return handle

    return opened


def write_layer(app: AppTree, tree: Tree, fh: BinaryIO) -> str:
    """Write the layer holding ``tree`` (names relative to /) to ``fh``; its diff ID.
    Source files are read as they are written, and must still be what the tree says."""
    return "sha256:" + stream_tar(fh, _members(app, tree))


def layer_bytes(app: AppTree) -> bytes:
    """The whole tree as one layer, in memory (for a build step's container)."""
    buf = io.BytesIO()
    write_layer(app, app.tree, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- appending


@dataclass(frozen=True)
class StaticLayer:
    """Collected static files as a layer: its diff ID, and how to get its tar if the
    engine has to be sent it (then only: a code change names it)."""

    diff_id: str
    data: Callable[[], bytes]


def append_app(
    engine: Engine,
    parent: ImageInfo,
    app: AppTree,
    spec: CommitSpec,
    *,
    static: StaticLayer | None = None,
    current: ImageInfo | None = None,
) -> str:
    """A new image: ``parent`` and the app layers (layers.plan_layers against
    ``current``, with the static layer in its place), in one ``docker load``. Layers the
    engine has at their place are named; the others are written to temporary files from
    the source files and streamed, never held in memory. The listings of new assets and
    code layers are kept on the host for the next build."""
    with paused_gc():  # listings of tens of thousands of members, none in a cycle
        previous = previous_layers(current, parent.diff_ids)
        plans = plan_layers(app, previous, static.diff_id if static is not None else None)
    with tempfile.TemporaryDirectory(prefix="warpdrive-layers-") as tmp, host_writes(tmp):
        made: list[tuple[str, bytes | str | Path]] = []
        rows: list[list[str]] = []
        for i, plan in enumerate(plans):
            layer, diff_id = _made(app, plan, Path(tmp) / f"{i}.tar", static)
            made.append((plan.created_by, layer))
            rows.append([plan.role, diff_id if plan.role == STATIC else plan.key, diff_id])
        labels = {**spec.labels, LAYERS_LABEL: json.dumps(rows, separators=(",", ":"))}
        for role, _, diff_id in rows:
            if role == STATIC:
                labels[STATIC_LAYER_LABEL] = diff_id
        created_by, top = made[-1]
        image_id = engine.append_layer(
            parent.id,
            top,
            dataclasses.replace(spec, labels=labels),
            created_by=created_by,
            under=made[:-1],
        )
    remember(plans, previous)
    return image_id


def _made(
    app: AppTree, plan: LayerPlan, path: Path, static: StaticLayer | None
) -> tuple[bytes | str | Path, str]:
    """(the layer as the bundle takes it, its diff ID): named, the static layer's tar,
    or written to ``path``."""
    if plan.named is not None:
        return plan.named, plan.named
    if plan.role == STATIC:
        assert static is not None
        data = static.data()
        return data, "sha256:" + _sha256(data)
    with path.open("wb") as fh:
        diff_id = write_layer(app, plan.tree, fh)
    return path, diff_id


def remember(plans: Sequence[LayerPlan], previous: Previous | None = None) -> None:
    """Keep the listings of new assets and code layers on the host, and the members of
    the pair by directory: the next build compares the tree with them (best effort:
    without them it makes those layers again)."""
    bases = {p.role: p for p in plans if p.role in (ASSETS, CODE)}
    listed = previous.bases if previous is not None else {}
    for role, plan in bases.items():
        # made from the tree: kept, also when the engine had it (named) but this host
        # had lost its listing (a cleared cache): else every later build makes the
        # layers from the tree again, to find them the same
        if plan.tree and (plan.named is None or role not in listed):
            source_index.store_listing(plan.key, listing(plan.tree))
    key = _lower_key([(p.role, p.key) for p in bases.values()])
    if (
        previous is not None
        and previous.lower is not None
        and all(p.named is not None for p in bases.values())
    ):
        return  # the same pair as the current image's, kept already
    trees: list[Tree] = []
    for role, plan in bases.items():
        if plan.tree:
            trees.append(plan.tree)
        elif role in listed:
            trees.append(listed[role].tree)
        else:
            return  # a layer named but not listed here: nothing to keep
    merged: Tree = {}
    for tree in trees:
        merged.update(tree)
    found = group(merged)
    if found is not None:
        source_index.store_lower(key, found)
