"""Generated files added to the bench's app copies (``--files N --assets-mb M``), so the
cost of a build can be measured against the size of the tree.

What a large real app carries: many small files (modules, templates, data, icons) spread
over directories, and a few large binary assets (media, a built frontend). Both are made
from a seeded generator, so every tool's copy, and every run, gets the same bytes; the
assets are incompressible (random), as media are. Everything goes under ``generated/``
(small files) and ``media/`` (assets), which the bench's edits never touch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

#: small files per directory (a module package, a template folder)
PER_DIR = 100

#: the kinds of small file, cycled: text a web app edits, and binary it serves
SMALL_KINDS = (".py", ".html", ".json", ".txt", ".css", ".js", ".svg", ".png")

#: the size of one asset (the last one takes what is left)
ASSET_BYTES = 16 * 1024 * 1024

#: the directories the generated files go under, relative to the app
SMALL_DIR = "generated"
ASSET_DIR = "media"


@dataclass(frozen=True)
class Generated:
    """What ``generate`` wrote: counts, bytes, and one asset path for the asset scenarios."""

    files: int
    small_bytes: int
    assets: tuple[str, ...]
    asset_bytes: int


def small_file(rng: random.Random, index: int) -> tuple[str, bytes]:
    """The ``index``-th small file: its path (relative to the app) and contents, 0.5-7.5 KB."""
    suffix = SMALL_KINDS[index % len(SMALL_KINDS)]
    name = f"{SMALL_DIR}/d{index // PER_DIR:04d}/f{index:06d}{suffix}"
    size = rng.randrange(512, 7680)
    if suffix == ".png":
        return name, rng.randbytes(size)
    line = f"# generated file {index}: {'x' * 60}\n".encode()
    if suffix == ".py":
        line = f"VALUE_{index} = {'1' * 60!r}\n".encode()
    return name, (line * (size // len(line) + 1))[:size]


def generate(root: Path, files: int, assets_mb: int, seed: int = 13) -> Generated:
    """Write ``files`` small files and ``assets_mb`` MB of assets into the app at ``root``."""
    rng = random.Random(seed)
    small = 0
    for i in range(files):
        name, data = small_file(rng, i)
        path = root / name
        if i % PER_DIR == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        small += len(data)
    left = assets_mb * 1024 * 1024
    assets: list[str] = []
    while left > 0:
        size = min(ASSET_BYTES, left)
        name = f"{ASSET_DIR}/asset-{len(assets):03d}.bin"
        (root / ASSET_DIR).mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(rng.randbytes(size))
        assets.append(name)
        left -= size
    return Generated(files, small, tuple(assets), assets_mb * 1024 * 1024)
