"""Files that go INTO images and build containers. Stdlib only: they run on whatever
Python the base image has, before any package is installed."""

from __future__ import annotations

from importlib import resources

#: the wheel builder: build_wheels.py runs and imports the others, shipped beside it into
#: the builder container (tests/unit/test_runtime_shipped.py checks every import is here)
BUILDER = (
    "build_wheels.py",
    "builds.py",
    "bytecode.py",
    "common.py",
    "cross.py",
    "disk.py",
    "early_builds.py",
    "failures.py",
    "fetch.py",
    "locked.py",
    "pinned.py",
    "project.py",
    "protocol.py",
    "publish.py",
    "resolve.py",
    "uv_bootstrap.py",
    "volume.py",
    "wheel_cache.py",
    "wheel_import.py",
)

#: the deps and app steps' script, and what it imports
ASSEMBLER = ("assemble.py", "elfcheck.py", "layerdiff.py", "protocol.py")
#: what the image's lib/ directory holds beside the launcher (bin/warpdrive-start): the
#: WSGI/ASGI static wrapper and the launcher's init
LAUNCHER_LIB = ("warpdrive_static.py", "warpdrive_init.py")


def read(name: str) -> bytes:
    """The bytes of one runtime file, as shipped into containers."""
    return resources.files(__package__).joinpath(name).read_bytes()


def files(names: tuple[str, ...], under: str = "") -> dict[str, bytes]:
    """{``under`` + name: its bytes} of runtime files, to ship them together."""
    return {under + name: read(name) for name in names}
