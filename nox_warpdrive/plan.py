"""Plans are pure data: what one build step runs, in which image, with which inputs.

wheelhouse/build.py and image.py make them; engine/ carries them out. Nothing here touches
Docker, so every plan can be unit-tested and printed. Secrets are never part of a plan:
a step only names the temporary secrets volume the engine mounts for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .runtime import protocol

#: where a build container sees the temporary secrets volume (CA bundle, index settings)
SECRETS_DIR = "/run/warpdrive-secrets"
#: where the helper scripts are put in a build container (removed before any commit)
HELPERS_DIR = "/tmp/warpdrive-build"
#: where the wheelhouse volume is mounted
VOLUME_DIR = "/warpdrive"
#: what an export step prints once the paths it names are ready to be read
EXPORT_READY = protocol.EXPORT_READY


def assemble(python: str, *args: str) -> tuple[str, ...]:
    """A command of the helpers' runtime/assemble.py (put in HELPERS_DIR), run by
    ``python``: ``deps``, ``app``, ``check``, ``install``, or ``export`` and its paths."""
    return (python, f"{HELPERS_DIR}/assemble.py", *args)


@dataclass(frozen=True)
class VolumeMount:
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class CommitSpec:
    """The image config a committed container gets. ``env`` replaces the whole variable
    (the engine does not expand ``$PATH``; write the full value)."""

    env: tuple[tuple[str, str], ...] = ()
    cmd: tuple[str, ...] | None = None
    user: str | None = None
    workdir: str | None = None
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    #: the config's ``created`` and its new history rows' (RFC 3339), for an image whose
    #: config is written here (append_layer): a fixed time, never the clock, so the same
    #: inputs give the same image ID; "" (the clock) only where a commit sets it anyway
    created: str = ""


@dataclass(frozen=True)
class Step:
    """One container: created from ``image``, given ``files`` (tar archives put at a
    directory before start), run with ``command`` (None: never started, only committed),
    removed afterwards whatever happens. ``uses_secrets``: mount the secrets volume.

    ``tmpfs``: directories mounted as tmpfs (memory). ``export``: the layer is not a commit
    but ``export[1:]`` (paths relative to /), read out of the still running container with
    the command ``export[0]`` (a tar on its standard output) once the step printed
    EXPORT_READY; files then reach the disk once, when the engine stores the layer, instead
    of three times (unpacked wheels, the container's layer, the commit)."""

    name: str
    image: str
    command: tuple[str, ...] | None
    files: tuple[tuple[str, bytes], ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    user: str | None = None
    workdir: str | None = None
    network: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    commit: CommitSpec | None = None
    uses_secrets: bool = False
    tmpfs: tuple[str, ...] = ()
    export: tuple[str, ...] = ()
    #: the container's CPU weight against others (Docker's CpuShares: 1024 by default;
    #: None leaves the engine's default): a step that overlaps a more urgent one runs
    #: lower, so that one gets the CPUs first
    cpu_shares: int | None = None

    @property
    def created_by(self) -> str:
        """The history line of the layer the step makes: the same wherever the layer is
        put on an image (it is part of the image ID)."""
        return f"nox-warpdrive {self.name} layer"

    def __repr__(self) -> str:  # keep archives out of logs and test failure output
        files = ", ".join(f"{d} ({len(b)} bytes)" for d, b in self.files)
        return (
            f"Step(name={self.name!r}, image={self.image!r}, command={self.command!r}, "
            f"files=[{files}], mounts={self.mounts!r}, user={self.user!r}, "
            f"network={self.network!r}, commit={self.commit is not None}, "
            f"uses_secrets={self.uses_secrets}, tmpfs={self.tmpfs!r}, export={self.export!r}, "
            f"cpu_shares={self.cpu_shares!r})"
        )


# the tar helpers moved to tars.py; these names stay importable from here
from .tars import tar_files as tar_files  # noqa: E402
