"""The labels nox-warpdrive puts on what it makes: every key in one place, and each
image kind's label set as a typed record.

Labels are how a later build recognises an image: a deps image is reused by its key,
extended when it holds a subset of the wanted wheels; an app image is up to date by its
build key; a wheelhouse image tells a pull what it holds without reading a layer. So the
keys and values here are a format: ``to_labels`` writes exactly what earlier versions
wrote (same keys, same values, same order), and ``from_labels`` reads what they wrote.

Reading is lenient where earlier images may lack a label: a missing string label reads
as "" (which matches no key or digest), and only a label whose structure is wrong (a
wheel list that is not JSON, a depth that is not a number) or the labels of another
kind of image make ``from_labels`` return None.

Stdlib only, no imports from the package: the engine and the runtime side may use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

LABEL_PREFIX = "io.warpdrive"

#: what an image is: "deps", "app" or "wheelhouse" (an app image inherits the deps
#: image's labels: only this one tells them apart)
KIND_LABEL = f"{LABEL_PREFIX}.kind"
#: the platform key an app or wheelhouse image is for
PLATFORM_KEY_LABEL = f"{LABEL_PREFIX}.platform-key"

# a deps image (and every app image committed on it)
DEPS_PREFIX = f"{LABEL_PREFIX}.deps-"
DEPS_KEY_LABEL = f"{DEPS_PREFIX}key"
DEPS_FORMAT_LABEL = f"{DEPS_PREFIX}format"
DEPS_PROJECT_LABEL = f"{DEPS_PREFIX}project"
DEPS_BASE_LABEL = f"{DEPS_PREFIX}base"
DEPS_INSTALLER_LABEL = f"{DEPS_PREFIX}installer"
DEPS_WHEELS_LABEL = f"{DEPS_PREFIX}wheels"
DEPS_DEPTH_LABEL = f"{DEPS_PREFIX}depth"

# an app image
BASE_IMAGE_LABEL = f"{LABEL_PREFIX}.base-image"
BASE_IMAGE_ID_LABEL = f"{LABEL_PREFIX}.base-image-id"
BUILD_KEY_LABEL = f"{LABEL_PREFIX}.build-key"
STATIC_KEY_LABEL = f"{LABEL_PREFIX}.static-key"
#: what collectstatic's output depends on but the CPU: the same on every platform's
#: image of one build (multiarch/: the files are collected once and shared)
STATIC_SOURCE_LABEL = f"{LABEL_PREFIX}.static-source"
#: what the build hook's step read but the CPU's parts: another platform's image of the
#: build with the same may lend it the layer that step made (build/static_sibling.py)
HOOK_SOURCE_LABEL = f"{LABEL_PREFIX}.hook-source"
REQUIREMENTS_LABEL = f"{LABEL_PREFIX}.requirements"
INSTALLER_SETTING_LABEL = f"{LABEL_PREFIX}.installer-setting"
APP_LABEL = f"{LABEL_PREFIX}.app"
#: the app layers (rows of role, key, diff ID; source/image_layers.py writes and reads them)
LAYERS_LABEL = f"{LABEL_PREFIX}.app-layers"
#: the diff ID of the layer holding the collected static files (source/image_layers.py)
STATIC_LAYER_LABEL = f"{LABEL_PREFIX}.static-layer"
#: the STATIC_ROOT that layer holds (static.py)
STATIC_ROOT_LABEL = f"{LABEL_PREFIX}.static-root"

# a wheelhouse image
WHEELHOUSE_WHEELS_LABEL = f"{LABEL_PREFIX}.wheelhouse.wheels"
WHEELHOUSE_LAYERS_LABEL = f"{LABEL_PREFIX}.wheelhouse.layers"

#: the owner (owner.py's token) of a temporary volume
OWNER_PROCESS_LABEL = f"{LABEL_PREFIX}.owner-process"

# the OCI annotations an app or wheelhouse image carries
OCI_CREATED = "org.opencontainers.image.created"
OCI_TITLE = "org.opencontainers.image.title"
OCI_BASE_NAME = "org.opencontainers.image.base.name"
OCI_REVISION = "org.opencontainers.image.revision"
OCI_SOURCE = "org.opencontainers.image.source"
OCI_DESCRIPTION = "org.opencontainers.image.description"


def _str_list(raw: str | None) -> tuple[str, ...] | None:
    """A label holding a JSON list of strings; None when it is missing or is not one."""
    try:
        data = json.loads(raw or "")
    except ValueError:
        return None
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        return None
    return tuple(data)


@dataclass(frozen=True)
class DepsLabels:
    """A deps image's labels: what its layer was built from. App images committed on it
    inherit them (with ``kind`` "app")."""

    #: the deps key (base image, platform, Python, installer, wheels, install script)
    key: str
    #: the layout of the deps layer (deps.DEPS_FORMAT when it was built)
    format: str
    #: the app's name
    project: str
    #: the base image's id
    base_id: str
    #: installer name and version, e.g. "pip", "uv0.4.1"
    installer: str
    #: its wheels as wheels.wheel_ids gives them ("file@sha")
    wheels: tuple[str, ...]
    #: how many incremental deps layers it sits on
    depth: int = 0

    def to_labels(self) -> dict[str, str]:
        return {
            DEPS_KEY_LABEL: self.key,
            # app images inherit these labels; `kind` tells a deps image from them
            KIND_LABEL: "deps",
            DEPS_FORMAT_LABEL: self.format,
            DEPS_PROJECT_LABEL: self.project,
            DEPS_BASE_LABEL: self.base_id,
            DEPS_INSTALLER_LABEL: self.installer,
            DEPS_WHEELS_LABEL: json.dumps(list(self.wheels), separators=(",", ":")),
            DEPS_DEPTH_LABEL: str(self.depth),
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> DepsLabels | None:
        """The deps labels of a deps or app image; None when its wheel list is missing or
        is not a JSON list of strings, or its depth (0 when missing) is not a number."""
        wheels = _str_list(labels.get(DEPS_WHEELS_LABEL))
        try:
            depth = int(labels.get(DEPS_DEPTH_LABEL, "0"))
        except ValueError:
            return None
        if wheels is None:
            return None
        return cls(
            key=labels.get(DEPS_KEY_LABEL, ""),
            format=labels.get(DEPS_FORMAT_LABEL, ""),
            project=labels.get(DEPS_PROJECT_LABEL, ""),
            base_id=labels.get(DEPS_BASE_LABEL, ""),
            installer=labels.get(DEPS_INSTALLER_LABEL, ""),
            wheels=wheels,
            depth=depth,
        )


def deps_selector(format: str, project: str, base_id: str) -> dict[str, str]:
    """The labels every deps image of ``project`` on this base image in this layout
    carries (what the engine is asked to filter images by)."""
    return {
        KIND_LABEL: "deps",
        DEPS_FORMAT_LABEL: format,
        DEPS_PROJECT_LABEL: project,
        DEPS_BASE_LABEL: base_id,
    }


def inherited_deps_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Every deps label an (app) image carries, as it carries them: what a deps image
    made of its deps layers is labelled with (with kind "deps")."""
    found = {k: v for k, v in labels.items() if k.startswith(DEPS_PREFIX)}
    found[KIND_LABEL] = "deps"
    return found


@dataclass(frozen=True)
class AppLabels:
    """An app image's own labels (on top of the deps labels it inherits, and of the
    app-layers, static-layer and static-root labels its layers add)."""

    #: the app's name (the OCI title)
    title: str
    #: the base image as configured (also the OCI base name) and its id
    base_image: str
    base_image_id: str
    platform_key: str
    deps_key: str
    build_key: str
    #: what the collected static files depend on ("" when nothing is collected)
    static_key: str
    #: the requirement set's digest
    requirements: str
    #: the `installer` setting the image was built with
    installer_setting: str
    #: how it starts: "<kind> <module>", and " (<server>)" when a server runs it
    app: str
    #: when it was built (RFC 3339; "" for no created label)
    created: str = ""
    #: the OCI source and revision labels (when the app is in git)
    source: Mapping[str, str] = field(default_factory=dict)
    #: the static key without the base image and packages ("": nothing collected)
    static_source: str = ""
    #: the build hook step's inputs without the base image and packages ("": no hook,
    #: or it runs per platform)
    hook_source: str = ""

    def to_labels(self) -> dict[str, str]:
        labels = {OCI_CREATED: self.created} if self.created else {}
        if self.static_source:
            labels[STATIC_SOURCE_LABEL] = self.static_source
        if self.hook_source:
            labels[HOOK_SOURCE_LABEL] = self.hook_source
        return {
            **labels,
            OCI_TITLE: self.title,
            OCI_BASE_NAME: self.base_image,
            **self.source,
            PLATFORM_KEY_LABEL: self.platform_key,
            BASE_IMAGE_LABEL: self.base_image,
            BASE_IMAGE_ID_LABEL: self.base_image_id,
            DEPS_KEY_LABEL: self.deps_key,
            BUILD_KEY_LABEL: self.build_key,
            STATIC_KEY_LABEL: self.static_key,
            REQUIREMENTS_LABEL: self.requirements,
            INSTALLER_SETTING_LABEL: self.installer_setting,
            KIND_LABEL: "app",
            APP_LABEL: self.app,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> AppLabels | None:
        """The app labels of an image; None when it is labelled as another kind (a deps
        or wheelhouse image). A label it lacks reads as ""."""
        if labels.get(KIND_LABEL, "app") != "app":
            return None
        return cls(
            title=labels.get(OCI_TITLE, ""),
            base_image=labels.get(BASE_IMAGE_LABEL, ""),
            base_image_id=labels.get(BASE_IMAGE_ID_LABEL, ""),
            platform_key=labels.get(PLATFORM_KEY_LABEL, ""),
            deps_key=labels.get(DEPS_KEY_LABEL, ""),
            build_key=labels.get(BUILD_KEY_LABEL, ""),
            static_key=labels.get(STATIC_KEY_LABEL, ""),
            requirements=labels.get(REQUIREMENTS_LABEL, ""),
            installer_setting=labels.get(INSTALLER_SETTING_LABEL, ""),
            app=labels.get(APP_LABEL, ""),
            created=labels.get(OCI_CREATED, ""),
            source={k: labels[k] for k in (OCI_REVISION, OCI_SOURCE) if k in labels},
            static_source=labels.get(STATIC_SOURCE_LABEL, ""),
            hook_source=labels.get(HOOK_SOURCE_LABEL, ""),
        )


@dataclass(frozen=True)
class WheelhouseLabels:
    """A wheelhouse image's labels: the platform key it is for and the wheels it holds
    (file -> sha256: what a pull decides from without reading a layer)."""

    platform_key: str
    wheels: Mapping[str, str]
    #: how many layers the image has
    layers: int

    def to_labels(self) -> dict[str, str]:
        return {
            KIND_LABEL: "wheelhouse",
            PLATFORM_KEY_LABEL: self.platform_key,
            WHEELHOUSE_WHEELS_LABEL: json.dumps(
                dict(self.wheels), sort_keys=True, separators=(",", ":")
            ),
            WHEELHOUSE_LAYERS_LABEL: str(self.layers),
            OCI_DESCRIPTION: (
                f"nox-warpdrive wheelhouse for {self.platform_key} (wheels only; not runnable)"
            ),
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> WheelhouseLabels | None:
        """The labels of a wheelhouse image; None for any other image. A wheel list that
        is not a JSON object reads as no wheels; only its string entries are kept."""
        if labels.get(KIND_LABEL) != "wheelhouse":
            return None
        try:
            data = json.loads(labels.get(WHEELHOUSE_WHEELS_LABEL) or "{}")
        except ValueError:
            data = {}
        wheels = (
            {f: s for f, s in data.items() if isinstance(f, str) and isinstance(s, str)}
            if isinstance(data, dict)
            else {}
        )
        try:
            layers = int(labels.get(WHEELHOUSE_LAYERS_LABEL, "0"))
        except ValueError:
            layers = 0
        return cls(labels.get(PLATFORM_KEY_LABEL, ""), wheels, layers)
