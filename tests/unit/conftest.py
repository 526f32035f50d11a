"""Unit tests never read or write the user's caches of probes, static files, source
indexes, layer listings and the requirement sets seen in volumes (their fake image ids
would collide across runs). The test index's download cache is left alone: it is shared
on purpose, and keyed by content."""

from __future__ import annotations

from pathlib import Path

import pytest

from nox_warpdrive.build import static_cache
from nox_warpdrive.source import index as source_index
from nox_warpdrive.supply import gather as supply_gather
from nox_warpdrive.wheelhouse import manifest, probe_cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "xdg-cache" / "nox-warpdrive"
    monkeypatch.setattr(probe_cache, "cache_dir", lambda: root / "probes")
    monkeypatch.setattr(static_cache, "cache_dir", lambda: root / "static")
    monkeypatch.setattr(source_index, "cache_dir", lambda: root / "source-index")
    monkeypatch.setattr(supply_gather, "cache_dir", lambda: root / "supply")
    monkeypatch.setattr(manifest, "cache_dir", lambda: root / "sets")
    return root


@pytest.fixture(autouse=True)
def no_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """No reaper process (reaper.py) for the fake engines of unit tests."""
    monkeypatch.setenv("WARPDRIVE_REAPER", "0")
