"""One image build reads the app's inputs once: the requirements (or the lock), and the
app detected, in a build plan (wheelhouse.BuildInputs) handed down to the wheelhouse, the
deps layer and the app layer (static), not read again by each."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, tar_contents, write, write_django_site

from nox_warpdrive import config
from nox_warpdrive import image as image_module
from nox_warpdrive.build import app_layer, static, wheels_first
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import RunResult
from nox_warpdrive.image import build_image
from nox_warpdrive.inputs import read as inputs_read
from nox_warpdrive.inputs import requirements as inputs_requirements
from nox_warpdrive.plan import Step
from nox_warpdrive.runtime.protocol import SUMMARY_PREFIX
from nox_warpdrive.wheelhouse import build as wheelhouse_module
from nox_warpdrive.wheelhouse.build import build_inputs, requirements_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ENTRIES = [
    {"file": "django-5.0-py3-none-any.whl", "name": "django", "version": "5.0"},
    {"file": "gunicorn-22.0-py3-none-any.whl", "name": "gunicorn", "version": "22.0"},
    {"file": "whitenoise-6.7-py3-none-any.whl", "name": "whitenoise", "version": "6.7"},
]


class BuilderEngine(FakeEngine):
    """The shared fake engine whose wheelhouse step prints ``summary`` (the builder's
    last line, with the manifest it wrote); every other step prints nothing."""

    def __init__(self, summary: str) -> None:
        super().__init__(base=BASE)
        self.summary = summary

    def run(self, step: Step, out: Any, secrets_volume: str | None = None) -> RunResult:
        if step.name == "wheelhouse":
            out(self.summary)
        return super().run(step, out, secrets_volume)


def count_reads(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every read of the requirements and detection of the app, wherever it is called
    from (each module that imported the function), counted."""
    counts: collections.Counter[str] = collections.Counter()
    for module, name in [
        (wheelhouse_module, "read_inputs"),
        (inputs_read, "read_requirements"),
        (static, "read_requirements"),
        (wheelhouse_module, "read_requirements"),
        (inputs_requirements, "read_requirements"),
        (wheelhouse_module, "detect_app"),
        (app_layer, "detect_app"),
        (app_layer, "static_key_for"),
    ]:
        original = getattr(module, name)

        def counted(*args: Any, _f: Any = original, _n: str = name, **kw: Any) -> Any:
            counts[_n] += 1
            return _f(*args, **kw)

        monkeypatch.setattr(module, name, counted)
    return counts


def waits(step: Step) -> bool:
    """Whether a step's plan says it was started before its wheels were known."""
    plans = [
        json.loads(data)
        for d, tar in step.files
        for name, data in tar_contents(tar).items()
        if name.endswith("plan.json")
    ]
    return any(p.get("wait") for p in plans)


def test_one_image_build_reads_the_requirements_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold build of a Django app (the wheelhouse built, collectstatic run): the
    requirements read and the app detected once, not by the image, the wheelhouse and
    static each."""
    root = tmp_path / "site"
    write_django_site(root)
    cfg = load_config(root)
    digest = requirements_for(cfg, PKEY).digest
    entries = [{**e, "sha256": "a" * 64} for e in ENTRIES]
    written = {
        "format": 1,
        "sets": {digest: {"resolved": entries}},
        "wheels": {e["file"]: {"sha256": "a" * 64} for e in entries},
    }
    summary = SUMMARY_PREFIX + json.dumps({"new": [], "resolved": 3, "manifest": written})
    engine = BuilderEngine(summary)
    for module in (wheelhouse_module, image_module):
        monkeypatch.setattr(module, "probe_image", lambda *a, **k: (BASE, PKEY))
    for module in (wheelhouse_module, wheels_first):
        monkeypatch.setattr(module, "read_manifest", lambda *a, **k: {})
    monkeypatch.setattr(wheelhouse_module.buildenv, "build_secrets", lambda: {})
    counts = count_reads(monkeypatch)
    lines: list[str] = []
    result = build_image(cfg, engine, lines.append)
    assert not result.up_to_date and result.wheelhouse is not None  # the wheelhouse ran
    # the deps step started while the wheelhouse resolves (build/prestart.py) is left
    # out: unused here (the fake wheelhouse publishes nothing early), and started in a
    # thread of its own, so anywhere in the list
    assert [s.name for s in engine.steps if not waits(s)] == ["wheelhouse", "deps", "app"]
    assert [s.name for s in engine.steps if waits(s)] == ["deps"]
    assert counts.pop("static_key_for") == 1  # collectstatic's inputs were weighed
    assert counts == {"read_inputs": 1, "read_requirements": 1, "detect_app": 1}, lines


def test_the_build_inputs_are_what_each_step_read_before(tmp_path: Path) -> None:
    """The plan holds the same requirement set requirements_for gives (server added),
    the app detected, and the requirement files static leaves out."""
    root = tmp_path / "site"
    write_django_site(root)
    cfg = load_config(root)
    plan = build_inputs(cfg, PKEY)
    assert plan.reqs == requirements_for(cfg, PKEY)
    assert plan.reqs.extra == ("gunicorn", "whitenoise")
    app, server = wheelhouse_module.detect_app(cfg)
    assert (repr(plan.app), plan.server) == (repr(app), server)
    assert plan.requirement_names == {"requirements.txt"}
    assert static.not_static_inputs(cfg, plan.requirement_names) == static.not_static_inputs(cfg)


def test_pyproject_is_parsed_once_for_a_uv_lock_build(tmp_path: Path) -> None:
    """The config, the uv.lock reader and its check of the project's entry all ask for
    pyproject.toml: parsed once per content, each given its own copy."""
    root = tmp_path / "app"
    shutil.copytree(FIXTURES / "locks" / "uv", root)
    (root / "pylock.toml").unlink()  # uv.lock is then the one lock
    write(root, "wsgi.py", "application = None\n")
    config._parse_toml.cache_clear()
    cfg = load_config(root)
    plan = build_inputs(cfg, PKEY)
    assert plan.reqs.locked_from == "uv.lock"
    info = config._parse_toml.cache_info()
    assert (info.misses, info.hits > 0) == (1, True)
    first = config.load_pyproject(root)
    first["project"]["name"] = "changed by a caller"
    assert config.load_pyproject(root)["project"]["name"] != "changed by a caller"
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace("[project]", "[project]  # edited", 1))
    config.load_pyproject(root)
    assert config._parse_toml.cache_info().misses == 2  # new content: parsed again
