"""Where a wheelhouse build looks before fetching or building anything: `--import DIR`,
then the wheelhouse image (`--pull REF`, else `wheelhouse-image`), each only while the
volume lacks the requirement set; a seed that completes it means no builder at all. And
the session's arguments and the config key that name them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, write

from nox_warpdrive.config import Config, load_config
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.runtime import wheel_cache
from nox_warpdrive.runtime.protocol import SUMMARY_PREFIX
from nox_warpdrive.wheelhouse import build as wheelhouse_module
from nox_warpdrive.wheelhouse import directory as wheelhouse_dir
from nox_warpdrive.wheelhouse import image as wheelhouse_image
from nox_warpdrive.wheelhouse.build import Seed, build_wheelhouse, seeds_for
from nox_warpdrive.wheelhouse.transfer import Imported

BUILDER = BASE
#: the module (the package's ``sessions`` is the function that registers them)
sessions_module = importlib.import_module("nox_warpdrive.sessions")


def project(tmp_path: Path, extra: str = "") -> Config:
    write(tmp_path, "requirements.txt", "flask\n")
    write(tmp_path, "wsgi.py", "def application(environ, start_response):\n    return []\n")
    write(tmp_path, "pyproject.toml", f'[project]\nname = "site"\n[tool.warpdrive]\n{extra}')
    return load_config(tmp_path)


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every seed tried, as (kind, where); none of them brings anything."""
    monkeypatch.setattr(wheelhouse_module, "probe_image", lambda *a, **k: (BUILDER, PKEY))
    monkeypatch.setattr(wheelhouse_module, "read_manifest", lambda *a, **k: {})
    monkeypatch.setattr(wheelhouse_module.buildenv, "build_secrets", lambda: {})
    tried: list[tuple[str, str]] = []

    def pull(engine: Any, wh: Any, ref: str, local: Any, out: Any) -> Imported | None:
        tried.append(("image", ref))
        return None

    def from_dir(engine: Any, wh: Any, directory: Path, local: Any, out: Any) -> Imported | None:
        tried.append(("dir", str(directory)))
        return None

    monkeypatch.setattr(wheelhouse_image, "pull_seed", pull)
    monkeypatch.setattr(wheelhouse_dir, "import_dir", from_dir)
    return tried


def complete(cfg: Config) -> dict[str, Any]:
    """A manifest that lists the app's requirement set."""
    digest = wheelhouse_module.requirements_for(cfg, PKEY).digest
    resolved = [
        {"file": "flask-3-py3-none-any.whl", "name": "flask", "version": "3", "sha256": "0" * 64}
    ]
    return {
        "wheels": {"flask-3-py3-none-any.whl": "0" * 64},
        # used just now: a build that finds it complete needs no upkeep run
        "sets": {digest: {"resolved": resolved, "last_used": wheel_cache.now_iso()}},
    }


def builder(summary: dict[str, Any] | None = None) -> FakeEngine:
    return FakeEngine(output=[SUMMARY_PREFIX + json.dumps(summary or {"new": [], "resolved": 1})])


def test_the_config_key_seeds_every_build(tmp_path: Path, seeded: list[tuple[str, str]]) -> None:
    cfg = project(tmp_path, 'wheelhouse-image = "reg.example/team/wh"\n')
    assert seeds_for(cfg) == (Seed("image", "reg.example/team/wh"),)
    engine = builder()
    build_wheelhouse(cfg, engine, lambda line: None)
    assert seeded == [("image", "reg.example/team/wh")]
    assert [s.name for s in engine.steps] == ["wheelhouse"]  # nothing came: it builds
    assert project(tmp_path / "plain").wheelhouse_image is None


def test_a_bad_reference_in_the_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="wheelhouse-image"):
        project(tmp_path, 'wheelhouse-image = "Not A Ref"\n')


def test_seeds_in_order_until_the_set_is_complete(
    tmp_path: Path, seeded: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = project(tmp_path)
    full = complete(cfg)

    def from_dir(engine: Any, wh: Any, directory: Path, local: Any, out: Any) -> Imported:
        seeded.append(("dir", str(directory)))
        return Imported(("flask-3-py3-none-any.whl",), (), 10, full)

    monkeypatch.setattr(wheelhouse_dir, "import_dir", from_dir)
    engine = builder()
    seeds = (Seed("dir", "/cache"), Seed("image", "reg/wh"))
    result = build_wheelhouse(cfg, engine, lambda line: None, seeds=seeds)
    assert seeded == [("dir", "/cache")]  # the image is not even pulled
    assert engine.steps == [] and result.up_to_date and result.manifest == full
    assert result.builder_id == BUILDER.id
    # the session's check still runs the builder (it verifies what came in)
    engine = builder()
    build_wheelhouse(cfg, engine, lambda line: None, seeds=seeds, check=True)
    assert [s.name for s in engine.steps] == ["wheelhouse"]


def test_a_complete_volume_is_not_seeded(
    tmp_path: Path, seeded: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = project(tmp_path, 'wheelhouse-image = "reg/wh"\n')
    monkeypatch.setattr(wheelhouse_module, "read_manifest", lambda *a, **k: complete(cfg))
    lines: list[str] = []
    build_wheelhouse(cfg, builder(), lines.append)
    assert seeded == []
    assert lines == [
        "warpdrive: installing from requirements.txt (found), resolved at build (not locked); "
        "plus gunicorn for the image's server",
        "warpdrive: the volume has every wheel these requirements need; not seeded from reg/wh",
    ]


def test_the_session_arguments(tmp_path: Path) -> None:
    parse = sessions_module.wheelhouse_parser().parse_args
    args = parse(["--pull", "--push", "reg/wh", "--import", "c", "--export", "d"])
    assert (args.pull, args.push, args.import_dir, args.export_dir) == ("", "reg/wh", "c", "d")
    args = parse([])
    assert (args.pull, args.push, args.import_dir, args.export_dir) == (None, None, None, None)
    ref = sessions_module._registry_ref
    assert ref(None, "reg/wh", "--push") is None
    assert ref("", "reg/wh", "--push") == "reg/wh"
    assert ref("other/wh:main", "reg/wh", "--push") == "other/wh:main"
    with pytest.raises(sessions_module._ArgError, match="--push needs a REF"):
        ref("", None, "--push")
    with pytest.raises(ConfigError):
        ref("Bad Ref", None, "--pull")
