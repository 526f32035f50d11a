"""The app image: a deps layer (virtualenv from the wheelhouse) reused while its key
holds, and an app layer (source, collectstatic) on top, the only one a code change
rebuilds. Both are made by run + commit from plans; tags move only at the very end."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import static_cache
from .app_layer import plan_app
from .config import Config, RequirementSet, split_ref
from .deps import (
    DamagedWheels,
    EarlyDeps,
    Installer,
    choose_installer,
    ensure_deps,
    known_deps,
    plan_deps,
    wheel_ids,
)
from .engine import Engine, ImageInfo, Output
from .errors import EngineError, WarpdriveError
from .layout import (
    LABEL_PREFIX,
    STATIC_ROOT_RECORD,
)
from .plan import Step
from .platform import PlatformKey
from .static import (
    STATIC_CREATED_BY,
    STATIC_LAYER_LABEL,
    STATIC_ROOT_LABEL,
    named_static_layer,
    parent_dirs,
    read_static,
    reusable_static_files,
    shadows_static,
    split_static,
    static_layer,
)
from .tars import merge_tars
from .wheelhouse import (
    build_wheelhouse,
    probe_image,
    read_manifest,
    requirements_for,
    resolved_set,
)


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

    def summary(self) -> str:
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


def wheels_for(
    cfg: Config,
    engine: Engine,
    out: Output,
    target: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    no_index: bool,
    timings: list[tuple[str, float]],
    check_files: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], Mapping[str, Any], float | None]:
    """The wheels the wheelhouse resolved for ``reqs`` (built first when it lacks them, or
    when ``check_files`` were found damaged), the manifest, and the seconds an early deps
    layer took (None when none was built)."""
    base, pkey = target
    if reqs.empty:
        out("warpdrive: the app needs no packages")
        return [], {}, None
    manifest: Mapping[str, Any] = read_manifest(engine, cfg.volume, pkey, base.id)
    resolved = resolved_set(manifest, reqs.digest)
    if resolved is not None and not check_files:
        return resolved, manifest, None
    if resolved is None and no_index:
        what = "was never built" if not manifest else "was built for other requirements"
        raise WarpdriveError(
            f"the wheelhouse in volume {cfg.volume!r} {what} (platform {pkey.slug}), and "
            "--no-index forbids fetching anything",
            fix="run `nox -s wheelhouse` first, then `nox -s image -- --no-index`",
        )
    if resolved is None:
        out("warpdrive: the wheelhouse lacks these requirements; building them first")
    wheels_started = time.monotonic()
    early = EarlyDeps(engine, cfg, base, pkey)
    try:
        result_wh = build_wheelhouse(
            cfg,
            engine,
            out,
            on_ready=None if check_files else early.start,
            manifest=manifest,
            check_files=check_files,
            no_index=no_index,
        )
    except BaseException:
        early.cancel()
        raise
    finally:
        early_seconds = early.join(out)
    out(f"warpdrive: {result_wh.summary()}")
    timings.append(("wheelhouse", time.monotonic() - wheels_started))
    if early_seconds is not None:
        timings.append(("early deps", early_seconds))
    # as the builder wrote it (the same platform: check_compatible), else read
    written = result_wh.manifest if result_wh.key.slug == pkey.slug else {}
    manifest = dict(written) or read_manifest(engine, cfg.volume, pkey, base.id)
    resolved = resolved_set(manifest, reqs.digest)
    if resolved is None:
        raise WarpdriveError(
            "the wheelhouse was built but does not list these requirements",
            fix="run `nox -s wheelhouse` and read its output",
        )
    return resolved, manifest, early_seconds


def build_image(
    cfg: Config,
    engine: Engine,
    out: Output,
    *,
    no_index: bool | None = None,
    tag: str | None = None,
) -> ImageResult:
    """Build (or find up to date) the app image. Without --no-index, requirements the
    wheelhouse lacks are built into it first (cached, incremental); with it, they are an
    error and nothing is fetched."""
    started = time.monotonic()
    no_index = cfg.no_index if no_index is None else no_index
    ref = tag or cfg.image
    split_ref(ref)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    reqs = requirements_for(cfg)
    current = engine.image(ref)
    timings: list[tuple[str, float]] = []

    resolved: list[dict[str, Any]] | None = None
    early_seconds: float | None = None  # an early deps layer was built in this run
    deps_image = known_deps(engine, cfg, current, base, pkey, reqs)
    if deps_image is not None:
        deps_key = deps_image.labels[f"{LABEL_PREFIX}.deps-key"]
    else:
        resolved, manifest, early_seconds = wheels_for(
            cfg, engine, out, (base, pkey), reqs, no_index, timings
        )
        installer = choose_installer(cfg, manifest, pkey) if resolved else Installer("none")
        deps_key = plan_deps(cfg, base, pkey, resolved, installer).key
    app = plan_app(
        cfg,
        base,
        pkey,
        deps_key,
        source_label=cfg.project_dir.name,
        requirements_digest=reqs.digest,
    )
    for line in app.notices:
        out(line)
    if current is not None and current.labels.get(f"{LABEL_PREFIX}.build-key") == app.build_key:
        return ImageResult(
            ref, current.id, True, True, current.size, current.layers, time.monotonic() - started
        )

    if deps_image is not None:
        deps_id, deps_reused = deps_image.id, True
    else:
        assert resolved is not None
        try:
            deps_id, deps_reused, seconds = ensure_deps(
                engine, cfg, base, pkey, resolved, installer, out
            )
        except DamagedWheels as exc:
            # fetched or built again; a rebuilt wheel has another hash, hence another key
            out(f"warpdrive: warning: {exc.message}; fetching or building them again")
            resolved, manifest, _ = wheels_for(
                cfg, engine, out, (base, pkey), reqs, no_index, timings, exc.files
            )
            installer = choose_installer(cfg, manifest, pkey)
            deps_key = plan_deps(cfg, base, pkey, resolved, installer).key
            app = plan_app(cfg, base, pkey, deps_key, cfg.project_dir.name, reqs.digest)
            deps_id, deps_reused, seconds = ensure_deps(
                engine, cfg, base, pkey, resolved, installer, out
            )
        if not deps_reused:
            timings.append(("deps", seconds))
        # found, but built moments ago from the wheels the wheelhouse published early
        deps_reused = deps_reused and early_seconds is None
    app_started = time.monotonic()
    layer = app.layer
    needs_container = app.runs_something
    spec = app.commit
    under: list[tuple[str, bytes | str]] = []  # the static layer, named or carried
    static_reused = False
    root = ""
    if app.collectstatic and not app.build_hook:
        deps_info = deps_image if deps_image is not None else engine.image(deps_id)
        named = named_static_layer(current, app, deps_info) if deps_info else None
        if named is not None and current is not None:
            root = current.labels[STATIC_ROOT_LABEL]
            under = [(STATIC_CREATED_BY, named)]
        else:
            wheels = wheel_ids(resolved) if resolved is not None else None
            found = reusable_static_files(engine, current, app, deps_key, wheels)
            if found is not None:
                root, files = found
                if shadows_static(layer, root):
                    parent = root.rsplit("/", 1)[0]
                    record_dir = STATIC_ROOT_RECORD.rsplit("/", 1)[0]
                    layer = merge_tars(layer, parent_dirs(layer, parent, record_dir), files)
                else:
                    static = static_layer(root, files)
                    named = "sha256:" + hashlib.sha256(static).hexdigest()
                    under = [(STATIC_CREATED_BY, static)]
        if named is not None:
            labels = {**spec.labels, STATIC_LAYER_LABEL: named, STATIC_ROOT_LABEL: root}
            spec = dataclasses.replace(spec, labels=labels)
        static_reused = named is not None or layer is not app.layer
        if static_reused:
            needs_container = False
            out("warpdrive: static inputs unchanged; reusing the collected static files")
    image_id: str | None = None
    if not needs_container:
        try:
            image_id = engine.append_layer(deps_id, layer, spec, under=under)
        except EngineError as exc:
            out(f"warpdrive: {exc.message}; building the app layer in a container instead")
            needs_container, layer, static_reused = app.runs_something, app.layer, False
    if image_id is None:
        step = app.step(deps_id, layer)
        if not needs_container:
            step = Step(**{**step.__dict__, "command": None, "files": (("/", layer),)})
        image_id = engine.run_checked(step, out).image_id
        assert image_id is not None
        if app.collectstatic and needs_container:
            # a host copy of what was collected: the next code change reads no image
            collected = None
            with contextlib.suppress(WarpdriveError):
                collected = read_static(engine, image_id)
            if collected is not None and not app.build_hook:
                image_id = split_static(engine, deps_id, app, image_id, collected)
    if static_reused and current is not None:
        static_cache.copy(current.id, image_id)  # the same files, under the new image
    timings.append(("app", time.monotonic() - app_started))
    engine.tag(image_id, ref)
    final = engine.image(ref)
    assert final is not None
    if current is not None and current.id != final.id:
        # the image this tag named before: removed unless another tag names it or a
        # container uses it (the engine refuses that); deps images stay, they are the cache
        old = engine.image(current.id)
        if old is not None and not old.tags:
            engine.remove_image(current.id)
    return ImageResult(
        ref,
        final.id,
        False,
        deps_reused,
        final.size,
        final.layers,
        time.monotonic() - started,
        tuple(timings),
    )
