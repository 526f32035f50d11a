"""The builder image is probed beside the base image, not after it: each probe is a
container start (over a second for another CPU, under emulation), and the wheelhouse
needs both. A failure of the builder's probe is left to the wheelhouse to report."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, write_wsgi_site

from nox_warpdrive import image as image_module
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.platform import PlatformKey


def site(root: Path, builder: bool) -> Config:
    write_wsgi_site(root)
    extra = 'builder-image = "example/builder:1"\n' if builder else ""
    (root / "pyproject.toml").write_text(f'[project]\nname = "site"\n[tool.warpdrive]\n{extra}')
    return load_config(root)


def recording(
    monkeypatch: pytest.MonkeyPatch, fail_builder: bool = False
) -> list[tuple[str, str, float, float]]:
    """probe_image replaced: (role, thread, start, end) of every call; each takes 0.2 s."""
    calls: list[tuple[str, str, float, float]] = []

    def probe(
        engine: object, ref: str, role: str, cfg: Config, store: bool = True
    ) -> tuple[ImageInfo, PlatformKey]:
        started = time.monotonic()
        time.sleep(0.2)
        calls.append((role, threading.current_thread().name, started, time.monotonic()))
        if fail_builder and role == "builder-image":
            raise ConfigError("no such builder", fix="name one")
        return BASE, PKEY

    monkeypatch.setattr(image_module, "probe_image", probe)
    return calls


def test_the_builder_is_probed_at_the_same_time_as_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = recording(monkeypatch)
    cfg = site(tmp_path / "site", builder=True)
    image_module._start(cfg, FakeEngine(base=BASE), lambda line: None, False, None)
    by_role = {role: (thread, start, end) for role, thread, start, end in calls}
    assert set(by_role) == {"base-image", "builder-image"}  # and joined: both done
    assert by_role["builder-image"][0] == "warpdrive-probe"
    assert by_role["base-image"][0] == threading.current_thread().name
    # overlapping, not one after the other
    assert by_role["builder-image"][1] < by_role["base-image"][2]
    assert by_role["base-image"][1] < by_role["builder-image"][2]


def test_no_second_probe_when_the_builder_is_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = recording(monkeypatch)
    cfg = site(tmp_path / "site", builder=False)
    cfg = Config(**{**cfg.__dict__, "builder_image": cfg.base_image})
    image_module._start(cfg, FakeEngine(base=BASE), lambda line: None, False, None)
    assert [role for role, *_ in calls] == ["base-image"]


def test_a_failed_builder_probe_is_left_to_the_wheelhouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = recording(monkeypatch, fail_builder=True)
    cfg = site(tmp_path / "site", builder=True)
    build = image_module._start(cfg, FakeEngine(base=BASE), lambda line: None, False, None)
    assert build.pkey == PKEY and len(calls) == 2
