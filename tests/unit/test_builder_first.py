"""An image build whose requirements the wheelhouse never listed starts the builder
before the host reads the manifest (build/wheels_first.py: _builder_first); the sets a
volume listed are remembered on the host (wheelhouse/manifest.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, write_django_site

from nox_warpdrive import image as image_module
from nox_warpdrive.build import wheels_first
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import RunResult
from nox_warpdrive.image import build_image
from nox_warpdrive.plan import Step
from nox_warpdrive.runtime.protocol import SUMMARY_PREFIX
from nox_warpdrive.wheelhouse import build as wheelhouse_module
from nox_warpdrive.wheelhouse import manifest
from nox_warpdrive.wheelhouse.build import requirements_for

ENTRIES = [
    {"file": f"{n}-1.0-py3-none-any.whl", "name": n, "version": "1.0", "sha256": "a" * 64}
    for n in ("django", "gunicorn", "whitenoise")
]


def complete(digest: str, entries: list[dict[str, Any]] = ENTRIES) -> dict[str, Any]:
    """A manifest listing the set ``digest`` with all its wheels published, just used
    (no upkeep due)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "format": 1,
        "sets": {digest: {"resolved": entries, "last_used": now}},
        "wheels": {e["file"]: {"sha256": e["sha256"]} for e in entries},
    }


class Builder(FakeEngine):
    """Its wheelhouse step says it started (``started``), then prints the summary with
    ``written``, the manifest it wrote."""

    def __init__(self, written: dict[str, Any]) -> None:
        super().__init__(base=BASE)
        self.written = written
        self.started = threading.Event()

    def run(self, step: Step, out: Any, secrets_volume: str | None = None) -> RunResult:
        if step.name == "wheelhouse":
            self.started.set()
            out(SUMMARY_PREFIX + json.dumps({"new": [], "resolved": 3, "manifest": self.written}))
        return super().run(step, out, secrets_volume)


def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Config, str]:
    root = tmp_path / "site"
    write_django_site(root)
    cfg = load_config(root)
    for module in (wheelhouse_module, image_module):
        monkeypatch.setattr(module, "probe_image", lambda *a, **k: (BASE, PKEY))
    monkeypatch.setattr(wheelhouse_module.buildenv, "build_secrets", lambda: {})
    return cfg, requirements_for(cfg, PKEY).digest


def test_unseen_requirements_start_the_builder_before_the_manifest_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No record of the volume's sets (a first build, or the sets it listed lack these
    requirements): the host's read of the manifest (a container of its own) runs beside
    the builder's start instead of before it, and the sets the builder wrote are
    remembered."""
    cfg, digest = site(tmp_path, monkeypatch)
    engine = Builder(complete(digest))
    order: list[str] = []

    def read(*args: Any, **kw: Any) -> dict[str, Any]:
        # waits for the builder: a read before it would wait here the whole timeout
        order.append("builder started" if engine.started.wait(5) else "read first")
        return {}

    monkeypatch.setattr(wheels_first, "read_manifest", read)
    lines: list[str] = []
    build_image(cfg, engine, lines.append)
    assert order == ["builder started"]
    assert any("had not resolved; building them first" in line for line in lines), lines
    assert manifest.seen_sets(cfg.volume, PKEY) == {digest}


def test_requirements_the_volume_listed_read_the_manifest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set the volume listed when last seen (a `nox -s wheelhouse` run first, or
    requirements put back as they were): the manifest is read first, and the builder
    is not started when the set is complete."""
    cfg, digest = site(tmp_path, monkeypatch)
    manifest.remember_sets(cfg.volume, PKEY, complete(digest))
    engine = Builder({})
    reads: list[str] = []

    def read(*args: Any, **kw: Any) -> dict[str, Any]:
        reads.append("builder started" if engine.started.is_set() else "before the builder")
        return complete(digest)

    monkeypatch.setattr(wheels_first, "read_manifest", read)
    lines: list[str] = []
    build_image(cfg, engine, lines.append)
    assert reads == ["before the builder"]
    assert "wheelhouse" not in [s.name for s in engine.steps]
    assert not any("building them first" in line for line in lines), lines


@pytest.mark.parametrize(
    "why", ["no_index", "check_files", "upgrade", "seeds", "seen"], ids=lambda w: w
)
def test_the_builder_goes_first_only_for_a_plain_build_of_unseen_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    """--no-index (a lacking set is an error, said from the manifest), a repair,
    --upgrade and a volume seeded from an image first all read the manifest first."""
    cfg, digest = site(tmp_path, monkeypatch)
    reqs = requirements_for(cfg, PKEY)
    assert wheels_first._builder_first(cfg, PKEY, reqs, False, ())
    args: dict[str, Any] = {"no_index": False, "check_files": ()}
    if why == "no_index":
        args["no_index"] = True
    elif why == "check_files":
        args["check_files"] = ("django-1.0-py3-none-any.whl",)
    elif why == "upgrade":
        cfg = cfg.__class__(**{**cfg.__dict__, "upgrade": True})
    elif why == "seeds":
        cfg = cfg.__class__(**{**cfg.__dict__, "wheelhouse_image": "registry/wh:1"})
    else:
        manifest.remember_sets(cfg.volume, PKEY, complete(digest))
    assert not wheels_first._builder_first(cfg, PKEY, reqs, args["no_index"], args["check_files"])


def test_only_complete_sets_are_remembered_per_volume_and_key(tmp_path: Path) -> None:
    """A set whose wheels the volume no longer publishes is not counted; another volume
    (or platform key) has a record of its own; a manifest that lists no sets leaves the
    record as it was; a damaged record is no record."""
    assert manifest.seen_sets("wh", PKEY) is None
    broken = {**complete("d1"), "sets": {"d1": {"resolved": ENTRIES}, "d2": {"resolved": []}}}
    broken["sets"]["d3"] = {"resolved": [{**ENTRIES[0], "file": "gone-1.0-py3-none-any.whl"}]}
    manifest.remember_sets("wh", PKEY, broken)
    assert manifest.seen_sets("wh", PKEY) == {"d1", "d2"}
    assert manifest.seen_sets("other", PKEY) is None
    manifest.remember_sets("wh", PKEY, {"format": 1})
    assert manifest.seen_sets("wh", PKEY) == {"d1", "d2"}
    path = next(manifest.cache_dir().glob("*.json"))
    path.write_text("{not json")
    assert manifest.seen_sets("wh", PKEY) is None


def test_reading_the_manifest_remembers_its_sets(tmp_path: Path) -> None:
    engine = FakeEngine(base=BASE)
    engine.volumes.add("wh")
    engine.volume_files[("wh", manifest.manifest_path(PKEY))] = json.dumps(complete("d9")).encode()
    assert manifest.read_manifest(engine, "wh", PKEY, BASE.id)["sets"].keys() == {"d9"}
    assert manifest.seen_sets("wh", PKEY) == {"d9"}
