"""A wheel of a resolved requirement set, as the wheelhouse manifest lists it.

The builder (runtime/build_wheels.py, stdlib only, in the container) writes these entries
into the manifest and the WHEELS-READY line as plain JSON objects::

    {"file": "Django-5.0-py3-none-any.whl", "name": "Django", "version": "5.0",
     "sha256": "<64 hex digits>", "size": 8166129}

The host reads them into ``Wheel`` at that boundary (``from_manifest``) and writes them
back (``to_manifest``) only where a manifest leaves the engine (wheelhouse/transfer.py):
an entry this module accepts comes back field for field, so manifests (and the labels
made from them) stay byte for byte what earlier versions wrote and read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename


@dataclass(frozen=True)
class Wheel:
    """One wheel a requirement set resolved to, published in the wheelhouse volume."""

    #: the wheel's file name in the volume's wheels directory ("file" in the manifest)
    filename: str
    #: the project name and version the file name gives (as the builder split it)
    name: str
    version: str
    sha256: str
    #: bytes; None in a manifest written before sizes were recorded
    size: int | None = None

    @property
    def id(self) -> str:
        """What a deps image's labels list for this wheel: ``file@<sha256 prefix>``."""
        return f"{self.filename}@{self.sha256[:16]}"

    @classmethod
    def from_manifest(cls, entry: object) -> Wheel | None:
        """The wheel a manifest entry describes; None when it is not a well-formed entry
        (a field missing or of another type): such a set is not used."""
        if not isinstance(entry, Mapping):
            return None
        filename, name = entry.get("file"), entry.get("name")
        version, sha256 = entry.get("version"), entry.get("sha256")
        size = entry.get("size")
        if not (
            isinstance(filename, str)
            and isinstance(name, str)
            and isinstance(version, str)
            and isinstance(sha256, str)
        ):
            return None
        if "size" in entry and (not isinstance(size, int) or isinstance(size, bool)):
            return None
        return cls(filename, name, version, sha256, size)

    def to_manifest(self) -> dict[str, Any]:
        """The manifest entry, with the builder's keys in the builder's order."""
        entry: dict[str, Any] = {
            "file": self.filename,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
        }
        if self.size is not None:
            entry["size"] = self.size
        return entry


def wheels_from_manifest(entries: object) -> list[Wheel] | None:
    """The wheels of a manifest's list of entries (a set's ``resolved``, a WHEELS-READY
    line's); None when it is not a list or any entry is not well formed."""
    if not isinstance(entries, list):
        return None
    wheels = []
    for entry in entries:
        wheel = Wheel.from_manifest(entry)
        if wheel is None:
            return None
        wheels.append(wheel)
    return wheels


def wheel_ids(wheels: Iterable[Wheel]) -> list[str]:
    """The sorted ids of ``wheels``: what a deps key hashes and a deps image's
    ``deps-wheels`` label lists."""
    return sorted(w.id for w in wheels)


def parse_wheel_id(wheel_id: str) -> tuple[str, str, frozenset[Tag]] | None:
    """(normalized name, version, tags) of a wheel id ("file@sha", as a deps image's
    ``deps-wheels`` label lists it); None when its file name is not a wheel's."""
    try:
        name, version, _, tags = parse_wheel_filename(wheel_id.partition("@")[0])
    except InvalidWheelFilename:
        return None
    return str(name), str(version), tags
