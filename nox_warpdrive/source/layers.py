"""The app's files as image layers, split by how often they change, as jib splits a Java
app: a code change then sends only what changed, and names the rest by diff ID.

Above the deps layer, in order:

``assets``
    Large and rarely changing files: media, images, fonts, a built frontend, anything
    that is not the app's code (:func:`is_asset`). Only when they weigh
    :data:`SPLIT_BYTES` or more; a small app has no such layer.
``code``
    Everything else: the app's code, templates and config, every directory, the launcher.
``static``
    Django's collected static files (made by collectstatic, not from the tree; static.py),
    when there are any: right under ``code`` when that is made again on every change (a
    small app), else right over it. Either way a code change names it, and new static
    files never send ``code`` or ``assets`` again.
``asset-changes`` and ``code-changes``
    What changed since ``assets`` and ``code`` were made: changed and new files, and a
    whiteout for each deleted path. Empty ones are left out.

A build compares the tree it would archive (:class:`AppTree`) with what the current
image's ``assets`` and ``code`` layers hold (their listings, kept on the host), so a code
change makes one small ``code-changes`` layer, an edited asset one ``asset-changes``
layer, a deleted file a whiteout. A layer whose changes grow past a share of it
(:func:`_worth_keeping`) is made again from the tree, and so is everything above it: at
most five layers, and what is sent is bounded by what changed or by the layer remade.

An engine can name a layer only at the place it already has it (on the same layers
below), so a layer whose key is unchanged is named when every layer under it is too, and
sent again otherwise. Every layer is a pure function of what it lists: its key is the
sha256 of its listing (names, kinds, modes, owners, mtimes, content digests), and the
same listing always gives the same tar, byte for byte (the same diff ID). A first build,
or any build that cannot diff against the current image, makes ``assets`` and ``code``
from the tree alone: two clones of one source give the same layers. Later builds may add
change layers on top of earlier ones; the image's files are the same either way.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

ASSETS = "assets"
CODE = "code"
ASSET_CHANGES = "asset-changes"
CODE_CHANGES = "code-changes"
#: Django's collected static files (static.py): a layer made elsewhere, placed here
STATIC = "static"

#: the history line of each layer (``docker history``)
CREATED_BY = {
    ASSETS: "nox-warpdrive app assets",
    CODE: "nox-warpdrive app layer",
    ASSET_CHANGES: "nox-warpdrive app asset changes",
    CODE_CHANGES: "nox-warpdrive app code changes",
    STATIC: "nox-warpdrive static files (collectstatic)",
}

#: below this much asset content an app has no assets layer: its files go with the code
SPLIT_BYTES = 16 * 1024 * 1024

#: a file this big is an asset whatever its name
CODE_FILE_MAX = 1024 * 1024

#: what the app's code is made of (anything else is an asset): sources, templates,
#: configuration and text a developer edits, and files without a suffix (scripts, a
#: Procfile)
CODE_SUFFIXES = frozenset(
    {
        *(".py", ".pyi", ".pyx", ".pxd", ".pth", ".sh", ".sql", ".po", ".mo"),
        *(".html", ".htm", ".jinja", ".jinja2", ".j2", ".tmpl", ".tpl", ".mako", ".xml"),
        *(".txt", ".md", ".rst", ".toml", ".cfg", ".ini", ".conf", ".yaml", ".yml"),
        *(".json", ".csv", ".env", ".in", ".lock"),
    }
)

#: a code layer with fewer files and bytes than these is made again on every change (it
#: costs less than a millisecond or two a file): change layers are for big ones
KEEP_CODE_FILES = 1000
KEEP_CODE_BYTES = 8 * 1024 * 1024

#: change layers are always worth keeping up to this many files, and up to these many
#: bytes (over the assets and the code layers): sending them costs little
CHANGES_FLOOR_FILES = 256
ASSET_CHANGES_FLOOR = 64 * 1024 * 1024
CODE_CHANGES_FLOOR = 4 * 1024 * 1024

#: the first line of every listing; a new layer format makes every key new
LISTING_FORMAT = b"nox-warpdrive layer listing 3\n"


class Rec(NamedTuple):
    """One member of a layer: a directory, file, symlink or whiteout (a deleted path).
    ``digest``: a file's sha256, a symlink's target, else empty. A named tuple: a tree
    has one per file, made on every build."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    digest: str
    size: int

    def line(self) -> str:
        """The member as its listing writes it (and as trees compare it)."""
        return (
            f"{self.kind}\0{self.mode:o}\0{self.uid}\0{self.gid}\0{self.mtime}\0"
            f"{self.digest}\0{self.size}"
        )

    @classmethod
    def parse(cls, line: str) -> Rec:
        kind, mode, uid, gid, mtime, digest, size = line.split("\0")
        return cls(kind, int(mode, 8), int(uid), int(gid), int(mtime), digest, int(size))


#: name (relative to /) -> Rec.line(): what a layer, or the image's files, hold
Tree = dict[str, str]


def whiteout() -> str:
    """The line of a whiteout (the member that deletes a path from the layers below)."""
    return Rec("whiteout", 0o644, 0, 0, 0, "", 0).line()


@dataclass(frozen=True)
class AppTree:
    """The files the app layers hold, as one tree, and where each file's bytes come from:
    ``root`` (the project) for names under ``src``, ``inline`` for the others (and for
    source files held in memory because they changed while read: steady.py)."""

    tree: Tree
    root: Path
    src: str
    inline: Mapping[str, bytes] = field(default_factory=dict)
    #: the files that are assets (:func:`is_asset`), and their bytes
    assets: frozenset[str] = frozenset()
    asset_bytes: int = 0
    #: the tree again, by directory: path -> (its members' names, their lines), each
    #: "\n"-joined in name order (the source index keeps them so): a directory that is
    #: the same as below is compared in one go; empty when not known
    dirs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: the source files (relpaths) found grown when a layer read them, after they were
    #: hashed: a layer holds their first bytes, the ones hashed (a log being written)
    grown: list[str] = field(default_factory=list, compare=False)

    def source(self, name: str) -> str | bytes:
        """A file's bytes (inline) or its path relative to the project."""
        data = self.inline.get(name)
        if data is not None:
            return data
        return name[len(self.src) + 1 :]


@dataclass(frozen=True)
class LayerPlan:
    """One app layer: what it holds (``tree``, parents and whiteouts included), its key
    (the sha256 of its listing) and, when the engine already has it at this place in
    the image (the current image has it there, on the same layers), its diff ID: then
    it is named in the new image and never made or sent."""

    role: str
    tree: Tree
    key: str
    named: str | None = None

    @property
    def created_by(self) -> str:
        return CREATED_BY[self.role]

    @property
    def content_bytes(self) -> int:
        return sum(Rec.parse(line).size for line in self.tree.values())


@dataclass(frozen=True)
class Previous:
    """The current image's app layers, as its label lists them: (role, key, diff ID)
    from the bottom up; and the listings of its ``assets`` and ``code`` layers."""

    layers: tuple[tuple[str, str, str], ...]
    bases: Mapping[str, Listed]
    #: the assets and code layers' members by directory (:func:`group`), when kept
    lower: Mapping[str, tuple[str, str]] | None = None

    def key(self, role: str) -> str:
        return next(key for r, key, _ in self.layers if r == role)


def is_asset(name: str, size: int) -> bool:
    """Whether a file is an asset (not the app's code): large, or not of a code kind."""
    if size > CODE_FILE_MAX:
        return True
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return dot > 0 and base[dot:].lower() not in CODE_SUFFIXES


def listing(tree: Mapping[str, str]) -> bytes:
    """The tree as its key hashes it and the host keeps it: a header (the format, then
    the number of members and of content bytes), then the members' names in tree order
    (parents first), one a line, then their Rec.line()s in the same order. Two blocks
    that split and zip back into a dict: a build reads two listings of tens of thousands
    of members."""
    names = sorted(tree, key=_tree_order)
    body = "\n".join([*names, *(tree[name] for name in names)])
    totals = f"{len(tree)} {_size(tree)}\n".encode()
    return LISTING_FORMAT + totals + body.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Listed:
    """A layer as its listing says: its count of members and content bytes (for deciding
    whether changes to it are still worth a layer of their own), and its members, read
    from the listing only when asked for."""

    data: bytes
    members: int
    size: int

    @functools.cached_property
    def tree(self) -> Tree:
        count = self.members
        body = self.data[self.data.index(b"\n", len(LISTING_FORMAT)) + 1 :]
        lines = body.decode("utf-8", "surrogateescape").split("\n") if count else []
        return dict(zip(lines[:count], lines[count:], strict=True))


def parse_listing(data: bytes) -> Listed | None:
    """A listing read back (its members parsed when asked for); None when it is not
    one."""
    if not data.startswith(LISTING_FORMAT):
        return None
    totals, _, body = data[len(LISTING_FORMAT) :].partition(b"\n")
    try:
        count, size = (int(n) for n in totals.split())
    except ValueError:
        return None
    if body.count(b"\n") + 1 != 2 * count and count:
        return None  # a name with a newline: not a listing to use
    return Listed(data, count, size)


def group(tree: Mapping[str, str]) -> dict[str, tuple[str, str]] | None:
    """The tree by directory, as :attr:`AppTree.dirs`; None when a name or a line has a
    newline in it (it could not be told apart)."""
    by_dir: dict[str, list[str]] = {}
    for name in sorted(tree, key=_tree_order):
        by_dir.setdefault(posixpath.dirname(name), []).append(name)
        if tree[name].startswith("dir\0"):
            by_dir.setdefault(name, [])  # an empty directory is one too
    out = {}
    for directory, names in by_dir.items():
        lines = [tree[name] for name in names]
        if any("\n" in part for part in (*names, *lines)):
            return None
        out[directory] = ("\n".join(names), "\n".join(lines))
    return out


def key_of(tree: Mapping[str, str]) -> str:
    return hashlib.sha256(listing(tree)).hexdigest()


def _tree_order(name: str) -> tuple[str, ...]:
    return tuple(name.split("/"))


# --------------------------------------------------------------------------- planning


def split_tree(app: AppTree, names: frozenset[str] | None = None) -> tuple[Tree, Tree]:
    """(the assets layer, the code layer) made from the tree alone: ``names`` (by
    default :func:`split_names`) in the first, an empty tree when there are none."""
    names = split_names(app) if names is None else names
    if not names:
        return {}, dict(app.tree)
    assets = {name: app.tree[name] for name in names}
    code = {name: line for name, line in app.tree.items() if name not in names}
    return with_parents(assets, app.tree), code


def split_names(app: AppTree, had_assets: bool = False) -> frozenset[str]:
    """The files that go to the assets layers: the assets, when they weigh
    :data:`SPLIT_BYTES` (half that when the current image has an assets layer: an edit
    that makes them a little lighter must not make every layer again)."""
    floor = SPLIT_BYTES // 2 if had_assets else SPLIT_BYTES
    return app.assets if app.asset_bytes >= floor else frozenset()


def with_parents(layer: Tree, tree: Mapping[str, str]) -> Tree:
    """``layer`` and every parent directory of its members, as ``tree`` has them: a
    directory the engine had to invent while applying a layer would be root's, 0755."""
    out = dict(layer)
    for name in layer:
        parent = posixpath.dirname(name)
        while parent and parent not in out:
            out[parent] = tree[parent]
            parent = posixpath.dirname(parent)
    return out


def plan_layers(
    app: AppTree, previous: Previous | None, static: str | None = None
) -> tuple[LayerPlan, ...]:
    """The app layers of a build: change layers over the current image's ``assets`` and
    ``code`` layers when it has them and they are still worth keeping, else both made
    from the tree (see the module doc). ``static``: the diff ID of the collected static
    files' layer, which goes right under the code layer when that is made again on every
    change (a small app), else right above it, under the change layers: where it is
    sent again least often."""
    layers, big_code = _choose(app, previous)
    if static is not None:
        at = next(i for i, (role, _, _) in enumerate(layers) if role == CODE)
        layers.insert(at + 1 if big_code else at, (STATIC, {}, static))
    return _name(layers, previous)


def _choose(app: AppTree, previous: Previous | None) -> tuple[list[_Layer], bool]:
    """The layers, and whether the code layer is big enough to keep under changes."""
    had_assets = previous is not None and any(r == ASSETS for r, _, _ in previous.layers)
    asset_names = split_names(app, had_assets)
    listed_a = previous.bases.get(ASSETS) if previous is not None else None
    listed_c = previous.bases.get(CODE) if previous is not None else None
    if previous is None or listed_c is None or (listed_a is None) != (not asset_names):
        # nothing to diff against (no listing), or an assets layer came or went
        return _canonical(app, asset_names)
    if previous.lower is not None and app.dirs:
        d_assets, d_code = diff_dirs(app, previous.lower, asset_names)
    else:
        lower = {**(listed_a.tree if listed_a is not None else {}), **listed_c.tree}
        d_assets, d_code = diff(app.tree, lower, asset_names)
    if listed_a is not None and not _worth_keeping(d_assets, listed_a, 2, ASSET_CHANGES_FLOOR):
        return _canonical(app, asset_names)
    layers: list[_Layer] = [(ASSETS, {}, previous.key(ASSETS) if listed_a else None)]
    big_code = _big(listed_c.members, listed_c.size)
    if big_code and _worth_keeping(d_code, listed_c, 4, CODE_CHANGES_FLOOR):
        layers.append((CODE, {}, previous.key(CODE)))
    else:  # made again from the tree: the asset changes are then on that
        code = {name: line for name, line in app.tree.items() if name not in asset_names}
        layers.append((CODE, code, None))
        base_a = listed_a.tree if listed_a is not None else {}
        d_assets, d_code = diff(app.tree, {**base_a, **code}, asset_names)
    layers += [(ASSET_CHANGES, d_assets, None), (CODE_CHANGES, d_code, None)]
    return layers, big_code


def _big(members: int, size: int) -> bool:
    """Whether a code layer is big enough to keep under change layers."""
    return members >= KEEP_CODE_FILES or size >= KEEP_CODE_BYTES


def _canonical(app: AppTree, asset_names: frozenset[str]) -> tuple[list[_Layer], bool]:
    assets, code = split_tree(app, asset_names)
    return [(ASSETS, assets, None), (CODE, code, None)], _big(len(code), _size(code))


#: (role, tree, its key when already known)
_Layer = tuple[str, Tree, "str | None"]


def _size(tree: Mapping[str, str]) -> int:
    return sum(int(line.rsplit("\0", 1)[1]) for line in tree.values())


def _worth_keeping(changes: Tree, base: Listed, share: int, floor: int) -> bool:
    """Whether a layer is still worth keeping under ``changes`` to it: they hold less
    than 1/``share`` of its members and bytes (at least ``floor`` bytes are allowed).
    Past that, sending the changes on every build costs more than making it again."""
    files = sum(1 for line in changes.values() if not line.startswith("dir\0"))
    small = files <= max(CHANGES_FLOOR_FILES, base.members // share)
    return small and _size(changes) <= max(floor, base.size // share)


def _name(layers: list[_Layer], previous: Previous | None) -> tuple[LayerPlan, ...]:
    """Plans with keys, empty layers left out; the layers the current image has at the
    same place (the same keys from the bottom up) are named by its diff IDs."""
    plans: list[LayerPlan] = []
    same = previous is not None
    for role, tree, known in layers:
        if not tree and known is None:
            continue  # an empty layer (a kept one, named, is given by its key alone)
        key = known or key_of(tree)
        named = None
        i = len(plans)
        if same and previous is not None and i < len(previous.layers):
            old_role, old_key, diff_id = previous.layers[i]
            same = (old_role, old_key) == (role, key)
            named = diff_id if same else None
        else:
            same = False
        plans.append(LayerPlan(role, tree, key, named))
    return tuple(plans)


def diff_dirs(
    app: AppTree, lower: Mapping[str, tuple[str, str]], assets: Iterable[str]
) -> tuple[Tree, Tree]:
    """:func:`diff`, looking only into the directories that differ from ``lower`` (the
    layers below, by directory): a code change compares a few thousand directories as
    strings instead of a hundred thousand members one by one."""
    tree_part: Tree = {}
    lower_part: Tree = {}
    for directory, blocks in app.dirs.items():
        below = lower.get(directory)
        if below == blocks:
            continue
        if blocks[0]:
            tree_part.update(zip(blocks[0].split("\n"), blocks[1].split("\n"), strict=True))
        if below is not None and below[0]:
            lower_part.update(zip(below[0].split("\n"), below[1].split("\n"), strict=True))
    return diff(tree_part, lower_part, assets, app.tree)


def diff(
    tree: Mapping[str, str],
    lower: Mapping[str, str],
    assets: Iterable[str],
    whole: Mapping[str, str] | None = None,
) -> tuple[Tree, Tree]:
    """(asset changes, code changes): what turns the files of ``lower`` into ``tree``.

    A changed or new file or symlink goes with its kind (``assets``: the asset names);
    a new directory with the code; a path whose kind changed (a file that became a
    directory) is a whiteout and the new member in the asset changes (the lower of the
    two layers, so the code changes can add below it); a deleted path is one whiteout
    at the top of what was deleted, with the code changes unless it was an asset file.
    Each layer carries the parents of its members. ``whole``: the whole tree, when
    ``tree`` and ``lower`` are only the directories that differ."""
    whole = tree if whole is None else whole
    asset_set = assets if isinstance(assets, (set, frozenset)) else frozenset(assets)
    d_assets: Tree = {}
    d_code: Tree = {}
    kind_changed: set[str] = set()
    below = lower.get
    for name, line in [(name, line) for name, line in tree.items() if below(name) != line]:
        old = below(name)
        if old is not None and old.split("\0", 1)[0] != line.split("\0", 1)[0]:
            kind_changed.add(name)
            d_assets[name] = line
        elif name in asset_set:
            d_assets[name] = line
        else:
            d_code[name] = line
    for name, old in [(name, old) for name, old in lower.items() if name not in tree]:
        parent = posixpath.dirname(name)
        if parent in whole and parent not in kind_changed:  # the top of what was deleted
            target = d_assets if name in asset_set or _was_asset(name, old) else d_code
            target[_whiteout_name(name)] = whiteout()
    for name in kind_changed:
        d_assets[_whiteout_name(name)] = whiteout()
    return with_parents(d_assets, whole), with_parents(d_code, whole)


def _was_asset(name: str, line: str) -> bool:
    rec = Rec.parse(line)
    return rec.kind == "file" and is_asset(name, rec.size)


def _whiteout_name(name: str) -> str:
    parent, _, base = name.rpartition("/")
    return f"{parent}/.wh.{base}" if parent else f".wh.{base}"


def whiteout_target(name: str) -> str | None:
    """The path a whiteout member deletes; None for any other member."""
    parent, _, base = name.rpartition("/")
    if not base.startswith(".wh."):
        return None
    return f"{parent}/{base[4:]}" if parent else base[4:]
