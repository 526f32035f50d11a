"""Collected static files (Django collectstatic): when their inputs are unchanged they
are reused from the current image, as a layer of their own under the app layer that a
code change names by diff ID instead of sending again."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..engine import Engine, ImageInfo
from ..errors import EngineError, LayerRefused, WarpdriveError
from ..inputs.requirements import read_requirements
from ..labels import OCI_TITLE, STATIC_LAYER_LABEL, STATIC_ROOT_LABEL, AppLabels, DepsLabels
from ..layout import APP_SRC, APP_UID, STATIC_ROOT_RECORD, skeleton_tar
from ..source.archive import source_date_epoch
from ..source.image_layers import StaticLayer, append_app
from ..source.layers import CREATED_BY, STATIC
from ..tars import dir_tar, merge_tars, normalize_tar, reprefix_tar
from . import static_cache
from .static_inputs import StaticInputs

if TYPE_CHECKING:
    from .app_layer import AppPlan


def not_static_inputs(cfg: Config, shipped: frozenset[str] | None = None) -> frozenset[str]:
    """pyproject.toml and every requirement file, included ones too (the shipped names
    are the files' paths relative to the project). ``shipped``: those names as the build
    read them (BuildInputs), not read again; else read here."""
    names = {"pyproject.toml"}
    for path in cfg.requirement_files:
        with contextlib.suppress(ValueError):
            names.add(path.relative_to(cfg.project_dir).as_posix())
    if shipped is None:
        with contextlib.suppress(WarpdriveError):
            shipped = frozenset(name for name, _ in read_requirements(cfg).files)
    return frozenset(names.union(shipped or ()))


def same_packages_or_more(current: ImageInfo, deps_key: str, wheels: list[str] | None) -> bool:
    """Whether the current image's packages are all still installed, unchanged. Packages
    only added cannot change collectstatic's output: a new Django app must be named in
    INSTALLED_APPS first, and the settings are part of the static key."""
    app = AppLabels.from_labels(current.labels)
    if app is not None and app.deps_key == deps_key:
        return True
    if wheels is None:
        return False
    before = DepsLabels.from_labels(current.labels)  # inherited from its deps image
    return before is not None and set(before.wheels) <= set(wheels)


def same_static_inputs(current: ImageInfo, app: AppPlan) -> bool:
    """Whether the current image's collected static files came from this build's static
    inputs (its static key)."""
    labels = AppLabels.from_labels(current.labels)
    return labels is not None and labels.static_key == app.static_key


def static_root(record: bytes) -> str | None:
    """The STATIC_ROOT an app image recorded (a tar of the record file), when it is a
    directory the app owns, below APP_SRC: never "/", "/etc" or a climb out."""
    with tarfile.open(fileobj=io.BytesIO(record)) as tar:
        member = next((m for m in tar if m.isfile()), None)
        fh = tar.extractfile(member) if member else None
        root = fh.read().decode().strip() if fh else ""
    return safe_root(root)


def safe_root(root: str) -> str | None:
    """A STATIC_ROOT as an app image labels it, without a trailing slash, when it is a
    directory below APP_SRC (no "..", ".", or empty part); else None."""
    root = root.rstrip("/")
    parts = root.split("/")
    if not root.startswith(APP_SRC + "/") or ".." in parts or "." in parts or "" in parts[1:]:
        return None
    return root


def read_static(engine: Engine, image_id: str) -> tuple[bytes, bytes] | None:
    """(the record's tar, a tar of the collected files and the record at their paths in
    the image) of an app image: the host's copy, else read through one created container
    (and copied for next time, already in the form a layer takes)."""
    cached = static_cache.load(image_id)
    if cached is not None and static_root(cached[0]) is not None:
        return cached
    with engine.image_reader(image_id) as read:
        record = read(STATIC_ROOT_RECORD)
        root = static_root(record) if record is not None else None
        if record is None or root is None:
            return None
        static = read(root)
    if static is None:
        return None
    # get_archive names the members after the root's last part: put them back under its
    # parent, the record under its directory
    files = merge_tars(
        reprefix_tar(static, root.rsplit("/", 1)[0]),
        reprefix_tar(record, STATIC_ROOT_RECORD.rsplit("/", 1)[0]),
    )
    static_cache.store(image_id, record, files)
    return record, files


def static_inputs_unchanged(
    current: ImageInfo | None,
    app: AppPlan,
    deps_key: str = "",
    wheels: list[str] | None = None,
) -> bool:
    """Whether collectstatic would make the files the current image already holds: its
    static inputs are this build's, and its packages are the same or more (labels only:
    what a build decides before reading any file, and what ``--plan`` says)."""
    if current is None or not app.static_key or not same_static_inputs(current, app):
        return False
    return same_packages_or_more(current, deps_key, wheels)


def static_reusable(
    current: ImageInfo | None, app: AppPlan, deps_key: str, wheels: list[str] | None
) -> bool:
    """Whether a build reuses collected files, the current image's (static_inputs_unchanged)
    or an earlier image's the host keeps (earlier_static), instead of running collectstatic
    (from labels and the host's index: nothing is read)."""
    if static_inputs_unchanged(current, app, deps_key, wheels):
        return True
    return wheels is not None and earlier_image(app, wheels) is not None


def installed_wheels(
    wheels: list[str] | None, current: ImageInfo | None, deps_key: str
) -> list[str] | None:
    """The wheels this build installs: ``wheels`` (the resolved set's) when read, else
    the current image's when the build goes on its deps layer (the requirements did not
    change, so the wheelhouse was not read), else None (not known yet)."""
    if wheels is not None or current is None or not deps_key:
        return wheels
    deps = DepsLabels.from_labels(current.labels)
    return list(deps.wheels) if deps is not None and deps.key == deps_key else None


def earlier_image(app: AppPlan, wheels: list[str]) -> str | None:
    """The id of an earlier image of this app whose collected files the host keeps, made
    from this build's static inputs with only packages of ``wheels`` (static_cache.earlier)."""
    return static_cache.earlier(app.commit.labels.get(OCI_TITLE, ""), app.static_key, wheels)


def reusable_static_files(
    engine: Engine,
    current: ImageInfo | None,
    app: AppPlan,
    deps_key: str = "",
    wheels: list[str] | None = None,
) -> tuple[str, bytes] | None:
    """(STATIC_ROOT, a tar of the collected files and the record at their paths) of the
    current image, when its static inputs equal this build's (then collectstatic would
    produce the same files)."""
    if current is None or not static_inputs_unchanged(current, app, deps_key, wheels):
        return None
    found = read_static(engine, current.id)
    if found is None:
        return None
    record, files = found
    root = static_root(record)
    assert root is not None  # read_static checked it
    return root, files


STATIC_CREATED_BY = CREATED_BY[STATIC]


def reusable_static(
    engine: Engine,
    current: ImageInfo | None,
    app: AppPlan,
    deps_key: str = "",
    wheels: list[str] | None = None,
) -> tuple[str, StaticLayer] | None:
    """(STATIC_ROOT, the static layer) of the current image, when its static inputs
    equal this build's. When its files are a layer of their own, that layer is named and
    its bytes are read (from the host copy, else the image) only if the engine must be
    sent it; else the files are read now and made a layer."""
    if current is None or not static_inputs_unchanged(current, app, deps_key, wheels):
        return None
    # an app image whose collected static files are a layer of their own labels that
    # layer's diff ID (source/image_layers.py) and the STATIC_ROOT it holds
    labels = current.labels
    diff, root = labels.get(STATIC_LAYER_LABEL, ""), labels.get(STATIC_ROOT_LABEL, "")
    if diff in current.diff_ids and safe_root(root) is not None:

        def data() -> bytes:
            found = read_static(engine, current.id)
            if found is None or static_root(found[0]) != root:
                raise LayerRefused("the collected static files of the current image are gone")
            return static_layer(root, found[1])

        return root, StaticLayer(diff, data)
    found = reusable_static_files(engine, current, app, deps_key, wheels)
    if found is None:
        return None
    root, files = found
    layer = static_layer(root, files)
    return root, StaticLayer("sha256:" + hashlib.sha256(layer).hexdigest(), lambda: layer)


def earlier_static(app: AppPlan, wheels: list[str] | None) -> tuple[str, str, StaticLayer] | None:
    """(the earlier image's id, STATIC_ROOT, the static layer) of an image no longer the
    current one whose collected files the host keeps, made from this build's static
    inputs with only packages this build installs too (static_cache.earlier): what
    collectstatic would make again. Read from the host's copy alone: that image may be
    gone from the engine."""
    image_id = earlier_image(app, wheels) if wheels is not None else None
    found = static_cache.load(image_id) if image_id is not None else None
    root = static_root(found[0]) if found is not None else None
    if image_id is None or found is None or root is None:
        return None
    layer = static_layer(root, found[1])
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    return image_id, root, StaticLayer(digest, lambda: layer)


def static_layer(root: str, files: bytes) -> bytes:
    """The collected static files as a layer of their own, with every parent directory
    (the skeleton's, and below APP_SRC as collectstatic makes them)."""
    rel = root.rsplit("/", 1)[0][len(APP_SRC) :].strip("/")
    chain: list[tuple[str, int, int]] = []
    path = APP_SRC[1:]
    for part in rel.split("/") if rel else []:
        path = f"{path}/{part}"
        chain.append((path, APP_UID, 0o2775))
    return merge_tars(skeleton_tar(), dir_tar(chain), normalize_tar(files, source_date_epoch()))


def shadows_static(names: Iterable[str], root: str) -> bool:
    """Whether the app layers have files at or below STATIC_ROOT (``names``: theirs,
    relative to /; a copy collected on the developer's machine): on top of a static
    layer they would hide the collected ones, where collectstatic overwrites them."""
    inside = root.strip("/")
    return any(n == inside or n.startswith(inside + "/") for n in names)


def parent_dirs(layer: bytes, static_parent: str, record_dir: str) -> bytes:
    """Directory entries a reused-static layer needs and the app layer lacks, with the
    metadata the container build gives them: below APP_SRC as collectstatic makes them
    (app user, group 0, 2775), the record's directory as root makes it (0755)."""
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        have = {m.name.rstrip("/") for m in tar}
    wanted: list[tuple[str, int, int]] = []
    rel = static_parent[len(APP_SRC) :].strip("/")
    path = APP_SRC[1:]
    for part in rel.split("/") if rel else []:
        path = f"{path}/{part}"
        wanted.append((path, APP_UID, 0o2775))
    wanted.append((record_dir[1:], 0, 0o755))
    return dir_tar([w for w in wanted if w[0] not in have])


def split_static(
    engine: Engine,
    deps_id: str,
    app: AppPlan,
    built: str,
    found: tuple[bytes, bytes],
    current: ImageInfo | None = None,
) -> str:
    """The image a container just built (the app layers and, committed on them, the
    collected static files), made again as the app layers with the static files in a
    layer of their own in its place, so that the next code change names it instead of
    sending it; the committed image is removed. When that cannot be done, the committed
    image stays the result."""
    record, files = found
    root = static_root(record)
    if root is None or shadows_static(app.tree.tree, root):
        return built
    layer = static_layer(root, files)
    static = StaticLayer("sha256:" + hashlib.sha256(layer).hexdigest(), lambda: layer)
    labels = {**app.commit.labels, STATIC_ROOT_LABEL: root}
    try:
        image_id = append_app(
            engine,
            engine.require_image(deps_id, "deps image"),
            app.tree,
            dataclasses.replace(app.commit, labels=labels),
            static=static,
            current=current,
        )
    except EngineError:
        return built
    static_cache.copy(built, image_id)
    engine.remove_image(built)
    return image_id


# -- re-collecting only what changed ---------------------------------------------------
#
# When only static files changed (edited, none added or removed), and collectstatic is a
# plain copy (static_inputs.plain_copy: Django's default storage and finders), its output
# differs from the current image's in those files' bytes alone: a full run would copy
# every file again (6-8 s for the Wagtail example) to change one. The new files are then
# the current image's collected files with those members' bytes replaced; the layer is
# made from them exactly as from a container's (static_layer), so it is byte for byte
# the layer a full collectstatic gives (tests/integration/test_static_incremental_engine.py).
# Not done, and collectstatic runs in full, for a hashing storage (its manifest and the
# references in other files depend on every file), for a file added, removed or renamed
# (which file wins a path, what is left over), for a changed setting or app module, and
# whenever a file's place in the current output cannot be proved (below).


@dataclass(frozen=True)
class Recollected:
    """The collected static files of the current image with the changed files' bytes
    replaced: their root, their layer, and (record, files) for the host's copy."""

    root: str
    layer: StaticLayer
    record: bytes
    files: bytes
    changed: tuple[str, ...]


def remember_inputs(static_key: str, base_key: str, inputs: StaticInputs, records: str) -> None:
    """Keep what ``static_key`` was made of (``base_key``: all but the files;
    ``records``: a line per input file, its relpath and member line), when collectstatic
    is a plain copy: what ``recollect`` compares."""
    if inputs.everything or not inputs.plain_copy:
        return
    data = {"base": base_key, "dirs": list(inputs.dirs), "files": sorted(inputs.files)}
    static_cache.store_inputs(static_key, json.dumps({**data, "records": records}))


def _records(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        relpath, _, member = line.partition("\0")
        found[relpath] = member
    return found


def _load_inputs(static_key: str) -> dict[str, Any] | None:
    text = static_cache.load_inputs(static_key) if static_key else None
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


#: Django's default --ignore patterns (collectstatic skips these names)
def _ignored(rel: str) -> bool:
    return any(p.startswith(".") or p.endswith("~") or p == "CVS" for p in rel.split("/"))


def _member(line: str) -> tuple[str, str]:
    """(kind, sha256) of a member line (layers.Rec.line)."""
    parts = line.split("\0")
    return parts[0], parts[5] if len(parts) > 5 else ""


def changed_static(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, str] | None:
    """{path below STATIC_ROOT: the source file (relpath) now copied there} for two sets of
    static inputs (remember_inputs) that differ only in the bytes of files in static
    directories; None when anything else differs (a setting, an app module, a file added
    or removed), a changed file is one collectstatic ignores, or another static directory
    of the tree has a file at the same path (which one wins is the finders' order)."""
    if any(old.get(k) != new.get(k) for k in ("base", "dirs", "files")):
        return None
    before, after = _records(old["records"]), _records(new["records"])
    if before.keys() != after.keys():
        return None
    dirs: list[str] = list(new["dirs"])
    targets: dict[str, str] = {}
    for relpath in sorted(p for p in after if after[p] != before[p]):
        holders = [d for d in dirs if relpath.startswith(d)]
        kinds = {_member(before[relpath])[0], _member(after[relpath])[0]}
        if relpath in new["files"] or len(holders) != 1 or kinds != {"file"}:
            return None
        rel = relpath[len(holders[0]) :]
        if _ignored(rel) or any(d + rel in after for d in dirs if d != holders[0]):
            return None
        targets[rel] = relpath
    return targets or None


Planned = tuple[dict[str, str], dict[str, str], dict[str, str]]


def _planned(
    current: ImageInfo | None, app: AppPlan, deps_key: str, wheels: list[str] | None
) -> Planned | None:
    """(changed_static's answer, the current image's input records, this build's) when
    only static files changed and the packages are the same or more."""
    labels = AppLabels.from_labels(current.labels) if current is not None else None
    if current is None or labels is None or not labels.static_key or not app.static_key:
        return None
    old, new = _load_inputs(labels.static_key), _load_inputs(app.static_key)
    targets = changed_static(old, new) if old is not None and new is not None else None
    if targets is None or not same_packages_or_more(current, deps_key, wheels):
        return None
    assert old is not None and new is not None
    return targets, _records(old["records"]), _records(new["records"])


def recollectable(
    current: ImageInfo | None, app: AppPlan, deps_key: str, wheels: list[str] | None
) -> tuple[str, ...] | None:
    """The changed static files a build would copy again alone (``--plan``: from labels
    and the host's records, no image read), or None."""
    planned = _planned(current, app, deps_key, wheels)
    return tuple(sorted(planned[0].values())) if planned is not None else None


def recollect(
    engine: Engine,
    current: ImageInfo | None,
    app: AppPlan,
    deps_key: str = "",
    wheels: list[str] | None = None,
) -> Recollected | None:
    """The current image's collected files with only the changed static files copied
    again (see above), or None when collectstatic must run in full."""
    planned = _planned(current, app, deps_key, wheels)
    if current is None or planned is None:
        return None
    targets, before, after = planned
    try:
        found = read_static(engine, current.id)
        root = static_root(found[0]) if found is not None else None
        if found is None or root is None or shadows_static(app.tree.tree, root):
            return None
        replaced = _replaced(found[1], root, app, targets, before, after)
    except (WarpdriveError, tarfile.TarError):  # unreadable: collectstatic runs instead
        return None
    if replaced is None:
        return None
    files = merge_tars(found[1], replaced)
    layer = static_layer(root, files)
    static = StaticLayer("sha256:" + hashlib.sha256(layer).hexdigest(), lambda: layer)
    return Recollected(root, static, found[0], files, tuple(sorted(targets.values())))


def _replaced(
    files: bytes,
    root: str,
    app: AppPlan,
    targets: Mapping[str, str],
    before: Mapping[str, str],
    after: Mapping[str, str],
) -> bytes | None:
    """A tar of the changed members (each with its collected member's metadata and the
    source's new bytes), or None when one is not provably that file's copy: the collected
    bytes must be the file's bytes before (then this file, not another, was copied there)
    and the new bytes those the build hashed."""
    prefix = root.lstrip("/") + "/"
    wanted = {prefix + rel: relpath for rel, relpath in targets.items()}
    buf = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(files)) as tar,
        tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        seen = 0
        for member in tar:
            relpath = wanted.get(member.name)
            if relpath is None:
                continue
            fh = tar.extractfile(member) if member.isfile() else None
            if fh is None or hashlib.sha256(fh.read()).hexdigest() != _member(before[relpath])[1]:
                return None
            data = _source_bytes(app, relpath)
            if data is None or hashlib.sha256(data).hexdigest() != _member(after[relpath])[1]:
                return None
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
            seen += 1
    return buf.getvalue() if seen == len(wanted) else None


def _source_bytes(app: AppPlan, relpath: str) -> bytes | None:
    """A source file's bytes as the app layers hold them (read now, or kept in memory
    when it changed while the build read it)."""
    tree = app.tree
    found = tree.source(f"{tree.src}/{relpath}")
    if isinstance(found, bytes):
        return found
    try:
        return (tree.root / found).read_bytes()
    except OSError:
        return None
