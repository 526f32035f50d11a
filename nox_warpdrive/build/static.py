"""Collected static files (Django collectstatic): when their inputs are unchanged they
are reused from the current image, as a layer of their own under the app layer that a
code change names by diff ID instead of sending again."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import tarfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..config import Config
from ..engine import Engine, ImageInfo
from ..errors import EngineError, LayerRefused, WarpdriveError
from ..inputs.requirements import read_requirements
from ..labels import STATIC_LAYER_LABEL, STATIC_ROOT_LABEL, AppLabels, DepsLabels
from ..layout import APP_SRC, APP_UID, STATIC_ROOT_RECORD, skeleton_tar
from ..source.archive import source_date_epoch
from ..source.image_layers import StaticLayer, append_app
from ..source.layers import CREATED_BY, STATIC
from ..tars import dir_tar, merge_tars, normalize_tar, reprefix_tar
from . import static_cache

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
