"""The bounded cache on a real engine, the real local index and real volumes: after three
requirement sets, `--prune` keeps only what the current set uses and an offline build
still works; a `cache-max-size` under the volume's size brings it under, and the current
set still builds offline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import docker
from conftest import BASE_IMAGE, App, output
from pkgindex import Index
from test_build import manifest, nox

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image
from nox_warpdrive.labels import DEPS_PROJECT_LABEL, KIND_LABEL
from nox_warpdrive.runtime import wheel_cache
from nox_warpdrive.wheelhouse import cache_bounds
from nox_warpdrive.wheelhouse.build import requirements_for

#: three requirement sets, the last one current (the app imports what it names)
SETS = (
    ["wd-pure-demo", "wd-cext-demo", "wd-extra-demo"],
    ["wd-pure-demo", "wd-extra-demo"],
    ["wd-pure-demo", "wd-cext-demo"],
)


def sh(engine: Engine, volume: str, script: str, read_only: bool = True) -> str:
    out = output(
        engine.client,
        BASE_IMAGE,
        ["sh", "-c", script],
        mounts=[docker.types.Mount("/v", volume, type="volume", read_only=read_only)],
    )
    return str(out.decode())


def volume_bytes(engine: Engine, volume: str) -> int:
    """What the volume takes on disk, as `du -s -B1` counts it."""
    return int(sh(engine, volume, "du -s -B1 /v").split()[0])


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return str(result.stdout + result.stderr)


def three_sets(app: App, start: str = "") -> list[str]:
    """Build the wheelhouse for each set in turn; the digest of each. ``start``: the
    last one is for an app started by this command (no server: gunicorn and its
    dependency are then used only by the first two sets)."""
    digests = []
    for i, reqs in enumerate(SETS):
        app.requirements = reqs
        if start and i == len(SETS) - 1:
            app.extra_config["start"] = start
        app.write()
        ok(nox(app, "-s", "wheelhouse"))
        digests.append(requirements_for(load_config(app.root)).digest)
    return digests


def current_files(data: dict[str, Any], digest: str) -> set[str]:
    return {w["file"] for w in data["sets"][digest]["resolved"]}


def offline_image(app: App, index: Index) -> str:
    """`nox -s image -- --no-index`: asks nothing of the index."""
    before = len(index.requests)
    text = ok(nox(app, "-s", "image", "--", "--no-index"))
    assert len(index.requests) == before, index.requests[before:]
    return text


def test_prune_keeps_only_what_the_current_set_uses(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app()
    digests = three_sets(app)
    data = manifest(engine, app)
    assert set(data["sets"]) == set(digests)
    keep = current_files(data, digests[-1])
    assert any(f.startswith("wd_extra_demo-") for f in data["wheels"])
    before = volume_bytes(engine, app.volume)

    text = ok(nox(app, "-s", "wheelhouse", "--", "--prune"))
    after = volume_bytes(engine, app.volume)
    print(f"volume {app.volume}: {before} bytes before --prune, {after} after")
    line = [x for x in text.splitlines() if "--prune freed" in x]
    assert len(line) == 1 and "2 requirement sets" in line[0], text
    print(line[0])
    data = manifest(engine, app)
    assert set(data["sets"]) == {digests[-1]}
    assert set(data["wheels"]) == keep
    slug = data["platform_key"]
    key = sh(engine, app.volume, "ls /v").split()
    assert len(key) == 1, key
    on_disk = set(sh(engine, app.volume, f"ls /v/{key[0]}/wheels").split())
    assert on_disk == keep and not any(f.startswith("wd_extra_demo-") for f in on_disk)
    assert after < before, (before, after, slug)

    offline_image(app, index_env)


def test_cache_max_size_brings_the_volume_under(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app()
    digests = three_sets(app, start="python3 -m http.server 8080")
    data = manifest(engine, app)
    key = sh(engine, app.volume, "ls /v").split()[0]
    server = {f for f in data["wheels"] if f.startswith("gunicorn-")}
    assert server and not server & current_files(data, digests[-1])
    # the two older sets as if last used two days ago (the bound never removes a set
    # used in the last hour: a parallel build may be installing it)
    aged = "2000-01-01T00:00:00Z"
    for digest in digests[:2]:
        data["sets"][digest].update(built_at=aged, last_used=aged)
    text = json.dumps(data).replace("'", "'\\''")
    sh(engine, app.volume, f"printf '%s' '{text}' > /v/{key}/manifest.json", read_only=False)
    keep = current_files(data, digests[-1])
    before = volume_bytes(engine, app.volume)
    # what the current set needs: its wheels, uv, the manifest and the directories
    needed = int(
        sh(
            engine,
            app.volume,
            f"cd /v/{key} && du -s -B1 -c tools manifest.json "
            + " ".join(f"wheels/{f}" for f in sorted(keep))
            + " | tail -1",
        ).split()[0]
    )
    # over by more than the caches hold: the two older sets must go too (dropping one
    # alone frees nothing: gunicorn is in both)
    limit = needed + 64 * 1024
    print(f"volume {app.volume}: {before} bytes, the current set needs {needed}")
    assert limit < before, (limit, before)

    app.extra_config["cache-max-size"] = str(limit)
    app.write()
    text = ok(nox(app, "-s", "wheelhouse"))
    after = volume_bytes(engine, app.volume)
    print(f"cache-max-size {limit}: {before} bytes before, {after} after")
    line = [x for x in text.splitlines() if "cache bound: freed" in x]
    assert len(line) == 1 and "still over" not in line[0], text
    print(line[0])
    assert "pip's cache, uv's cache" in line[0] and "2 requirement sets" in line[0]
    assert after <= limit, (after, limit)
    data = manifest(engine, app)
    assert set(data["sets"]) == {digests[-1]} and set(data["wheels"]) == keep
    on_disk = set(sh(engine, app.volume, f"ls /v/{key}/wheels").split())
    assert on_disk == keep

    offline_image(app, index_env)


def test_an_image_build_records_the_use_of_a_complete_set(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """A build that finds its set complete runs no build, but records the set's use when
    the recorded one is old (a parallel bound must not take it while it is installed)."""
    app: App = make_app()
    ok(nox(app, "-s", "wheelhouse"))
    digest = requirements_for(load_config(app.root)).digest
    data = manifest(engine, app)
    key = sh(engine, app.volume, "ls /v").split()[0]
    data["sets"][digest].update(built_at="2000-01-01T00:00:00Z", last_used="2000-01-01T00:00:00Z")
    text = json.dumps(data).replace("'", "'\\''")
    sh(engine, app.volume, f"printf '%s' '{text}' > /v/{key}/manifest.json", read_only=False)

    lines: list[str] = []
    built = build_image(load_config(app.root), engine, lines.append, no_index=True)
    assert built.wheelhouse is None or built.wheelhouse.up_to_date
    used = manifest(engine, app)["sets"][digest]["last_used"]
    assert wheel_cache.parse_iso(used) > time.time() - 600, used
    assert not any(line.startswith("warpdrive: cache bound") for line in lines), lines


def test_deps_images_no_tagged_image_uses_are_bounded(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """Two deps images (the second set removes a package: a whole new deps layer); the
    tagged image's stays, the other goes once unused long enough (the bound's clock is
    moved, the engine and images are real)."""
    app: App = make_app(SETS[0])
    ok(nox(app, "-s", "image"))
    app.requirements = SETS[2]
    app.write()
    ok(nox(app, "-s", "image"))
    cfg = load_config(app.root)
    selector = {DEPS_PROJECT_LABEL: cfg.name, KIND_LABEL: "deps"}
    deps = engine.images_with_labels(selector)
    tagged = engine.image(cfg.image)
    assert tagged is not None
    # the tagged image is built on its deps image, and that one maybe on an earlier one
    # (an early deps layer): those stay; every other deps image may go
    under = [d for d in deps if tagged.diff_ids[: len(d.diff_ids)] == d.diff_ids]
    rest = [d for d in deps if d not in under]
    assert under and rest, deps

    # used in the last hour: they stay, whatever the bound
    assert cache_bounds.prune_deps_images(engine, cfg, "") is None
    assert all(engine.image(d.id) is not None for d in rest)
    # sixty days later no tagged image uses them: they go; the tagged image's stay
    line = cache_bounds.prune_deps_images(engine, cfg, "", now=time.time() + 61 * 86400)
    print(line)
    assert line is not None and f"removed {len(rest)} of {cfg.name}" in line
    assert all(engine.image(d.id) is None for d in rest)
    assert all(engine.image(d.id) is not None for d in under)
    offline_image(app, index_env)  # the current image's deps layer is still there


def test_parallel_runs_on_one_volume_under_a_tiny_bound(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """Two apps share a volume whose bound is one byte, and build their wheelhouses at
    the same time: each run's upkeep leaves alone what the other is publishing (it
    removes nothing while another run is live), so both succeed and both sets then build
    offline; a run alone on the volume then says it is still over its bound."""
    first: App = make_app(SETS[0])
    second: App = make_app(SETS[2])
    second.volume = first.volume
    for app in (first, second):
        app.extra_config["cache-max-size"] = "1"
        app.write()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "nox", "--no-color", "-s", "wheelhouse"],
            cwd=app.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for app in (first, second)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for text in outputs:  # each run bounded the volume, or said why it did not
        assert "still over" in text or "not pruned: another run" in text, text
    # alone on the volume, a run bounds it and says it is over: one byte holds nothing
    # (said, not a failure); which of the two parallel runs could bound depends on timing
    alone = nox(first, "-s", "wheelhouse")
    ok(alone)
    assert "still over" in alone.stdout + alone.stderr, alone
    for app in (first, second):
        offline_image(app, index_env)
