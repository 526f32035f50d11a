"""The deps layer: the virtualenv with exactly the wheels the wheelhouse resolved,
installed with no network from the read-only volume, reused while its key (base image,
platform, installer, the wheels' hashes) holds, extended by a small layer when packages
were only added, and started early while the builder still compiles sdists."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runtime
from ..assembly import FIXED_CREATED
from ..config import Config
from ..engine import Engine, ImageInfo, Output
from ..errors import ConfigError, LayerRefused, WarpdriveError, cause_of, host_writes
from ..inputs.requirements import RequirementSet
from ..labels import (
    DEPS_FORMAT_LABEL,
    DEPS_KEY_LABEL,
    DEPS_PROJECT_LABEL,
    AppLabels,
    DepsLabels,
    deps_selector,
)
from ..layout import APP_ROOT, key_digest
from ..plan import VOLUME_DIR, CommitSpec, Step, VolumeMount, assemble
from ..platform import PlatformKey
from ..refs import docker_name, split_ref
from ..wheelhouse.wheels import Wheel, parse_wheel_id
from ..wheelhouse.wheels import wheel_ids as wheel_ids  # the deps key's and labels' wheel ids
from .deps_step import DEPS_SCRATCH as DEPS_SCRATCH
from .deps_step import DamagedWheels as DamagedWheels
from .deps_step import DepsPlan as DepsPlan
from .deps_step import Installer as Installer
from .deps_step import export_command, fits_in_memory, helpers, step_plan
from .deps_step import run_deps as run_deps
from .early_static import CollectJob, EarlyStatic
from .foreign_deps import build_native, native_way
from .libraries import MissingLibraries, dpkg_command, parse_dpkg_search
from .prestart import WAIT_SECONDS, Prestart

#: bump when the layout of the deps layer changes, so old deps images are not reused
#: ("3": every deps layer passed the shared-library and server check; one built before
#: it may hold a file that cannot load in the base image, and is built again once;
#: "4": reproducible, sorted with fixed mtimes, stable installer files and .pyc: one built
#: before would make every image on it differ from a clone's, and is built again once)
DEPS_FORMAT = "4"


def choose_installer(cfg: Config, manifest: Mapping[str, Any], pkey: PlatformKey) -> Installer:
    uv = manifest.get("tools", {}).get("uv") if isinstance(manifest.get("tools"), dict) else None
    if cfg.installer != "pip" and isinstance(uv, dict) and uv.get("path"):
        return Installer("uv", f"{VOLUME_DIR}/{pkey.slug}/{uv['path']}", str(uv.get("version")))
    if cfg.installer == "uv":
        raise ConfigError(
            f'installer = "uv" but the wheelhouse in {cfg.volume!r} has no uv for {pkey.slug}',
            fix="run `nox -s wheelhouse` with access to an index (it fetches uv), or set "
            '`installer = "auto"`',
        )
    return Installer("pip")


#: an incremental deps image may sit on at most this many earlier ones
MAX_DEPS_DEPTH = 4

#: the deps image a grow's container was started on is its parent unless another holds
#: more than this many more of the wanted wheels (find_parent)
STARTED_SLACK = 8


@dataclass(frozen=True)
class DepsParent:
    """An earlier deps image of this app whose wheels are a subset of the wanted ones:
    a new deps layer on top of it installs only what it lacks."""

    image: ImageInfo
    #: its wheels as wheel_ids() gives them ("file@sha")
    wheels: tuple[str, ...]
    #: how many incremental layers it already sits on
    depth: int


def find_parent(
    engine: Engine,
    cfg: Config,
    base: ImageInfo,
    installer: Installer,
    wanted: list[str],
    prefer: ImageInfo | None = None,
) -> DepsParent | None:
    """The earlier deps image of this app whose wheels are a strict subset of the wanted
    ones, with the most wheels: adding a package then installs only that package, in a
    small layer on top, instead of rebuilding the whole virtualenv. The image ``prefer``
    (the one a deps step's container was started on, found by this app's tag: its
    project label may name another app with the same layer, and an image made by an
    older release can hold the same wheels) is taken when no other holds more than
    STARTED_SLACK more of the wanted wheels: a few more small wheels installed cost less
    than a new container (0.6 s more, measured, when one with one more wheel won)."""
    best: DepsParent | None = None
    started: DepsParent | None = None
    want = set(wanted)

    def usable(have: Mapping[str, str]) -> DepsLabels | None:
        labels = DepsLabels.from_labels(have)
        if labels is None or labels.installer != installer.name + installer.version:
            return None
        return labels if labels.depth < MAX_DEPS_DEPTH and set(labels.wheels) < want else None

    selector = deps_selector(DEPS_FORMAT, deps_name(cfg), base.id)
    # only the usable ones are inspected: an app can have a hundred deps images
    listed = engine.images_with_labels(selector, lambda have: usable(have) is not None)
    del selector[DEPS_PROJECT_LABEL]
    if prefer is not None and selector.items() <= prefer.labels.items():
        listed = [*listed, prefer]
    for info in listed:
        labels = usable(info.labels)
        if labels is None:
            continue
        found = DepsParent(info, labels.wheels, labels.depth)
        if prefer is not None and info.id == prefer.id:
            started = found
        if best is None or len(found.wheels) > len(best.wheels):
            best = found
    if started is not None and best is not None:
        return started if len(best.wheels) - len(started.wheels) <= STARTED_SLACK else best
    return best


def deps_key(
    cfg: Config, base: ImageInfo, pkey: PlatformKey, installer: Installer, ids: list[str]
) -> str:
    """What a deps layer depends on: base image, platform, Python, installer, the wheels'
    hashes and the install script; not how the layer is made (export or commit)."""
    return key_digest(
        "deps",
        DEPS_FORMAT,
        base.id,
        pkey.slug,
        cfg.python,
        installer.name,
        installer.version,
        *ids,
        *map(runtime.read, runtime.ASSEMBLER),  # the step's script and what it imports
    )


def deps_labels(
    cfg: Config, base: ImageInfo, key: str, installer: Installer, ids: list[str], depth: int
) -> DepsLabels:
    return DepsLabels(
        key=key,
        format=DEPS_FORMAT,
        project=deps_name(cfg),
        base_id=base.id,
        installer=installer.name + installer.version,
        wheels=tuple(ids),
        depth=depth,
    )


def plan_deps(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    resolved: list[Wheel],
    installer: Installer | None = None,
    parent: DepsParent | None = None,
    export: bool = True,
    wait: bool = False,
) -> DepsPlan:
    """The deps layer: exactly the wheels the wheelhouse resolved, installed with
    ``--no-index --no-deps`` from the read-only volume, with no network at all. Keyed by
    base image, platform, installer and the wheels' hashes; on a ``parent`` (an earlier
    deps image with a subset of the wheels) only the added wheels are installed.

    A whole virtualenv is built in memory (tmpfs at APP_ROOT and for the unpacked wheels)
    and exported as the layer (``export``), which writes each file to disk once; an
    incremental one installs into the parent's virtualenv and is committed. ``wait``: a
    step started before its wheels are known (build/prestart.py)."""
    installer = installer or Installer("pip")
    have = {h.rsplit("@", 1)[0] for h in parent.wheels} if parent else set()
    in_memory = export and parent is None
    extra: dict[str, Any] = {"incremental": True} if parent is not None else {}
    if wait:
        extra["wait"] = WAIT_SECONDS
    tmpfs: tuple[str, ...] = ()
    exported: tuple[str, ...] = ()
    if export:  # a layer of exactly what the step made (on a parent: what it added)
        extra.update(export=True, tmpdir=DEPS_SCRATCH)
        tmpfs = (APP_ROOT, DEPS_SCRATCH) if in_memory else (DEPS_SCRATCH,)
        exported = export_command(cfg.python) if in_memory else _grow_export(cfg.python)
        if not in_memory:
            extra["grow"] = GROW_LIST
    return _deps_plan(
        cfg,
        (base, pkey, installer),
        resolved,
        have,
        parent.depth + 1 if parent else 0,
        parent.image.id if parent else base.id,
        extra,
        tmpfs=tmpfs,
        export=exported,
    )


def deps_name(cfg: Config) -> str:
    """This app's name among deps images: its image's repository (registry host and
    path kept, each part made a valid name), not the bare [project].name, so two projects
    both called "app" never share deps images (nor their labels) on one engine."""
    return deps_name_of(cfg.image)


def deps_name_of(image: str) -> str:
    """The deps images' name for an app image reference (deps_name)."""
    repo = split_ref(image)[0]
    return "/".join(docker_name(part) for part in repo.split("/"))


def deps_ref(cfg: Config, key: str) -> str:
    """The tag of this app's deps image for ``key``."""
    return f"warpdrive-deps/{deps_name(cfg)}:{key[:20]}"


def find_deps_image(engine: Engine, cfg: Config, key: str) -> ImageInfo | None:
    """This app's deps image for ``key``: by its tag, else by the tag builds before
    per-app names gave it (``warpdrive-deps/<[project].name>``), taken only when its
    key label is ``key`` (the key covers the base image and every wheel, so it is the
    same layer whoever built it)."""
    found = _find_deps(engine, cfg, key)
    return found[0] if found else None


def _find_deps(engine: Engine, cfg: Config, key: str) -> tuple[ImageInfo, str] | None:
    """The deps image for ``key`` and the tag it was found by."""
    for ref in dict.fromkeys((deps_ref(cfg, key), f"warpdrive-deps/{cfg.name}:{key[:20]}")):
        found = engine.image(ref)
        if found is not None and found.labels.get(DEPS_KEY_LABEL) == key:
            return found, ref
    return None


def _deps_plan(
    cfg: Config,
    target: tuple[ImageInfo, PlatformKey, Installer],
    resolved: list[Wheel],
    have: set[str],
    depth: int,
    image: str,
    extra: Mapping[str, Any],
    tmpfs: tuple[str, ...],
    export: tuple[str, ...],
) -> DepsPlan:
    """A deps step on ``image`` that installs the resolved wheels not in ``have`` (file
    names): keyed and labelled by all of them (``depth``: incremental layers below);
    ``extra``: what its plan.json adds for this way of making the layer."""
    base, pkey, installer = target
    ids = wheel_ids(resolved)
    key = deps_key(cfg, base, pkey, installer, ids)
    files = [f for f in sorted(w.filename for w in resolved) if f not in have]
    plan = {**step_plan(cfg, pkey, resolved, installer, files), **extra}
    labels = deps_labels(cfg, base, key, installer, ids, depth)
    step = Step(
        name="deps",
        image=image,
        command=assemble(cfg.python, "deps"),
        files=(("/tmp", helpers(plan)),),
        mounts=(VolumeMount(cfg.volume, VOLUME_DIR, read_only=True),),
        network="none",
        user="0:0",
        commit=CommitSpec(
            labels=labels.to_labels(), message="nox-warpdrive deps layer", created=FIXED_CREATED
        ),
        tmpfs=tmpfs,
        export=export,
    )
    parent = image if image != base.id else None
    return DepsPlan(key, deps_ref(cfg, key), step, parent, tuple(files))


#: where a grow step lists the paths of its layer (export @LIST)
GROW_LIST = f"{DEPS_SCRATCH}/grow.list"


def plan_grow(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    resolved: list[Wheel],
    installer: Installer,
    parent: DepsLabels,
) -> DepsPlan:
    """The layer that adds to a deps layer which is not on this engine (a cache in a
    registry, whose labels are ``parent``) the wheels it lacks: the same virtualenv is
    made afresh on the base image, in memory, and the layer is exactly what installing
    the added wheels adds or changes there (installing on the parent adds the same: it
    holds a subset of the wheels, none replaced, and the same skeleton). Keyed and
    labelled as ``plan_deps`` on a local parent would key and label it."""
    return _deps_plan(
        cfg,
        (base, pkey, installer),
        resolved,
        {h.rsplit("@", 1)[0] for h in parent.wheels},
        parent.depth + 1,
        base.id,
        {"grow": GROW_LIST, "export": True, "tmpdir": DEPS_SCRATCH},
        tmpfs=(APP_ROOT, DEPS_SCRATCH),
        export=_grow_export(cfg.python),
    )


def _grow_export(python: str) -> tuple[str, ...]:
    """The export of exactly the paths a deps step listed as added or changed."""
    return assemble(python, "export", "@" + GROW_LIST)


def can_grow(parent: DepsLabels | None, installer: Installer, wanted: list[str]) -> str:
    """Why a deps layer with these labels cannot be grown into one with the ``wanted``
    wheels (wheel ids) by a layer of added wheels ("" when it can): the same layout and
    installer, only wheels added, and a bounded depth (past it, the whole virtualenv is
    built again: one layer)."""
    if parent is None or parent.format != DEPS_FORMAT:
        return "its deps layer has an older layout"
    if parent.installer != installer.name + installer.version:
        return f"its deps layer was installed by {parent.installer or 'another installer'}"
    if not set(parent.wheels) < set(wanted):
        return "packages were removed or changed, not only added"
    if parent.depth >= MAX_DEPS_DEPTH:
        return f"its deps layer already sits on {parent.depth} layers of added packages"
    return ""


@dataclass(frozen=True)
class DepsDecision:
    """What a deps layer for exactly these wheels would be: ``found`` (an image with its
    key, reused), else built on ``parent`` (an earlier deps image with a subset of the
    wheels: only the added ones are installed), else built whole. ``plan``: the step
    (on the parent, when there is one)."""

    plan: DepsPlan
    found: ImageInfo | None
    parent: DepsParent | None
    #: the tag ``found`` was found by (an older release named deps images otherwise)
    found_ref: str | None = None

    @property
    def action(self) -> str:
        """ "reused", "extended" or "rebuilt"."""
        if self.found is not None:
            return "reused"
        return "extended" if self.parent is not None else "rebuilt"


def decide_deps(
    engine: Engine,
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    resolved: list[Wheel],
    installer: Installer,
    prefer: ImageInfo | None = None,
) -> DepsDecision:
    """Reuse, extend or rebuild: decided by reading the engine's images only (what
    ensure_deps then does, and what ``image -- --plan`` says it would do). ``prefer``:
    the parent to take among equals (find_parent)."""
    deps = plan_deps(cfg, base, pkey, resolved, installer)
    found = _find_deps(engine, cfg, deps.key)
    if found is not None:
        return DepsDecision(deps, found[0], None, found[1])
    parent = find_parent(engine, cfg, base, installer, wheel_ids(resolved), prefer)
    if parent is not None:
        return DepsDecision(plan_deps(cfg, base, pkey, resolved, installer, parent), None, parent)
    return DepsDecision(deps, None, None)


def ensure_deps(
    engine: Engine,
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    resolved: list[Wheel],
    installer: Installer,
    out: Output,
    background: bool = False,
    decided: DepsDecision | None = None,
    prestart: Prestart | None = None,
) -> tuple[str, bool, float]:
    """The deps image for exactly these wheels: found by its key, else built (on the
    earlier deps image with the most of them, when there is one) and tagged. Returns
    (image id, whether it was found, seconds spent building). ``background``: built
    while the wheelhouse compiles sdists, which come first on the CPUs; ``decided``:
    decide_deps's answer, when the caller asked it already; ``prestart``: a deps step's
    container started beforehand (build/prestart.py), used when it is this step's."""
    decided = decided or decide_deps(engine, cfg, base, pkey, resolved, installer)
    deps, parent = decided.plan, decided.parent
    if decided.found is not None:
        # tagged again: a deps image from before per-app names gets its name, and every
        # reused one its last use (LastTagTime), for the deps images' bound
        engine.tag(decided.found.id, deps.ref)
        return decided.found.id, True, 0.0
    if parent is not None:
        out(
            f"warpdrive: adding {len(deps.files)} wheels on top of the deps "
            f"layer {parent.image.id.split(':')[-1][:12]}"
        )
    elif not fits_in_memory(resolved, engine.memory_total()):
        deps = plan_deps(cfg, base, pkey, resolved, installer, export=False)
    twin = native_way(engine, cfg, (base, pkey, installer), parent is not None, out)
    try:
        try:
            if prestart is not None and twin is None:
                made = prestart.use(weighted(deps.step, background), out)
                if made is not None:
                    engine.tag(made, deps.ref)
                    return made, False, prestart.seconds
            if twin is not None:  # another CPU's layer, made natively (foreign_deps.py)
                result = build_native(
                    engine, cfg, deps, (base, pkey, installer), resolved, twin, out
                )
            else:
                result = run_deps(engine, weighted(deps.step, background), out)
        except LayerRefused as exc:
            out(f"warpdrive: {exc.message}; building the deps layer by commit instead")
            deps = plan_deps(cfg, base, pkey, resolved, installer, parent, export=False)
            result = run_deps(engine, weighted(deps.step, background), out)
    except MissingLibraries as exc:
        raise name_missing(engine, cfg, exc) from cause_of(exc)  # the same error, named
    assert result.image_id is not None
    engine.tag(result.image_id, deps.ref)
    return result.image_id, False, result.seconds


def weighted(step: Step, background: bool) -> Step:
    """The step, with a lower CPU weight when it runs beside the wheelhouse's compile."""
    return dataclasses.replace(step, cpu_shares=BACKGROUND_SHARES) if background else step


def name_missing(engine: Engine, cfg: Config, exc: MissingLibraries) -> MissingLibraries:
    """The error naming the base image and, where the builder image can say (`dpkg -S`:
    it has the -dev packages, so the libraries), the Debian package of each library."""
    found: dict[str, str] = {}
    with contextlib.suppress(WarpdriveError):
        output = engine.run_probe(cfg.builder_image, dpkg_command(sorted(exc.report)), "none")
        found = parse_dpkg_search(output, sorted(exc.report))
    return exc.named(cfg.base_image, found)


#: the CPU weight of a deps step made while the wheelhouse still compiles (a quarter of
#: the default 1024): the compile is the longer path, and an install and its bytecode
#: (compileall on every CPU) beside it at equal weight slowed it by half on 2 CPUs
BACKGROUND_SHARES = 256

#: the deps step's last line (runtime/assemble.py)
INSTALLED_IN = re.compile(r"virtualenv ready in (\d+(?:\.\d+)?) s")


class EarlyDeps:
    """A deps image for the wheels the wheelhouse has published while its builder still
    compiles sdists, built in a thread: installing and committing most packages then
    overlaps the compile, and the full deps layer afterwards adds only the built wheels
    on top (find_parent finds this image). When the wheelhouse is done before this image
    is, the layer of the wheels it lacks is made meanwhile (``add_late``), away from it,
    and put on it once it is there: the full deps image, as a grow on it would make it
    (the same layer and config). A failure here only costs the head start: the regular
    path after the wheelhouse builds whatever is missing, and reports errors."""

    def __init__(
        self,
        engine: Engine,
        cfg: Config,
        base: ImageInfo,
        pkey: PlatformKey,
        asked: frozenset[str] = frozenset(),
    ):
        self.engine, self.cfg, self.base, self.pkey = engine, cfg, base, pkey
        #: the requirements' project names (normalized): which deps image ``prestart``
        #: starts the container on when the current one's last packages are gone
        self.asked = asked
        self.thread: threading.Thread | None = None
        #: the installer of the thread's step (set before it starts), its decision, and
        #: the image it made or found
        self.installer: Installer | None = None
        self.decided: DepsDecision | None = None
        self.decided_ready = threading.Event()
        self.image_id: str | None = None
        #: the late wheels' layer, made while the thread still ran (add_late)
        self.late: tuple[DepsPlan, Path] | None = None
        self.late_dir: str | None = None
        self.lines: list[str] = []
        self.count = 0
        self.seconds = 0.0
        self.built = False
        self.error: WarpdriveError | None = None
        #: the build ended (the wheelhouse failed, or a signal): its container was removed
        self.cancelled = False
        #: the deps step's container started before the wheels were known (``prestart``)
        self.started: Prestart | None = None
        #: the deps image it was started on (None: the base image)
        self.started_on: ImageInfo | None = None
        #: collectstatic in that container while its layer loads (build/early_static.py)
        self.static: EarlyStatic | None = None
        self.early_files: frozenset[str] = frozenset()
        #: the manifest's read, then ``prestart``, beside the builder (``prestart_after``)
        self.reading: threading.Thread | None = None

    def prestart(
        self,
        current: ImageInfo | None,
        manifest: Mapping[str, Any],
        static: EarlyStatic | None = None,
    ) -> None:
        """Start the deps step's container while the wheelhouse resolves
        (build/prestart.py): on the deps layer of ``current`` (the image the tag names)
        when it can be grown, the likely step when requirements changed; else a whole
        virtualenv's, on the base image, where ``static`` may then collect. Not for
        another CPU's image."""
        if self.cfg.cross_builder or self.cfg.platforms:
            return
        try:
            installer = choose_installer(self.cfg, manifest, self.pkey)
        except WarpdriveError:
            return
        parent = self._below(current, installer)
        self.started_on = parent.image if parent is not None else None
        plan = plan_deps(self.cfg, self.base, self.pkey, [], installer, parent, wait=True)
        after = None
        if parent is None and static is not None:  # a whole virtualenv's container
            self.static = static
            after = functools.partial(static.run, self.engine)
        self.started = Prestart(self.engine, weighted(plan.step, True), after)

    def prestart_after(
        self,
        read: Callable[[], Mapping[str, Any]],
        current: ImageInfo | None,
        static: EarlyStatic | None = None,
    ) -> None:
        """``prestart`` in a thread, once ``read`` gives the manifest (the builder starts
        meanwhile: build/wheels_first.py). ``start`` waits for it; a failed read only
        costs the head start. The engine's platform, which the deps step asks for, is
        asked there too (20 ms less between the wheels and the deps layer)."""

        def run() -> None:
            with contextlib.suppress(WarpdriveError):
                self.prestart(current, read(), static)
                self.engine.about()

        self.reading = threading.Thread(target=run, name="warpdrive-manifest")
        self.reading.start()

    def _wait_read(self) -> None:
        if self.reading is not None:
            self.reading.join()

    def offer_static(self, full: list[Wheel]) -> None:
        """The whole resolved set is known: what the started container collects, if
        anything (its late wheels installed first)."""
        if self.static is not None:
            self.static.offer(lambda: self._static_job(full))

    def _static_job(self, full: list[Wheel]) -> CollectJob | None:
        names = {w.filename for w in full}
        installer, static = self.installer, self.static
        if installer is None or static is None or not self.early_files <= names:
            return None
        app = static.app_for(full, installer)
        if app is None:
            return None
        late = sorted(names - self.early_files)
        plan = step_plan(self.cfg, self.pkey, full, installer, late)
        reads = tuple(static.reads(full))
        return CollectJob(app, plan, self.cfg.python, reads)

    def _below(self, current: ImageInfo | None, installer: Installer) -> DepsParent | None:
        """The deps image of ``current``, when a layer of added wheels can go on it."""
        app = AppLabels.from_labels(current.labels) if current is not None else None
        below = find_deps_image(self.engine, self.cfg, app.deps_key) if app else None
        labels = DepsLabels.from_labels(below.labels) if below is not None else None
        if below is None or labels is None:
            return None
        if can_grow(labels, installer, [*labels.wheels, "+"]):  # "+": any one wheel more
            return None
        return self._unless_swapped(DepsParent(below, labels.wheels, labels.depth), installer)

    def _unless_swapped(self, found: DepsParent, installer: Installer) -> DepsParent:
        """``found``, unless it is a layer of added packages none of which the
        requirements name any more (a package tried, then swapped for another): then
        the image it was grown on, which the grow takes (find_parent: the current one
        holds a wheel no longer wanted). A guess: the container is used only when the
        grow decided on that very image (0.6 s lost when not: its removal and a new
        container)."""
        if not self.asked or found.depth == 0:
            return found
        below = find_parent(self.engine, self.cfg, self.base, installer, list(found.wheels))
        if below is None:
            return found
        added = {parse_wheel_id(w) for w in set(found.wheels) - set(below.wheels)}
        names = {p[0] for p in added if p is not None}
        return below if names and not names & self.asked else found

    def start(self, resolved: list[Wheel], tools: dict[str, Any]) -> None:
        self._wait_read()
        if self.thread is not None or not resolved:
            return
        try:
            installer = choose_installer(self.cfg, {"tools": tools}, self.pkey)
        except WarpdriveError:
            return  # the regular path reports it
        self.count, self.installer = len(resolved), installer
        self.early_files = frozenset(w.filename for w in resolved)
        self.thread = threading.Thread(
            target=self._run, args=(resolved, installer), name="warpdrive-early-deps"
        )
        self.thread.start()

    def _run(self, resolved: list[Wheel], installer: Installer) -> None:
        started = time.monotonic()
        try:
            args = (self.engine, self.cfg, self.base, self.pkey, resolved, installer)
            try:
                self.decided = decide_deps(*args, self.started_on)
            finally:
                self.decided_ready.set()
            self.image_id, reused, _ = ensure_deps(
                *args,
                self.lines.append,
                background=True,
                decided=self.decided,
                prestart=self.started,
            )
            self.built = not reused
        except WarpdriveError as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def add_late(self, full: list[Wheel], out: Output) -> None:
        """The layer of the wheels of ``full`` (the whole resolved set) that this image
        lacks, made now in a virtualenv of its own (plan_grow) when the thread still
        runs, its output shown as a grow's is; ``join`` puts it on the image."""
        if self.thread is None or not self.thread.is_alive() or self.installer is None:
            return
        if not self.decided_ready.wait(10) or self.decided is None:
            return
        decided = self.decided
        commit = decided.plan.step.commit
        below = decided.found.labels if decided.found else commit.labels if commit else {}
        parent = DepsLabels.from_labels(below)
        if parent is None or can_grow(parent, self.installer, wheel_ids(full)):
            return
        grow = plan_grow(self.cfg, self.base, self.pkey, full, self.installer, parent)
        if _find_deps(self.engine, self.cfg, grow.key) is not None:
            return  # built before: the regular path finds it
        self.late_dir = tempfile.mkdtemp(prefix="warpdrive-late-")
        layer = Path(self.late_dir) / "layer.tar"
        try:
            with host_writes(self.late_dir):
                run_deps(self.engine, grow.step, out, layer)
        except WarpdriveError:
            return  # the regular path grows the image, and says why if it cannot
        self.late = (grow, layer)

    def _put_late(self, out: Output) -> None:
        """The late layer on the image the thread made: the full deps image, tagged."""
        if self.late is None or self.image_id is None or self.error is not None:
            return
        grow, layer = self.late
        assert grow.step.commit is not None
        try:
            image_id = self.engine.append_layer(
                self.image_id, layer, grow.step.commit, grow.step.created_by
            )
            self.engine.tag(image_id, grow.ref)
        except WarpdriveError:
            return
        out(
            f"warpdrive: {len(grow.files)} wheels the builder made added as a layer of "
            "their own while the first ones were installed"
        )

    def cancel(self) -> None:
        """The build is being interrupted: end the thread's container now, so that
        ``join`` does not wait for its install."""
        if self.static is not None:
            self.static.offer(None)
        if self.thread is not None:
            self.cancelled = True
            self.engine.abort()

    def join(self, out: Output) -> float | None:
        """Wait for the thread (then put the late layer on its image); the seconds it
        took, None when it did not build."""
        self._wait_read()
        if self.static is not None:
            self.static.offer(None)  # unless offered: it does not wait for the build
        if self.thread is not None:
            self.thread.join()
        if self.started is not None:
            self.started.cancel()  # unless the thread used it
        if self.thread is None:
            return None
        try:
            if not self.cancelled:
                self._put_late(out)
        finally:
            if self.late_dir is not None:
                shutil.rmtree(self.late_dir, ignore_errors=True)
        if self.cancelled:
            return None  # stopped on purpose: its "killed" is not news
        if self.error is not None:
            out(
                f"warpdrive: installing the first {self.count} wheels early failed "
                f"({self.error.message.splitlines()[0]}); trying again after the wheelhouse"
            )
            return None
        if not self.built:
            return None
        installed = next(
            (m.group(1) for m in map(INSTALLED_IN.search, reversed(self.lines)) if m), None
        )
        detail = f"installed in {installed} s, " if installed else ""
        for line in self.lines:
            if line.startswith("warpdrive: adding "):
                out(line)  # it was built on an earlier deps layer
        out(
            f"warpdrive: deps layer for the first {self.count} wheels built while the "
            f"wheelhouse finished ({detail}{self.seconds:.1f} s in all)"
        )
        if self.static is not None:
            self.static.report(out)
        return self.seconds


def known_deps(
    engine: Engine,
    cfg: Config,
    current: ImageInfo | None,
    base: ImageInfo,
    pkey: PlatformKey,
    reqs: RequirementSet,
) -> ImageInfo | None:
    """The deps image of the current image, when it was built for exactly these
    requirements on this base: then the wheelhouse need not even be read (a code change
    rebuilds the app layer and nothing else)."""
    key = built_for(current.labels, cfg, base, pkey, reqs) if current is not None else ""
    return find_deps_image(engine, cfg, key) if key else None


def built_for(
    labels: Mapping[str, str],
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    reqs: RequirementSet,
) -> str:
    """The deps key of an app image (its labels) when it was built for exactly these
    requirements on this base, with this installer setting and deps layout; else ""."""
    app = AppLabels.from_labels(labels)
    if (
        app is None
        or app.requirements != reqs.digest
        or app.base_image_id != base.id
        or app.platform_key != pkey.slug
        or app.installer_setting != cfg.installer
        # the layout of the deps layer it inherited (deps images never lacked this one)
        or labels.get(DEPS_FORMAT_LABEL) != DEPS_FORMAT
    ):
        return ""
    return app.deps_key
