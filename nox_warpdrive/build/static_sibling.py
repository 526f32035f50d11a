"""Collected static files shared by the platforms of one build (issue 22): collectstatic
runs for the first platform built (the engine's own when it is asked for: natively),
and every other platform's image takes that image's files as they are, the same layer
blob, instead of running collectstatic again under emulation.

That is sound when what collectstatic read is the same: the same source files and
settings, the same interpreter and OS release (only the CPU differs: the image's
``static-source`` label, AppPlan.static_source), and the same releases of the same
packages (their files, static ones included, are the same on every CPU: a binary
wheel differs in its compiled parts, not its name and version).

The build hook (``.warpdrive/action_hooks/build``) likewise runs once: an image of another
platform whose hook step read the same (its ``hook-source`` label) takes the layer that
step committed on the first image, the same blob, on its own app layers; unless
``build-hook-per-platform = true`` says the hook's output depends on the CPU."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from pathlib import Path

from ..engine import Engine, ImageInfo
from ..errors import WarpdriveError
from ..labels import AppLabels, DepsLabels
from ..source.image_layers import StaticLayer
from ..wheelhouse.wheels import Wheel, parse_wheel_id, wheel_ids
from .app_layer import AppPlan
from .static import reusable_static


def releases(ids: tuple[str, ...] | list[str]) -> frozenset[tuple[str, str]]:
    """(name, version) of each wheel id ("file@sha"): what a platform's wheels have in
    common with another's."""
    found = set()
    for wheel_id in ids:
        parsed = parse_wheel_id(wheel_id)
        # a file name not a build's is only equal to itself
        found.add(parsed[:2] if parsed else (wheel_id.partition("@")[0], ""))
    return frozenset(found)


def sibling_static(
    engine: Engine, sibling: ImageInfo, app: AppPlan, wheels: list[Wheel] | None
) -> tuple[str, StaticLayer] | None:
    """(STATIC_ROOT, the static layer) of ``sibling``, another platform's image of this
    build, when its collected files are what collectstatic would make here; else None.
    ``wheels``: this build's (None: its deps layer is an earlier one, unknown here)."""
    labels = AppLabels.from_labels(sibling.labels)
    deps = DepsLabels.from_labels(sibling.labels)
    if labels is None or deps is None or wheels is None:
        return None
    if not app.static_source or labels.static_source != app.static_source:
        return None
    if releases(deps.wheels) != releases(wheel_ids(wheels)):
        return None
    # the sibling's own static inputs are its labels: reused as they are
    as_sibling = dataclasses.replace(app, static_key=labels.static_key)
    return reusable_static(engine, sibling, as_sibling, labels.deps_key, None)


def sibling_hook(sibling: ImageInfo, app: AppPlan, wheels: list[Wheel] | None) -> bool:
    """Whether ``sibling``, another platform's image of this build, ran the build hook
    step on what this one would (the same source, settings, step, environment,
    interpreter and OS release: its ``hook-source`` label; the same package releases),
    so that the layer that step made is this image's too. Not when the hook runs on
    every platform (`build-hook-per-platform`: no hook source)."""
    labels = AppLabels.from_labels(sibling.labels)
    deps = DepsLabels.from_labels(sibling.labels)
    if labels is None or deps is None or wheels is None or not app.hook_source:
        return False
    return labels.hook_source == app.hook_source and releases(deps.wheels) == releases(
        wheel_ids(wheels)
    )


def top_layer(engine: Engine, image: ImageInfo, into: Path) -> None:
    """The last layer of ``image`` (the one its build step committed), as `docker save`
    gives it, written to ``into`` (the whole image is saved next to it, then removed)."""
    saved = into.with_name(into.name + ".image.tar")
    engine.save_image(image.id, saved)
    try:
        with tarfile.open(saved) as tar:
            manifest = json.load(tar.extractfile("manifest.json") or io.BytesIO(b"[]"))
            names = manifest[0]["Layers"] if manifest else []
            member = tar.extractfile(names[-1]) if names else None
            if member is None:
                raise WarpdriveError(f"`docker save` of {image.id[:19]} has no layers")
            with into.open("wb") as fh:
                shutil.copyfileobj(member, fh, 1 << 20)
    except (tarfile.TarError, KeyError, ValueError) as exc:
        raise WarpdriveError(f"`docker save` of {image.id[:19]} is unreadable: {exc}") from exc
    finally:
        saved.unlink(missing_ok=True)
