"""``nox -s image -- --plan``: what a build would do and why, changing nothing.

The decisions are the build's own functions (deps.known_deps, deps.decide_deps,
wheelhouse.resolved_set, app_layer.plan_app, layers.plan_layers,
static.static_inputs_unchanged), called on what the engine, the volume and the host
already hold. Nothing is run, written, tagged or created: the engine is only inspected;
the volume's manifest is read through a container that is created with the volume
mounted read-only, never started, and removed (engine.read_volume_file: the Engine API
reads a file only from a container); the source index is read and not written back; a
base image never probed is probed in a throwaway container (no network) and the result
is not cached.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .build.app_layer import AppPlan, plan_app, source_facts
from .build.deps import Installer, choose_installer, decide_deps, deps_ref, known_deps
from .build.static import (
    earlier_image,
    installed_wheels,
    recollectable,
    same_static_inputs,
    shadows_static,
    static_inputs_unchanged,
)
from .build.wheels_first import offline_error
from .config import Config, normalize
from .engine import Engine, ImageInfo
from .inputs.read import inputs_line
from .inputs.requirements import RequirementSet
from .labels import (
    DEPS_KEY_LABEL,
    STATIC_LAYER_LABEL,
    STATIC_ROOT_LABEL,
    AppLabels,
    DepsLabels,
)
from .platform import PlatformKey
from .refs import split_ref
from .source.image_layers import previous_layers
from .source.layers import STATIC, LayerPlan, Previous, plan_layers
from .wheelhouse import probe_cache
from .wheelhouse.build import build_inputs, probe_image, read_manifest, seeds_for
from .wheelhouse.wheels import Wheel, wheel_ids


@dataclass(frozen=True)
class WheelsStep:
    """The wheelhouse part: complete for this requirement set, or what it would fetch
    and compile, by name (``fetch`` may be built from an sdist when the index has no
    wheel for this platform; what their dependencies add is known only once resolved)."""

    complete: bool
    reason: str
    fetch: tuple[str, ...] = ()
    compile: tuple[str, ...] = ()
    wheels: int = 0


@dataclass(frozen=True)
class DepsStep:
    """The deps layer: reused, extended, rebuilt, or decided after the wheelhouse."""

    action: str
    reason: str
    key: str = ""
    image: str = ""
    adds: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerStep:
    """One app layer: ``reused`` (named: the engine has it there) or ``new``, with the
    files and content bytes it holds (a new one is written and sent)."""

    role: str
    action: str
    files: int
    bytes: int


@dataclass(frozen=True)
class ImagePlan:
    ref: str
    base_image: str
    platform: str
    up_to_date: bool
    wheels: WheelsStep
    deps: DepsStep
    layers: tuple[LayerStep, ...]
    static: str
    installed_from: str | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def lines(self) -> list[str]:
        """What `image -- --plan` prints: one line per decision, with its reason."""
        out = [f"plan for {self.ref} on {self.base_image} ({self.platform}); nothing changed"]
        out += [f"  note: {n}" for n in self.notes]
        if self.installed_from:
            out.append("  " + self.installed_from.removeprefix("warpdrive: "))
        w = self.wheels
        if w.complete:
            out.append(f"  wheels: complete ({w.reason})")
        else:
            out.append(f"  wheels: the wheelhouse is built first ({w.reason})")
            out.append(f"    to fetch: {', '.join(w.fetch) or 'no new name'}")
            if w.compile:
                out.append(f"    to compile from sdists: {', '.join(w.compile)}")
        d = self.deps
        key = f" (key {d.key[:16]})" if d.key else ""
        adds = f"; adds {', '.join(d.adds)}" if d.adds else ""
        out.append(f"  deps layer: {d.action}{key}: {d.reason}{adds}")
        if self.up_to_date:
            out.append("  image: up to date, nothing rebuilt")
            return out
        for layer in self.layers:
            # the collected static files are known by their layer's diff ID only
            size = "" if layer.role == STATIC else f" ({layer.files} files, {mb(layer.bytes)})"
            out.append(f"  app layer {layer.role}: {layer.action}{size}")
        out.append(f"  static files: {self.static}")
        return out


def mb(size: int) -> str:
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def plan_image(
    cfg: Config, engine: Engine, *, no_index: bool | None = None, tag: str | None = None
) -> ImagePlan:
    """What ``build_image`` would do for ``cfg``, decided as it decides, doing nothing."""
    no_index = cfg.no_index if no_index is None else no_index
    ref = tag or cfg.image
    split_ref(ref)
    notes: list[str] = []
    base_ref = engine.require_image(cfg.base_image, "base-image")
    if probe_cache.load(base_ref.id, cfg.python) is None:
        notes.append("the base image was never probed: probed now in a throwaway container")
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg, store=False)
    inputs = build_inputs(cfg, pkey)  # read once, as build_image reads them
    reqs = inputs.reqs
    current = engine.image(ref)
    wheels, deps, resolved, below = _deps_and_wheels(
        cfg, engine, (base, pkey), reqs, current, no_index
    )
    labels, created = source_facts(cfg.project_dir)
    app = plan_app(
        cfg,
        base,
        pkey,
        deps.key,
        source_label=cfg.name,  # not the folder: a clone may be named otherwise
        requirements_digest=reqs.digest,
        source_labels=labels,
        created=created,
        save_index=False,
        inputs=inputs,
    )
    notes += [n.removeprefix("warpdrive: ") for n in app.notices]
    up_to_date = bool(deps.key) and current is not None and app.made(current)
    wheel_list = wheel_ids(resolved) if resolved is not None else None
    static, static_diff = _static(app, current, deps.key, wheel_list, wheels.complete)
    previous = previous_layers(current, below) if below is not None else None
    layers = _layers(app, previous, static_diff, static)
    return ImagePlan(
        ref,
        cfg.base_image,
        pkey.slug,
        up_to_date,
        wheels,
        deps,
        layers,
        static,
        inputs_line(cfg, reqs),
        tuple(notes),
    )


def _deps_and_wheels(
    cfg: Config,
    engine: Engine,
    target: tuple[ImageInfo, PlatformKey],
    reqs: RequirementSet,
    current: ImageInfo | None,
    no_index: bool,
) -> tuple[WheelsStep, DepsStep, list[Wheel] | None, tuple[str, ...] | None]:
    """(the wheels step, the deps step, the resolved wheels when read, the deps layers'
    diff IDs when the deps image exists): as build_image's _settle_deps_key and
    ensure_deps decide. A --no-index build that would stop raises its error."""
    base, pkey = target
    known = known_deps(engine, cfg, current, base, pkey, reqs)
    if known is not None:
        wheels = WheelsStep(True, "the current image was built for exactly these requirements")
        why = "the current image's, built for these requirements on this base"
        deps = DepsStep("reused", why, known.labels[DEPS_KEY_LABEL], known.id)
        return wheels, deps, None, known.diff_ids
    manifest = read_manifest(engine, cfg.volume, pkey, base.id)
    resolved = _resolved(manifest, reqs)
    if resolved is None and no_index and not seeds_for(cfg):
        raise offline_error(cfg, manifest, pkey)
    if resolved is None:
        wheels = missing_wheels(reqs, manifest, cfg.volume, pkey.slug)
        return wheels, DepsStep("after the wheelhouse", _pending(cfg, engine, current)), None, None
    reason = f"every wheel of this requirement set is in volume {cfg.volume!r}"
    wheels = WheelsStep(True, reason, wheels=len(resolved))
    installer = choose_installer(cfg, manifest, pkey) if resolved else Installer("none")
    decided = decide_deps(engine, cfg, base, pkey, resolved, installer)
    if decided.found is not None:
        why = "a deps image with this key is on the engine"
        deps = DepsStep("reused", why, decided.plan.key, decided.found.id)
        return wheels, deps, resolved, decided.found.diff_ids
    if decided.parent is not None:
        parent = decided.parent.image.id.split(":")[-1][:12]
        why = f"on deps image {parent}, which has a subset of the wheels"
        deps = DepsStep("extended", why, decided.plan.key, "", _names(decided.plan.files))
        return wheels, deps, resolved, None
    why = f"no deps image of {len(resolved)} wheels with this key, nor a subset to extend"
    return wheels, DepsStep("rebuilt", why, decided.plan.key), resolved, None


def _pending(cfg: Config, engine: Engine, current: ImageInfo | None) -> str:
    """Why the deps layer is decided only after the wheelhouse, and what it may extend:
    the key hashes the resolved wheels, which only the builder knows."""
    why = "its key hashes the wheels the builder resolves"
    app = AppLabels.from_labels(current.labels) if current is not None else None
    deps = engine.image(deps_ref(cfg, app.deps_key)) if app is not None and app.deps_key else None
    if deps is None:
        return why + "; extended when an earlier deps image has a subset of them, else rebuilt"
    labels = DepsLabels.from_labels(deps.labels)
    count = f" ({len(labels.wheels)} wheels)" if labels is not None else ""
    name = deps.id.split(":")[-1][:12]
    return (
        f"{why}; extended on the current image's deps image {name}{count} when the new set "
        "only adds to it, else rebuilt"
    )


def _resolved(manifest: Mapping[str, Any], reqs: RequirementSet) -> list[Wheel] | None:
    from .wheelhouse.build import resolved_set

    if reqs.empty:
        return []
    return resolved_set(manifest, reqs.digest)


def _names(files: tuple[str, ...]) -> tuple[str, ...]:
    """Wheel file names as ``name version``."""
    return tuple(" ".join(f.split("-")[:2]) for f in files)


def missing_wheels(
    reqs: RequirementSet, manifest: Mapping[str, Any], volume: str, slug: str
) -> WheelsStep:
    """What the wheelhouse would fetch and compile for a set it lacks, by name: a
    lock's pins the volume has no wheel of (compiled when the lock allows only an
    sdist); else the requirements whose name no wheel in the volume has (their versions
    and dependencies are resolved by the builder)."""
    published = manifest.get("wheels") if isinstance(manifest.get("wheels"), dict) else {}
    have: set[tuple[str, str]] = set()
    for filename in published or {}:
        parts = str(filename).split("-")
        if len(parts) >= 2:
            have.add((normalize(parts[0]), parts[1]))
    names = {name for name, _ in have}
    if not manifest:
        reason = f"volume {volume!r} has no wheelhouse for {slug}"
    else:
        reason = "the volume's manifest does not list this requirement set"
    if reqs.locked_from:
        missing = [p for p in reqs.locked if (normalize(p.name), p.version) not in have]
        compile_ = tuple(f"{p.name} {p.version}" for p in missing if not p.wheels and p.sdist)
        fetch = tuple(f"{p.name} {p.version}" for p in missing if p.wheels or not p.sdist)
        extra = tuple(e for e in reqs.extra if normalize(e.split("=")[0]) not in names)
        return WheelsStep(False, reason, fetch + extra, compile_)
    wanted = sorted(reqs.names())
    return WheelsStep(False, reason, tuple(n for n in wanted if n not in names))


def _static(
    app: AppPlan,
    current: ImageInfo | None,
    deps_key: str,
    wheels: list[str] | None,
    complete: bool,
) -> tuple[str, str | None]:
    """(what happens to the collected static files and why, the diff ID of the current
    image's static layer when it is reused as a layer): as image._static_reuse decides."""
    if not app.collectstatic:
        return "none (not a Django app, or collectstatic = false)", None
    if app.build_hook:
        return "collectstatic runs with the build hook, in a container", None
    installed = installed_wheels(wheels, current, deps_key) if complete and deps_key else None
    before = _earlier(app, installed)
    if current is None:
        return before or "collectstatic runs in a container (no current image)", None
    if (not complete or not deps_key) and same_static_inputs(current, app):
        return (
            "decided after the wheelhouse: reused when the new set only adds packages "
            "(static inputs unchanged), else collectstatic runs",
            None,
        )
    if not complete or not deps_key:
        return "collectstatic runs in a container: static inputs changed", None
    if not static_inputs_unchanged(current, app, deps_key, wheels):
        if before is not None:
            return before, None
        changed = recollectable(current, app, deps_key, wheels)
        if changed is not None:
            return f"re-collected: only the changed static files ({', '.join(changed)})", None
        return "collectstatic runs in a container: static inputs or packages changed", None
    root = current.labels.get(STATIC_ROOT_LABEL, "")
    if root and shadows_static(app.tree.tree, root):
        return "collectstatic runs: the source has files under STATIC_ROOT", None
    diff = current.labels.get(STATIC_LAYER_LABEL, "")
    named = diff if diff in current.diff_ids else None
    return "reused: static inputs and packages unchanged", named


def _earlier(app: AppPlan, wheels: list[str] | None) -> str | None:
    """The line for collected files an earlier image of the app lends (the host's
    index: static.earlier_static), else None."""
    before = earlier_image(app, wheels) if wheels is not None else None
    if before is None:
        return None
    short = before.removeprefix("sha256:")[:12]
    return (
        f"reused: the collected files of an earlier image ({short}): static inputs and "
        "packages as then"
    )


def _layers(
    app: AppPlan, previous: Previous | None, static_diff: str | None, static: str
) -> tuple[LayerStep, ...]:
    """The app layers as source_layers.append_app would make them (layers.plan_layers
    against the current image's), and collectstatic's layer when it runs."""
    plans = plan_layers(app.tree, previous, static_diff)
    steps = [_layer_step(p, previous) for p in plans]
    if static.startswith("collectstatic"):
        steps.append(LayerStep(STATIC, "new (made by collectstatic)", 0, 0))
    elif static.startswith("decided"):
        steps.append(LayerStep(STATIC, "reused or made by collectstatic", 0, 0))
    elif static.startswith("re-collected"):
        steps.append(LayerStep(STATIC, "new (the current image's, changed files copied)", 0, 0))
    elif static.startswith("reused") and static_diff is None:
        steps.append(LayerStep(STATIC, "new (the current image's collected files)", 0, 0))
    return tuple(steps)


def _layer_step(plan: LayerPlan, previous: Previous | None) -> LayerStep:
    listed = previous.bases.get(plan.role) if previous is not None else None
    if plan.tree:
        files = sum(1 for line in plan.tree.values() if line.startswith("file\0"))
        size = sum(int(line.rsplit("\0", 1)[1]) for line in plan.tree.values())
    else:  # a kept layer: as its listing says
        files, size = (listed.members, listed.size) if listed is not None else (0, 0)
    return LayerStep(plan.role, "reused" if plan.named else "new", files, size)
