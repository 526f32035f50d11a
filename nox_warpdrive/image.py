"""The app image: a deps layer (virtualenv from the wheelhouse) reused while its key
holds, and an app layer (source, collectstatic) on top, the only one a code change
rebuilds. Both are made by run + commit from plans; tags move only at the very end."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .build import static_cache
from .build.app_layer import AppPlan, plan_app, source_facts
from .build.deps import (
    DamagedWheels,
    Installer,
    can_grow,
    choose_installer,
    ensure_deps,
    known_deps,
    plan_deps,
    plan_grow,
)
from .build.early_static import EarlyStatic
from .build.native_static import Collected, native_collect
from .build.static import (
    Recollected,
    earlier_static,
    installed_wheels,
    read_static,
    recollect,
    reusable_static,
    shadows_static,
    split_static,
    static_reusable,
)
from .build.static_sibling import sibling_hook, sibling_static, top_layer
from .build.wheels_first import wheels_for
from .config import Config
from .engine import Engine, ImageInfo, Output
from .errors import EngineError, LayerRefused, RegistryError, WarpdriveError, host_writes
from .inputs.read import inputs_line
from .inputs.requirements import RequirementSet
from .labels import DEPS_KEY_LABEL, STATIC_ROOT_LABEL, AppLabels, DepsLabels
from .plan import CommitSpec
from .platform import PlatformKey
from .refs import split_ref
from .registry import cache as registry
from .source.image_layers import StaticLayer, append_app
from .supply.gather import metadata_paths, record_supply, remember_metadata
from .wheelhouse.build import (
    BuildInputs,
    WheelhouseResult,
    build_inputs,
    check_kept,
    probe_image,
)
from .wheelhouse.wheels import Wheel, wheel_ids

if TYPE_CHECKING:
    from .registry import build as registry_build


@dataclass(frozen=True)
class ImageResult:
    ref: str
    image_id: str
    up_to_date: bool
    deps_reused: bool
    size: int
    layers: int
    seconds: float
    timings: tuple[tuple[str, float], ...] = ()
    #: the wheelhouse build this image build ran (None: the wheelhouse had every wheel)
    wheelhouse: WheelhouseResult | None = None
    #: built in the registry (--push-only): what it did there; None when built here
    pushed: registry_build.Pushed | None = None

    def summary(self) -> str:
        if self.pushed is not None:
            from .registry.build import summary

            return summary(self.pushed, self.seconds)
        if self.up_to_date:
            return f"image {self.ref} up to date, nothing rebuilt ({self.seconds:.1f} s)"
        deps = "deps layer reused" if self.deps_reused else "deps layer built"
        steps = ", ".join(f"{n} {s:.1f} s" for n, s in self.timings)
        return f"image {self.ref} built: {deps}, app layer built ({steps}; {self.seconds:.1f} s)"

    def table(self) -> str:
        rows = [
            ("image", "id", "size", "layers"),
            (
                self.ref,
                self.image_id.split(":")[-1][:12],
                f"{self.size / 1e6:.1f} MB",
                str(self.layers),
            ),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
        return "\n".join(lines)


@dataclass
class _Build:
    """What one image build knows as it goes (internal to build_image)."""

    cfg: Config
    engine: Engine
    out: Output
    ref: str
    base: ImageInfo
    pkey: PlatformKey
    inputs: BuildInputs
    current: ImageInfo | None
    no_index: bool
    timings: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    #: the wheels the deps layer installs (None: the current image's deps layer is reused)
    resolved: list[Wheel] | None = None
    installer: Installer = dataclasses.field(default_factory=lambda: Installer("none"))
    deps_key: str = ""
    deps_image: ImageInfo | None = None
    #: seconds an early deps layer took in this build (None: none was built)
    early_seconds: float | None = None
    #: what the tag names now (``current`` may instead be a cache pulled from a registry)
    tagged: ImageInfo | None = None
    #: the wheelhouse builds this build ran (a repair of damaged wheels is a second one)
    wheelhouse: list[WheelhouseResult] = dataclasses.field(default_factory=list)
    #: the cache's deps layers are known not to carry this build (its labels were read
    #: in the registry): the wheelhouse is built while the cache is pulled
    wheels_first: bool = False
    #: --push-only on a cache for other requirements: may be grown in the registry
    grow: registry_build.Grow | None = None
    #: the wheels and manifest that build made, for the deps key
    prebuilt: tuple[list[Wheel], Mapping[str, Any]] | None = None
    #: the manifest's wheel -> sdist sha256 of the wheels compiled here (for the SBOM)
    built_from: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: another platform's image of this build, whose collected static files this one
    #: may take (build/static_sibling.py)
    static_from: ImageInfo | None = None
    #: collectstatic beside the early deps layer's load, and the app plan (with its
    #: deps key) it was given (build/early_static.py)
    early_static: EarlyStatic | None = None
    early_app: tuple[str, AppPlan] | None = None

    @property
    def target(self) -> tuple[ImageInfo, PlatformKey]:
        return self.base, self.pkey

    @property
    def reqs(self) -> RequirementSet:
        return self.inputs.reqs

    @property
    def built(self) -> WheelhouseResult | None:
        """The last wheelhouse build this build ran, if any."""
        return self.wheelhouse[-1] if self.wheelhouse else None


def build_image(
    cfg: Config,
    engine: Engine,
    out: Output,
    *,
    no_index: bool | None = None,
    tag: str | None = None,
    cache_from: str | None = None,
    push_only: bool = False,
    static_from: ImageInfo | None = None,
) -> ImageResult:
    """Build (or find up to date) the app image. Without --no-index, requirements the
    wheelhouse lacks are built into it first (cached, incremental); with it, they are an
    error and nothing is fetched. ``cache_from``: an earlier app image in a registry
    whose layers this build may reuse (registry/cache.py). The tag moves only once everything
    succeeded. ``push_only``: build it in the registry from the cache's layers when it
    can (registry/build.py), else here, saying why. ``static_from``: another platform's
    image of this build, whose collected static files this one may take."""
    started = time.monotonic()
    b = _start(cfg, engine, out, cfg.no_index if no_index is None else no_index, tag)
    b.static_from = static_from
    if push_only:
        cache_from = cache_from or b.ref  # the image it pushes to is its cache
        in_registry = _in_registry(b, cache_from, started)
        if in_registry is None and b.grow is not None:
            in_registry = _grow_in_registry(b, b.grow, started)
        if in_registry is not None:
            return in_registry
    if cache_from and b.wheels_first:
        _pull_while_wheels(b, cache_from)
    elif cache_from:
        pulled = registry.cache_from(engine, cfg, cache_from, b.base, out)
        b.current = b.current or pulled
    _settle_deps_key(b)
    app = _plan_app(b)
    for line in app.notices:
        out(line)
    current = b.current
    if current is not None and app.made(current):
        if current.id != (b.tagged.id if b.tagged else None):
            engine.tag(current.id, b.ref)  # the cache is this very build
        seconds = time.monotonic() - started
        return ImageResult(
            b.ref, current.id, True, True, current.size, current.layers, seconds, (), b.built
        )
    deps_id, deps_reused, app = _deps_layer(b, app)
    supply = _supply_beside(b, deps_id)
    app_started = time.monotonic()
    try:
        image_id = _app_layer(b, app, deps_id)
    finally:
        supply.join()
    for line in app.grown_notices():
        out(line)
    b.timings.append(("app", time.monotonic() - app_started))
    final = _move_tag(engine, b.ref, image_id, current)
    _remember_static(final)
    seconds = time.monotonic() - started
    timings = tuple(b.timings)
    return ImageResult(
        b.ref, final.id, False, deps_reused, final.size, final.layers, seconds, timings, b.built
    )


def _supply_beside(b: _Build, deps_id: str) -> _Background[None]:
    """The SBOM's records (read out of the images once, when missing) gathered while the
    app layer is made: neither needs the other."""
    read = b.early_static.read if b.early_static is not None else {}
    if read and b.resolved:  # read back beside the deps layer's load
        remember_metadata(b.resolved, b.pkey.python_version, read)
    return _Background(
        lambda: record_supply(
            b.engine,
            b.cfg.base_image,
            b.base,
            b.deps_key,
            deps_id,
            b.resolved,
            b.built_from,
            b.pkey,
        ),
        "warpdrive-supply",
    )


T = TypeVar("T")


class _Background(Generic[T]):
    """A call run in a thread beside the build; ``join`` waits for it and gives what it
    returned, or raises what it raised, in the build's thread (a build must not hide an
    error of its own, nor print a thread's traceback)."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._result: list[T] = []
        self._error: BaseException | None = None
        self._call = call
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result.append(self._call())
        except BaseException as exc:  # handed to join, in the build's thread
            self._error = exc

    def join(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result[0]


def _in_registry(b: _Build, cache_ref: str, started: float) -> ImageResult | None:
    """The image built in the registry, pulling nothing (None, and one line saying why,
    when it has to be built here): the cache's manifest and config are read, and only
    the app layers it lacks are uploaded."""
    from .registry import build as registry_build

    try:
        found = registry_build.prepare(b.engine, b.cfg, b.ref, cache_ref, b.target, b.reqs, b.out)
        if isinstance(found, registry_build.Grow):
            b.wheels_first, b.grow = True, found
            return None
        if isinstance(found, registry_build.Fallback):
            return None
        b.deps_key, cache = found.deps_key, found.cache
        app = _plan_app(b)
        for line in app.notices:
            b.out(line)
        pushed = registry_build.push_only(found, app, b.base, b.out)
    except RegistryError as exc:
        _cannot_build_there(b, exc)
        return None
    if pushed is None:
        return None
    image_id = cache.info.id if pushed.up_to_date else pushed.config_digest
    return _pushed_result(b, image_id, pushed, started)


def _cannot_build_there(b: _Build, exc: WarpdriveError) -> None:
    """One warning, and its fix: the image is built here instead of in the registry."""
    b.out(f"warpdrive: warning: cannot build in the registry ({exc.message}); building here")
    if exc.fix:
        b.out(f"  fix: {exc.fix}")


def _pushed_result(
    b: _Build, image_id: str, pushed: registry_build.Pushed, started: float
) -> ImageResult:
    seconds = time.monotonic() - started
    reused = not pushed.wheels_added
    return ImageResult(
        b.ref,
        image_id,
        pushed.up_to_date,
        reused,
        pushed.size,
        pushed.layers,
        seconds,
        tuple(b.timings),
        b.built,
        pushed=pushed,
    )


def _grow_in_registry(b: _Build, found: registry_build.Grow, started: float) -> ImageResult | None:
    """The image built in the registry on a cache for other requirements, when they only
    add packages: the wheelhouse built for them (no cache pulled), then a layer of the
    added wheels on the cache's deps layers; None (one line saying why) when the build
    has to happen here instead, the wheelhouse kept for it."""
    from .registry import build as registry_build

    resolved, manifest = _wheels_first(b)
    installer = choose_installer(b.cfg, manifest, b.pkey) if resolved else Installer("none")
    parent = DepsLabels.from_labels(found.cache.info.labels)
    why = can_grow(parent, installer, wheel_ids(resolved))
    if why or parent is None:
        b.out(f"warpdrive: the cache cannot be added to ({why}){registry_build.FALLBACK}")
        return None
    deps = plan_grow(b.cfg, b.base, b.pkey, resolved, installer, parent)
    b.deps_key = deps.key
    app = _plan_app(b)
    for line in app.notices:
        b.out(line)
    b.out(f"warpdrive: adding {len(deps.files)} wheels on the cache's deps layers")
    try:
        pushed = registry_build.grow(found, deps, app, b.base, b.engine, b.out)
    except (RegistryError, DamagedWheels) as exc:
        _cannot_build_there(b, exc)
        return None
    if pushed is None:
        return None
    return _pushed_result(b, pushed.config_digest, pushed, started)


def _pull_while_wheels(b: _Build, cache_from: str) -> None:
    """The cache pulled in a thread while the wheelhouse builds what the changed
    requirements need (on a fresh runner the pull is most of the time, and the wheelhouse
    does not need the cache). No early deps layer: the deps layer goes on the cache's,
    once it is here."""
    pull = _Background(
        lambda: registry.cache_from(b.engine, b.cfg, cache_from, b.base, b.out),
        "warpdrive-cache-pull",
    )
    _wheels_first(b)
    b.current = b.current or pull.join()


def _wheels_first(b: _Build) -> tuple[list[Wheel], Mapping[str, Any]]:
    """The wheels and manifest for the changed requirements, built before any deps
    layer (none early: this build's goes on the cache's), once per build: a build in the
    registry that had to give up keeps them for the build here."""
    if b.prebuilt is None:
        resolved, manifest, _ = wheels_for(
            b.cfg,
            b.engine,
            b.out,
            b.target,
            b.reqs,
            b.no_index,
            b.timings,
            built=b.wheelhouse,
            early_deps=False,
        )
        b.prebuilt = (resolved, manifest)
    return b.prebuilt


def _probe_beside(engine: Engine, cfg: Config) -> _Background[None] | None:
    """The builder image probed (and its probe kept) while the base image is: the
    wheelhouse asks for both, one after the other, and each is a container start (under
    emulation for another CPU, over a second each). A failure is left for the wheelhouse's
    own probe to report."""

    def probe() -> None:
        with contextlib.suppress(WarpdriveError):
            probe_image(engine, cfg.builder_image, "builder-image", cfg)

    if cfg.builder_image == cfg.base_image:
        return None
    return _Background(probe, "warpdrive-probe")


def _start(cfg: Config, engine: Engine, out: Output, no_index: bool, tag: str | None) -> _Build:
    ref = tag or cfg.image
    split_ref(ref)
    builder = _probe_beside(engine, cfg)
    try:
        base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    finally:
        if builder is not None:
            builder.join()
    inputs = build_inputs(cfg, pkey)  # a lock's markers, for the image's platform
    out(inputs_line(cfg, inputs.reqs))
    tagged = engine.image(ref)
    return _Build(cfg, engine, out, ref, base, pkey, inputs, tagged, no_index, tagged=tagged)


def _settle_deps_key(b: _Build, check_files: tuple[str, ...] = ()) -> None:
    """The deps key: the current image's, when it was built for exactly these
    requirements (the wheelhouse is then not even read), else from the resolved wheels."""
    if not check_files and not b.cfg.upgrade:
        b.deps_image = known_deps(b.engine, b.cfg, b.current, b.base, b.pkey, b.reqs)
    if b.deps_image is not None:
        b.deps_key = b.deps_image.labels[DEPS_KEY_LABEL]
        return
    if b.prebuilt is not None and not check_files:
        (resolved, manifest), early = b.prebuilt, None
    else:
        static = None if check_files else _early_static(b)
        resolved, manifest, early = wheels_for(
            b.cfg,
            b.engine,
            b.out,
            b.target,
            b.reqs,
            b.no_index,
            b.timings,
            check_files,
            b.wheelhouse,
            current=b.current,
            static=static,
        )
        b.early_static = static
    b.resolved, b.built_from = resolved, manifest.get("built_from") or {}
    if not check_files:  # a repair builds no early layer
        b.early_seconds = early
    b.installer = choose_installer(b.cfg, manifest, b.pkey) if resolved else Installer("none")
    b.deps_key = plan_deps(b.cfg, b.base, b.pkey, resolved, b.installer).key


def _early_static(b: _Build) -> EarlyStatic:
    """collectstatic beside the early deps layer's load, and the METADATA the SBOM's
    records need read back from there too (record_supply then reads no image)."""
    return EarlyStatic(
        lambda full, installer: _early_app(b, full, installer),
        lambda full: metadata_paths(full, b.pkey.python_version),
    )


def _early_app(b: _Build, full: list[Wheel], installer: Installer) -> AppPlan | None:
    """The app plan for the whole resolved set when its collectstatic is to run beside
    the deps layer's load: it runs one, no build hook, and the current image's collected
    files do not fit (another platform's image of the build lends its own)."""
    key = plan_deps(b.cfg, b.base, b.pkey, full, installer).key
    app = _plan_app(b, key)
    if not app.collectstatic or app.build_hook or b.static_from is not None:
        return None
    if static_reusable(b.current, app, key, wheel_ids(full)):
        return None
    b.early_app = (key, app)
    return app


def _plan_app(b: _Build, deps_key: str | None = None) -> AppPlan:
    """The app plan on the deps key (``deps_key``, else the build's), made once."""
    key = b.deps_key if deps_key is None else deps_key
    if b.early_app is not None and b.early_app[0] == key:
        return b.early_app[1]
    labels, created = source_facts(b.cfg.project_dir)
    return plan_app(
        b.cfg,
        b.base,
        b.pkey,
        key,
        source_label=b.cfg.name,  # not the folder: a clone may be named otherwise
        requirements_digest=b.reqs.digest,
        source_labels=labels,
        created=created,
        inputs=b.inputs,
    )


def _deps_layer(b: _Build, app: AppPlan) -> tuple[str, bool, AppPlan]:
    """(the deps image id, whether it was reused, the app plan): a wheel found damaged
    is fetched or built again, which may change the deps key and so the app plan."""
    if b.deps_image is not None:
        return b.deps_image.id, True, app
    assert b.resolved is not None
    try:
        deps_id, reused, seconds = ensure_deps(
            b.engine, b.cfg, b.base, b.pkey, b.resolved, b.installer, b.out
        )
    except DamagedWheels as exc:
        if exc.missing:  # a volume that did not keep its files is no wheel to repair
            check_kept(b.engine, b.cfg.volume, b.pkey, b.base.id)
        b.out(f"warpdrive: warning: {exc.message}; fetching or building them again")
        _settle_deps_key(b, exc.files)
        assert b.resolved is not None
        app = _plan_app(b)
        deps_id, reused, seconds = ensure_deps(
            b.engine, b.cfg, b.base, b.pkey, b.resolved, b.installer, b.out
        )
    if not reused:
        b.timings.append(("deps", seconds))
    # found, but built moments ago from the wheels the wheelhouse published early
    return deps_id, reused and b.early_seconds is None, app


@dataclass(frozen=True)
class _Static:
    """How this build gets its collected static files without running collectstatic:
    the commit spec (the label naming their root) and their layer (named, or read only
    if it has to be sent)."""

    spec: CommitSpec
    layer: StaticLayer | None = None
    #: the image whose files they are (its host copy is named for the new image too)
    source: ImageInfo | None = None
    #: the files re-collected from the current image's (only the changed ones copied)
    recollected: Recollected | None = None
    #: the files collected for another CPU's image on the engine's own (native_static.py)
    collected: Collected | None = None
    #: the id of an earlier image whose files (the host's copy) are these
    earlier: str | None = None


def _static_reuse(b: _Build, app: AppPlan) -> _Static:
    """The current image's collected files, when their inputs are unchanged, else those
    of another platform's image of this build, when they are what collectstatic would
    make here (and the source has no copy of them collected on the host: collectstatic,
    in a container, overwrites those, which a layer under the source could not)."""
    plain = _Static(app.commit)
    if not app.collectstatic or app.build_hook:
        return plain
    early = b.early_static.for_app(app) if b.early_static is not None else None
    if early is not None:  # collected beside the deps layer's load
        return _collected_static(app, early)
    wheels = wheel_ids(b.resolved) if b.resolved is not None else None
    found, source = reusable_static(b.engine, b.current, app, b.deps_key, wheels), b.current
    if found is None and b.static_from is not None:
        found, source = sibling_static(b.engine, b.static_from, app, b.resolved), b.static_from
    if found is None:
        before = earlier_static(app, installed_wheels(wheels, b.current, b.deps_key))
        if before is not None and not shadows_static(app.tree.tree, before[1]):
            image_id, root, layer = before
            labels = {**app.commit.labels, STATIC_ROOT_LABEL: root}
            return _Static(dataclasses.replace(app.commit, labels=labels), layer, earlier=image_id)
        again = recollect(b.engine, b.current, app, b.deps_key, wheels)
        if again is None:
            return plain
        labels = {**app.commit.labels, STATIC_ROOT_LABEL: again.root}
        spec = dataclasses.replace(app.commit, labels=labels)
        return _Static(spec, again.layer, recollected=again)
    if shadows_static(app.tree.tree, found[0]):
        return plain
    root, layer = found
    labels = {**app.commit.labels, STATIC_ROOT_LABEL: root}
    return _Static(dataclasses.replace(app.commit, labels=labels), layer, source)


def _app_layer(b: _Build, app: AppPlan, deps_id: str) -> str:
    """The app image: the app layers appended with no container when nothing has to
    run at build time (or the collected files are reused), else built in a container."""
    for line in app.static_notes:
        b.out(line)
    static = _static_reuse(b, app)
    if static.recollected is not None:
        changed = static.recollected.changed
        b.out(
            f"warpdrive: {len(changed)} static file(s) changed ({', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}); re-collected only those"
        )
    elif static.layer is not None and static.source is not None and static.source is b.static_from:
        b.out("warpdrive: the collected static files of the first platform's image reused")
    elif static.earlier is not None:
        b.out(
            f"warpdrive: static inputs and packages as in an earlier image "
            f"({static.earlier.removeprefix('sha256:')[:12]}); reusing the collected static files"
        )
    elif static.layer is not None and static.collected is None:
        b.out("warpdrive: static inputs unchanged; reusing the collected static files")
    if app.build_hook and static.layer is None:
        shared = _hook_from_sibling(b, app, deps_id)
        if shared is not None:
            return shared
    if app.runs_something and static.layer is None:
        static = _native_static(b, app, deps_id) or static
    if app.runs_something and static.layer is None:
        return _app_container(b, app, deps_id)
    try:
        image_id = _append_app(b, app, deps_id, static.spec, static.layer)
    except EngineError as exc:
        b.out(f"warpdrive: {exc.message}; building the app layer in a container instead")
        return _app_container(b, app, deps_id, fallback=True)
    found = static.recollected or static.collected
    if found is not None:
        static_cache.store(image_id, found.record, found.files)
    elif static.layer is not None and static.source is not None:
        static_cache.copy(static.source.id, image_id)  # the same files, under the new image
    elif static.earlier is not None:
        static_cache.copy(static.earlier, image_id)
    return image_id


def _hook_from_sibling(b: _Build, app: AppPlan, deps_id: str) -> str | None:
    """The app image with the layer that the build step (the hook, then collectstatic)
    committed on the first platform's image, when that step read the same
    (static_sibling.sibling_hook) and that image has the same app layers below it: the
    hook runs once per build. None: it runs here."""
    sibling = b.static_from
    if sibling is None or not sibling_hook(sibling, app, b.resolved):
        return None
    try:
        below = _append_app(b, app, deps_id, app.commit)
    except LayerRefused:
        return None  # the container way says why
    mine = b.engine.require_image(below, "app image").diff_ids
    mine = mine[len(b.engine.require_image(deps_id, "deps image").diff_ids) :]
    if not mine or list(mine) != list(sibling.diff_ids[-len(mine) - 1 : -1]):
        b.out("warpdrive: the first platform's image has other app layers; running the hook")
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="warpdrive-hook-") as tmp, host_writes(tmp):
            layer = Path(tmp) / "layer.tar"
            top_layer(b.engine, sibling, layer)
            image_id = b.engine.append_layer(
                below, layer, app.commit, created_by="nox-warpdrive app build step layer"
            )
    except WarpdriveError as exc:
        b.out(f"warpdrive: {exc.message}; running the build hook here instead")
        return None
    b.out("warpdrive: the build hook's layer of the first platform's image reused (it ran once)")
    return image_id


def _native_static(b: _Build, app: AppPlan, deps_id: str) -> _Static | None:
    """The collected files of a foreign image collected on the engine's own CPU, when
    they can be (build/native_static.py), as a static layer like a reused one."""
    collected = native_collect(b.engine, b.cfg, b.target, deps_id, app, b.out)
    return _collected_static(app, collected) if collected is not None else None


def _collected_static(app: AppPlan, collected: Collected) -> _Static:
    """Files collected in another container than the app step's, as its static layer."""
    labels = {**app.commit.labels, STATIC_ROOT_LABEL: collected.root}
    spec = dataclasses.replace(app.commit, labels=labels)
    return _Static(spec, collected.layer, collected=collected)


def _append_app(
    b: _Build, app: AppPlan, deps_id: str, spec: CommitSpec, static: StaticLayer | None = None
) -> str:
    """The app layers on the deps image by one `docker load`: what the engine already
    has at its place is named, only changes are sent."""
    deps = b.deps_image if b.deps_image is not None and b.deps_image.id == deps_id else None
    deps = deps or b.engine.require_image(deps_id, "deps image")
    return append_app(b.engine, deps, app.tree, spec, static=static, current=b.current)


def _app_container(b: _Build, app: AppPlan, deps_id: str, fallback: bool = False) -> str:
    """The app image when something runs at build time: the app layers appended (as a
    code change would make them, no archive of the whole tree in memory), the build step
    run on them and committed; collected static files then become a layer of their own.
    ``fallback``: the engine refused the appended layers, so the tree is put into a
    container of the deps image instead (all of it, in one archive)."""
    if fallback:
        step = app.step(deps_id)
        if not app.runs_something:
            step = dataclasses.replace(step, command=None, files=(("/", app.layer),))
        image_id = b.engine.run_checked(step, b.out).image_id
        assert image_id is not None
        return image_id
    try:
        below = _append_app(b, app, deps_id, app.commit)
    except LayerRefused as exc:  # as in _app_layer: the engine answered, another way then
        b.out(f"warpdrive: {exc.message}; building the app layer in a container instead")
        return _app_container(b, app, deps_id, fallback=True)
    try:
        image_id = b.engine.run_checked(app.build_step(below), b.out).image_id
    except BaseException:
        b.engine.remove_image(below)
        raise
    assert image_id is not None
    if not app.collectstatic or app.build_hook:
        return image_id  # the hook's files stay where it made them, on the app layers
    # a host copy of what was collected: the next code change reads no image
    collected = None
    with contextlib.suppress(WarpdriveError):
        collected = read_static(b.engine, image_id)
    if collected is not None:
        split = split_static(b.engine, deps_id, app, image_id, collected, b.current)
        if split != image_id:
            b.engine.remove_image(below)
            return split
    return image_id


def _remember_static(image: ImageInfo) -> None:
    """Index the new image's collected files (when the host keeps them) by its static
    key and packages: a later build with the same inputs and fewer packages finds them
    (static.earlier_static) after this image has lost its tag."""
    app, deps = AppLabels.from_labels(image.labels), DepsLabels.from_labels(image.labels)
    if app is not None and deps is not None and app.static_key:
        static_cache.remember_key(app.title, app.static_key, deps.wheels, image.id)


def _move_tag(engine: Engine, ref: str, image_id: str, current: ImageInfo | None) -> ImageInfo:
    """Tag the new image; the image the tag named before is removed unless another tag
    names it or a container uses it (the engine refuses that). Deps images stay: they
    are the cache."""
    engine.tag(image_id, ref)
    final = engine.image(ref)
    assert final is not None
    if current is not None and current.id != final.id:
        old = engine.image(current.id)
        if old is not None and not old.tags:
            engine.remove_image(current.id)
    return final
