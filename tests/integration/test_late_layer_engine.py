"""The late wheels' layer (issue 24: the cold build; build/deps.EarlyDeps.add_late), on
the real engine with the local package index.

The wheelhouse of an app with wd-cext-demo (an sdist) is built first; then, as a cold
`nox -s image` does when the wheelhouse is done before the early deps image, the early
image (every wheel but the compiled one) is started, the compiled wheel's layer made
beside it in a virtualenv of its own, and put on it once it is there. The full deps
image that makes is the very image the regular way makes (the compiled wheel installed
on the early image): same ID, so a cold build gives the same image whichever finished
first."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import App
from pkgindex import Index
from test_build import wheelhouse

from nox_warpdrive.build.deps import EarlyDeps, choose_installer, ensure_deps, plan_deps
from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.wheelhouse.build import build_inputs, probe_image, read_manifest, resolved_set


def test_the_late_layer_on_the_early_image_is_the_image_a_grow_makes(
    make_app: object,
    engine: Engine,
    index_env: Index,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app: App = make_app()  # type: ignore[operator]
    wheelhouse(app, engine)
    cfg = load_config(app.root)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    manifest = read_manifest(engine, cfg.volume, pkey, base.id)
    full = resolved_set(manifest, build_inputs(cfg, pkey).reqs.digest)
    assert full is not None
    first = [w for w in full if not w.filename.startswith("wd_cext_demo-")]
    assert len(first) == len(full) - 1
    installer = choose_installer(cfg, manifest, pkey)

    early = EarlyDeps(engine, cfg, base, pkey)
    early.start(first, dict(manifest.get("tools") or {}))
    out: list[str] = []
    early.add_late(full, out.append)  # the early image still installs
    assert early.late is not None
    assert any("compiled files checked" in line for line in out), out  # shown as it runs
    assert early.join(out.append) is not None, out
    assert any("1 wheels the builder made added as a layer of their own" in o for o in out), out
    ref = plan_deps(cfg, base, pkey, full, installer).ref
    late = engine.image(ref)
    assert late is not None and early.image_id is not None
    early_image = engine.image(early.image_id)
    assert early_image is not None
    assert list(late.diff_ids[:-1]) == list(early_image.diff_ids)

    engine.remove_image(ref)  # the regular way now: grown on the early image
    said: list[str] = []
    grown, reused, _ = ensure_deps(engine, cfg, base, pkey, full, installer, said.append)
    assert not reused and any("adding 1 wheels on top of the deps layer" in s for s in said)
    assert grown == late.id
