"""The bounded cache: the LRU choices (pure), sizes and their config errors, the lines
the user reads, and the builder's upkeep on a real directory laid out as the volume."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from unit_support import write_wsgi_site

from nox_warpdrive.config import load_config, parse_size
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.labels import (
    DEPS_BASE_LABEL,
    DEPS_DEPTH_LABEL,
    DEPS_KEY_LABEL,
    DEPS_PROJECT_LABEL,
    KIND_LABEL,
)
from nox_warpdrive.runtime import common, protocol, publish, wheel_cache
from nox_warpdrive.runtime import volume as rt_volume
from nox_warpdrive.runtime.wheel_cache import (
    FALLBACK,
    RECENT,
    choose,
    choose_unused,
    default_limit,
    last_use,
)
from nox_warpdrive.wheelhouse import cache_bounds
from nox_warpdrive.wheelhouse.cache_bounds import (
    CacheFile,
    DepsImage,
    choose_deps,
    choose_files,
    needs_upkeep,
    pruned_line,
    stamp,
)

NOW = 1_000_000_000.0
DAY = 86400.0


def sets(**entries: tuple[float, list[str]]) -> dict[str, tuple[float, list[str]]]:
    return dict(entries)


# -- choose: the size bound's LRU choice ------------------------------------------------

WHEELS = {
    "shared.whl": (100, 1.0),
    "old.whl": (200, 2.0),
    "mid.whl": (300, 3.0),
    "cur.whl": (400, 4.0),
    "orphan.whl": (50, 5.0),
}
SETS = sets(
    old=(NOW - 3 * DAY, ["shared.whl", "old.whl"]),
    mid=(NOW - 2 * DAY, ["shared.whl", "mid.whl"]),
    # the least recently used of all, but the current build's: never removed
    cur=(NOW - 9 * DAY, ["shared.whl", "cur.whl"]),
)
CACHES = [("cache", 1000), ("uv-cache", 2000)]
TOTAL = 10 + 3000 + 1050  # fixed, caches, wheels


def test_under_the_limit_nothing_goes() -> None:
    got = choose(SETS, WHEELS, CACHES, 10, ["cur"], TOTAL, NOW)
    assert (got["caches"], got["sets"], got["wheels"], got["freed"]) == ([], [], [], 0)
    assert got["usage"] == TOTAL and not got["over"]


def test_caches_go_first_in_order_and_only_as_many_as_needed() -> None:
    got = choose(SETS, WHEELS, CACHES, 10, ["cur"], TOTAL - 500, NOW)
    assert got["caches"] == ["cache"] and got["sets"] == [] and got["wheels"] == []
    assert got["freed"] == 1000 and not got["over"]


def test_then_orphans_then_the_least_recently_used_set_with_only_its_own_wheels() -> None:
    limit = TOTAL - 3000 - 50 - 1  # both caches and the orphan are not enough
    got = choose(SETS, WHEELS, CACHES, 10, ["cur"], limit, NOW)
    assert got["caches"] == ["cache", "uv-cache"]
    assert got["wheels"] == ["orphan.whl", "old.whl"]  # "shared.whl" is still used
    assert got["sets"] == ["old"]
    assert got["usage"] == TOTAL - 3000 - 50 - 200 and not got["over"]


def test_never_the_current_set_and_never_a_recent_one() -> None:
    recent = dict(SETS, mid=(NOW - RECENT / 2, ["shared.whl", "mid.whl"]))
    got = choose(recent, WHEELS, CACHES, 10, ["cur"], 1, NOW)
    assert got["sets"] == ["old"]
    assert "cur.whl" in WHEELS and "cur.whl" not in got["wheels"]
    assert "mid.whl" not in got["wheels"] and "shared.whl" not in got["wheels"]
    assert got["over"]  # it says so rather than remove what a build uses


def test_prune_unused_keeps_exactly_the_current_sets_wheels() -> None:
    got = choose_unused(SETS, WHEELS, ["cur"])
    assert got["sets"] == ["mid", "old"]
    assert got["wheels"] == ["mid.whl", "old.whl", "orphan.whl"]
    assert got["freed"] == 550


def test_last_use_is_the_later_of_last_used_and_built_at() -> None:
    assert last_use({"built_at": "2001-09-09T01:46:40Z"}) == NOW
    entry = {"built_at": "2001-09-09T01:46:40Z", "last_used": "2001-09-10T01:46:40Z"}
    assert last_use(entry) == NOW + DAY
    assert last_use({}) == 0.0 and last_use({"last_used": "yesterday"}) == 0.0


def test_default_limit_is_a_share_of_the_disk_as_buildkit() -> None:
    assert default_limit(None) == default_limit(0) == FALLBACK == 2 * 1000**3
    assert default_limit(500 * 1000**3) == 50 * 1000**3  # 10%
    assert default_limit(8 * 1000**3) == 800 * 1000**2


# -- sizes in [tool.warpdrive] ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123456, 123456),
        ("123456", 123456),
        ("10GB", 10 * 1000**3),
        ("500MB", 500 * 1000**2),
        ("2GiB", 2 * 1024**3),
        ("1.5 kb", 1500),
        ("64KiB", 65536),
    ],
)
def test_parse_size(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["10XB", "ten GB", "", "-1", "1e9", "0", 0])
def test_parse_size_refuses(value: int | str) -> None:
    with pytest.raises(ConfigError, match="cache-max-size") as err:
        parse_size(value)
    assert err.value.fix and "10GB" in err.value.fix


def write_project(root: Path, line: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text("flask\n")
    (root / "pyproject.toml").write_text(f'[project]\nname = "s"\n\n[tool.warpdrive]\n{line}\n')
    return root


def test_config_reads_cache_max_size(tmp_path: Path) -> None:
    assert load_config(write_project(tmp_path / "a", 'cache-max-size = "2GiB"')).cache_max_size == (
        2 * 1024**3
    )
    assert load_config(write_project(tmp_path / "b", "cache-max-size = 1000")).cache_max_size == (
        1000
    )
    assert load_config(write_project(tmp_path / "c", "")).cache_max_size is None


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('cache-max-size = "10XB"', "`cache-max-size` in [tool.warpdrive] is '10XB': not a size"),
        ("cache-max-size = 1.5", "`cache-max-size` in [tool.warpdrive] is 1.5 (float)"),
        ("cache-max-size = true", "`cache-max-size` in [tool.warpdrive] is True (bool)"),
        ("cache-max-sise = 1", "did you mean `cache-max-size`?"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, line: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_project(tmp_path, line))
    assert says in str(err.value)


# -- what the user reads, and when the host asks for an upkeep --------------------------


def test_pruned_lines() -> None:
    bound = {
        "mode": "bound",
        "limit": 50_000_000,
        "usage": 40_000_000,
        "freed": 12_300_000,
        "sets": 2,
        "wheels": 7,
        "caches": ["cache", "uv-cache"],
        "over": False,
    }
    assert pruned_line(bound, "vol") == (
        "warpdrive: cache bound: freed 12.3 MB in volume vol (pip's cache, uv's cache, "
        "7 wheels, 2 requirement sets): it holds 40.0 MB of 50.0 MB"
    )
    every = pruned_line(dict(bound, caches=["cache", "uv-cache", "helpers-pyc"]), "vol")
    assert every is not None and "(pip's cache, uv's cache, the builder's bytecode, " in every
    quiet = dict(bound, freed=0, caches=[], sets=0, wheels=0)
    assert pruned_line(quiet, "vol") is None
    over = dict(quiet, usage=60_000_000, over=True)
    line = pruned_line(over, "vol")
    assert line is not None and "still over" in line and "cache-max-size" in line
    unused = {"mode": "unused", "usage": 1000, "freed": 2_500_000, "sets": 2, "wheels": 3}
    assert pruned_line(dict(unused, keys=["k2"]), "vol") == (
        "warpdrive: --prune freed 2.5 MB in volume vol (3 wheels, 2 requirement sets, the "
        "wheelhouses of 1 other platform keys, pip's cache; uv's cache pruned): it holds 1.0 kB"
    )
    skipped = pruned_line({"mode": "skipped", "why": "another run"}, "vol")
    assert skipped is not None and "not pruned: another run" in skipped


def test_needs_upkeep_when_the_use_is_getting_old_or_the_volume_was_over() -> None:
    fresh = {"sets": {"d": {"last_used": wheel_cache.now_iso(NOW)}}}
    assert not needs_upkeep(fresh, "d", None, NOW + 60)
    assert needs_upkeep(fresh, "d", None, NOW + RECENT / 2)
    assert needs_upkeep({"sets": {"d": {}}}, "d", None, NOW)  # an old volume's set
    over = dict(fresh, volume={"bytes": 200, "limit": 100})
    assert needs_upkeep(over, "d", None, NOW + 60)
    assert not needs_upkeep(over, "d", 300, NOW + 60)  # the limit was raised since


# -- deps images and host caches ---------------------------------------------------------


def test_choose_deps_keeps_protected_and_recent_and_the_newest_within_the_limit() -> None:
    images = [
        DepsImage("tagged", 900, NOW - 60 * DAY, True),
        DepsImage("recent", 900, NOW - 60, False),
        DepsImage("new", 300, NOW - 2 * DAY, False),
        DepsImage("older", 100, NOW - 3 * DAY, False),
        DepsImage("ancient", 1, NOW - 70 * DAY, False),
    ]
    gone = [i.id for i in choose_deps(images, 1000, NOW)]
    # recent (900) + new (300) > 1000: new goes; older (100) then fits; ancient is too old
    assert gone == ["new", "ancient"]


def test_choose_files_least_recently_used_first_never_a_recent_one() -> None:
    files = [
        CacheFile(Path("a"), 100, NOW - 10 * DAY),
        CacheFile(Path("b"), 100, NOW - 5 * DAY),
        CacheFile(Path("c"), 100, NOW - 10),
    ]
    assert [f.path.name for f in choose_files(files, 150, NOW, 600)] == ["a", "b"]
    assert [f.path.name for f in choose_files(files, 250, NOW, 600)] == ["a"]
    assert choose_files(files, 10, NOW, 3600 * 24 * 30) == []


def test_bound_host_caches_removes_the_oldest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = tmp_path / "nox-warpdrive"
    for i, name in enumerate(["source-index/a.idx", "probes/b.json", "static-2/c.tar"]):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10000)
        os.utime(path, (NOW + i * DAY, NOW + i * DAY))
    line = cache_bounds.bound_host_caches(13000, now=NOW + 10 * DAY)  # one file's blocks
    assert line is not None and "2 least recently used files" in line
    assert [p.name for p in root.rglob("*") if p.is_file()] == ["c.tar"]
    assert cache_bounds.bound_host_caches(10**9, now=NOW + 10 * DAY) is None


def test_engine_times() -> None:
    assert stamp("2001-09-09T01:46:40.123456789Z") == pytest.approx(NOW + 0.123456)
    assert stamp("2001-09-09T03:46:40+02:00") == NOW
    assert stamp("0001-01-01T00:00:00Z") == 0.0 and stamp("") == 0.0 and stamp("x") == 0.0


# -- the builder's upkeep on a directory laid out as the volume --------------------------


class Volume:
    """/warpdrive with one platform key: wheels of three sets, an orphan, both caches."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "warpdrive"
        self.root = self.dir / "key"
        self.wheels = self.root / "wheels"
        self.wheels.mkdir(parents=True)
        old = wheel_cache.now_iso(time.time() - 3 * DAY)
        older = wheel_cache.now_iso(time.time() - 4 * DAY)
        self.manifest: dict[str, Any] = {"wheels": {}, "stats": {}, "sets": {}}
        for digest, files, when in (
            ("cur", ["a.whl", "b.whl"], older),
            ("mid", ["a.whl", "c.whl"], old),
            ("old", ["d.whl"], older),
        ):
            for fn in files:
                self.wheel(fn, 40_000)
            resolved = [{"file": f, "sha256": "0" * 64} for f in files]
            self.manifest["sets"][digest] = {"resolved": resolved, "built_at": when}
        self.wheel("orphan.whl", 40_000)
        for cache in ("cache", "uv-cache"):
            (self.root / cache).mkdir()
            (self.root / cache / "blob").write_bytes(b"c" * 200_000)
        (self.root / "manifest.json").write_text(json.dumps(self.manifest))

    def wheel(self, fn: str, size: int) -> None:
        (self.wheels / fn).write_bytes(b"w" * size)
        self.manifest["wheels"][fn] = "0" * 64

    def upkeep(self, **plan: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run the builder's upkeep; (its report, the manifest it wrote)."""
        staging, owner = rt_volume.make_staging(str(self.root))
        plan = {"requirements_hash": "cur", "volume_dir": str(self.dir), **plan}
        ctx = common.RunState(plan, str(self.root), staging)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                publish.upkeep(ctx)
        finally:
            owner.close()
            shutil.rmtree(staging)  # as the builder's main() does
        line = [x for x in out.getvalue().splitlines() if x.startswith(protocol.PRUNED_PREFIX)]
        assert len(line) == 1, out.getvalue()
        report = json.loads(line[0][len(protocol.PRUNED_PREFIX) :])
        return report, json.loads((self.root / "manifest.json").read_text())

    def files(self) -> set[str]:
        return set(os.listdir(self.wheels))

    def size(self) -> int:
        return wheel_cache.du(str(self.dir))


def test_upkeep_brings_the_volume_under_its_limit(tmp_path: Path) -> None:
    vol = Volume(tmp_path)
    before = vol.size()
    limit = before - 400_000 - 40_000 - 20_000  # caches, the orphan, and one more wheel
    report, written = vol.upkeep(cache_max_size=limit)
    assert report["mode"] == "bound" and not report["over"]
    assert report["caches"] == ["cache", "uv-cache"] and report["sets"] == 1
    # measured with the run's own staging directory, removed at its end
    assert vol.size() <= report["usage"] <= limit
    assert report["freed"] == before - vol.size()
    # "old" (d.whl) was the least recently used of the others; "cur" is older still
    assert vol.files() == {"a.whl", "b.whl", "c.whl"}
    assert set(written["sets"]) == {"cur", "mid"} and set(written["wheels"]) == vol.files()
    assert last_use(written["sets"]["cur"]) >= time.time() - 60  # its use recorded
    assert written["volume"]["limit"] == limit


def test_upkeep_under_the_limit_only_records_the_use(tmp_path: Path) -> None:
    vol = Volume(tmp_path)
    report, written = vol.upkeep(cache_max_size=10**12)
    assert report["freed"] == 0 and report["sets"] == 0 and not report["over"]
    assert vol.files() == {"a.whl", "b.whl", "c.whl", "d.whl", "orphan.whl"}
    assert last_use(written["sets"]["cur"]) >= time.time() - 60


def test_upkeep_does_nothing_while_another_run_is_live(tmp_path: Path) -> None:
    vol = Volume(tmp_path)
    _, owner = rt_volume.make_staging(str(vol.root))  # its flock is held
    try:
        report, written = vol.upkeep(cache_max_size=1)
    finally:
        owner.close()
    assert report["mode"] == "skipped"
    assert vol.files() == {"a.whl", "b.whl", "c.whl", "d.whl", "orphan.whl"}
    assert set(written["sets"]) == {"cur", "mid", "old"}


def test_prune_unused_keeps_only_the_current_set_and_clears_other_keys(tmp_path: Path) -> None:
    vol = Volume(tmp_path)
    other = vol.dir / "other-key"
    (other / "wheels").mkdir(parents=True)
    (other / "wheels" / "x.whl").write_bytes(b"x" * 1000)
    (other / "manifest.json").write_text("{}")
    before = vol.size()
    report, written = vol.upkeep(prune="unused")
    assert vol.files() == {"a.whl", "b.whl"}
    assert set(written["sets"]) == {"cur"} and set(written["wheels"]) == {"a.whl", "b.whl"}
    assert os.listdir(vol.root / "cache") == []
    assert (other / "wheels" / "x.whl").exists() and report["keys"] == []
    assert report["freed"] == before - vol.size() and report["wheels"] == 3

    report, _ = vol.upkeep(prune="unused", all_keys=True)
    assert report["keys"] == ["other-key"]
    assert sorted(os.listdir(other)) == [".lock"]


# -- deps images on the (fake) engine: what a tagged image depends on stays ---------------


class Engine(FakeEngine):
    """Images by id; removing one takes it away unless another is built on it (as the
    engine refuses: "image has dependent child images")."""

    def remove_image(self, image_id: str) -> None:
        super().remove_image(image_id)
        victim = self.images[image_id]
        if not any(cache_bounds._on(other, victim) for other in self.images.values()):
            del self.images[image_id]


def deps_image(key: str, layers: tuple[str, ...], size: int, when: str, **labels: str) -> ImageInfo:
    found = {
        KIND_LABEL: "deps",
        DEPS_PROJECT_LABEL: "site",
        DEPS_KEY_LABEL: key,
        DEPS_BASE_LABEL: "sha256:base",
        **labels,
    }
    return ImageInfo(f"sha256:{key}", (), found, size, len(layers), when, ("b1", *layers))


def test_prune_deps_images_never_what_a_tagged_image_depends_on(tmp_path: Path) -> None:
    write_wsgi_site(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "site"\n\n[tool.warpdrive]\ncache-max-size = 1000\n'
    )
    cfg = load_config(tmp_path)
    old = "2001-09-01T00:00:00.5Z"
    base = ImageInfo("sha256:base", (), {}, 5000, 1, old, ("b1",))
    lone = deps_image("k1", ("d1",), 7000, old)
    parent = deps_image("k2", ("d2",), 8000, old)
    child = deps_image("k3", ("d2", "d3"), 9000, old, **{DEPS_DEPTH_LABEL: "1"})
    app_labels = {**child.labels, KIND_LABEL: "app"}
    app = ImageInfo("sha256:app", (), app_labels, 9100, 4, old, ("b1", "d2", "d3", "a1"))
    app = dataclasses.replace(app, tags=("site:latest",))
    engine = Engine(images={i.id: i for i in (base, lone, parent, child, app)})

    found = {i.id: i for i in cache_bounds.deps_images(engine, cfg, "")}
    assert {k: (v.own, v.protected) for k, v in found.items()} == {
        "sha256:k1": (2000, False),
        "sha256:k2": (3000, True),  # the tagged app image's deps image is built on it
        "sha256:k3": (1000, True),  # the tagged app image's own
    }
    line = cache_bounds.prune_deps_images(engine, cfg, "", now=NOW)
    assert engine.removed == ["sha256:k1"]
    assert line is not None and "removed 1 of site" in line and "2.0 kB" in line

    # untagged, the app image protects nothing: the most recently used (k3, reused a day
    # ago) fits in the limit, k2 does not; the engine refuses it (k3 is built on it)
    engine.images["sha256:app"] = dataclasses.replace(app, tags=())
    engine.images["sha256:k3"] = dataclasses.replace(child, last_tagged="2001-09-08T00:00:00Z")
    assert cache_bounds.prune_deps_images(engine, cfg, "", now=NOW) is None
    assert engine.removed[1:] == ["sha256:k2"] and "sha256:k2" in engine.images
    # the current build's image protects them again
    assert cache_bounds.prune_deps_images(engine, cfg, "sha256:app", now=NOW) is None
    assert engine.removed[2:] == []


def test_upkeep_goes_on_to_other_platform_keys_when_this_one_is_not_enough(
    tmp_path: Path,
) -> None:
    vol = Volume(tmp_path)
    other = vol.dir / "other-key"
    (other / "wheels").mkdir(parents=True)
    old = wheel_cache.now_iso(time.time() - 5 * DAY)
    theirs = {
        "wheels": {"x.whl": "0" * 64, "y.whl": "0" * 64},
        "sets": {
            "gone": {"resolved": [{"file": "x.whl"}], "built_at": old},
            "fresh": {"resolved": [{"file": "y.whl"}], "last_used": wheel_cache.now_iso()},
        },
    }
    for fn in theirs["wheels"]:
        (other / "wheels" / fn).write_bytes(b"x" * 300_000)
    (other / "manifest.json").write_text(json.dumps(theirs))
    before = vol.size()
    # everything removable here (caches, orphan, "mid" and "old") is not enough
    report, written = vol.upkeep(cache_max_size=before - 400_000 - 4 * 40_000 - 100_000)
    assert vol.files() == {"a.whl", "b.whl"} and set(written["sets"]) == {"cur"}
    assert sorted(os.listdir(other / "wheels")) == ["y.whl"]  # used just now: it stays
    assert set(json.loads((other / "manifest.json").read_text())["sets"]) == {"fresh"}
    assert report["keys"] == 1 and report["sets"] == 3 and not report["over"]
    line = pruned_line(report, "vol")
    assert line is not None and "in 1 other platform keys too" in line


def test_clearing_another_key_leaves_a_starting_runs_staging_dir(tmp_path: Path) -> None:
    """A run of that key between its staging dir's creation and its lock keeps it
    (runtime/volume.py: make_staging); the rest goes."""
    key = tmp_path / "key"
    starting = key / ".staging-new-abc"
    starting.mkdir(parents=True)
    (key / ".lock").write_text("")
    (key / "wheels").mkdir()
    (key / "manifest.json").write_text("{}")
    wheel_cache.clear_key(str(key))
    assert sorted(os.listdir(key)) == [".lock", ".staging-new-abc"]
