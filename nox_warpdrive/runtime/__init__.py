"""Files that go INTO images and build containers. Stdlib only: they run on whatever
Python the base image has, before any package is installed."""

from __future__ import annotations

from importlib import resources


def read(name: str) -> bytes:
    """The bytes of one runtime file, as shipped into containers."""
    return resources.files(__package__).joinpath(name).read_bytes()
