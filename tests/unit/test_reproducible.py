"""The pieces of a reproducible image (no Docker): the image's date, uv's cache info and
its RECORD line, the paths an incremental deps layer holds, the fixed build path of an
sdist, and `--check-reproducible`'s isolation and comparison."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, write_wsgi_site

from nox_warpdrive.build import app_layer
from nox_warpdrive.build import reproduce as reproduce_module
from nox_warpdrive.build.reproduce import Isolated, compare
from nox_warpdrive.config import load_config
from nox_warpdrive.errors import EngineError, WarpdriveError
from nox_warpdrive.runtime import assemble, builds, layerdiff
from nox_warpdrive.tars import tar_files


def test_the_image_date_is_source_date_epoch_else_the_commit_else_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert app_layer.created_timestamp() == "1970-01-01T00:00:01Z"  # never the clock
    assert app_layer.created_timestamp(1_700_000_000) == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert app_layer.created_timestamp(1_700_000_000) == "1970-01-02T00:00:00Z"


def test_source_facts_read_head_and_its_commit_time(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "GIT_COMMITTER_DATE": "@1700000000 +0000",
    }
    (tmp_path / "a.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "a.py"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], env=env, check=True)
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    labels, created = app_layer.source_facts(tmp_path)
    assert labels == {"org.opencontainers.image.revision": head}
    assert created == "2023-11-14T22:13:20Z"
    assert app_layer.source_facts(tmp_path / "a.py") == ({}, "1970-01-01T00:00:01Z")


def _record_hash(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()


def test_uv_cache_info_and_its_record_line_hold_no_install_time(tmp_path: Path) -> None:
    dist = tmp_path / "demo-1.0.dist-info"
    dist.mkdir()
    info = {"timestamp": {"secs_since_epoch": 1796596643, "nanos_since_epoch": 797}}
    info.update(commit=None, tags=None)
    raw = json.dumps(info).encode()
    (dist / "uv_cache.json").write_bytes(raw)
    (dist / "RECORD").write_text(
        "demo/__init__.py,sha256=abc,3\n"
        f"demo-1.0.dist-info/uv_cache.json,sha256={_record_hash(raw)},{len(raw)}\n"
        "demo-1.0.dist-info/RECORD,,\n"
    )
    assemble.stable_cache_info(str(tmp_path), 1)
    body = (dist / "uv_cache.json").read_bytes()
    assert json.loads(body)["timestamp"] == {"secs_since_epoch": 1, "nanos_since_epoch": 0}
    assert list(json.loads(body)) == ["timestamp", "commit", "tags"]  # its order kept
    lines = (dist / "RECORD").read_text().splitlines()
    assert lines == [
        "demo/__init__.py,sha256=abc,3",
        f"demo-1.0.dist-info/uv_cache.json,sha256={_record_hash(body)},{len(body)}",
        "demo-1.0.dist-info/RECORD,,",
    ]


def test_an_incremental_layer_lists_what_changed_and_the_directories_holding_it(
    tmp_path: Path,
) -> None:
    """Directories are listed as parents of what changed, never by their own size
    (tmpfs and overlay give one directory other sizes): the same list on both."""
    top = tmp_path / "root"
    (top / "site" / "old").mkdir(parents=True)
    (top / "site" / "old" / "a.py").write_text("a")
    (top / "other").mkdir()
    assemble.set_mtimes(str(top), 1)
    before = layerdiff.snapshot(str(top))
    (top / "site" / "new").mkdir()
    (top / "site" / "new" / "b.py").write_text("b")
    for n in range(50):  # grows the directory's own size on most filesystems
        (top / "site" / f"c{n}.py").write_text("")
    assemble.set_mtimes(str(top), 1)
    listed = layerdiff.changed(str(top), before)
    rel = str(top).lstrip("/")
    assert listed[:4] == [rel, f"{rel}/site", f"{rel}/site/c0.py", f"{rel}/site/c1.py"]
    assert f"{rel}/site/new/b.py" in listed and f"{rel}/site/new" in listed
    assert f"{rel}/other" not in listed and f"{rel}/site/old" not in listed
    assert f"{rel}/site/old/a.py" not in listed


def test_an_sdist_is_unpacked_at_a_path_of_its_name_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builds, "SOURCE_ROOT", str(tmp_path / "src"))
    sdist = tmp_path / "staging-x1y2" / "demo-1.0.tar.gz"
    sdist.parent.mkdir()
    with tarfile.open(sdist, "w:gz") as tar:
        data = b"from setuptools import setup\nsetup()\n"
        info = tarfile.TarInfo("demo-1.0/setup.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    where = builds.fixed_source_dir(str(sdist))
    assert where == str(tmp_path / "src" / "demo-1.0" / "demo-1.0")
    assert (Path(where) / "setup.py").read_bytes().startswith(b"from setuptools")
    assert builds.fixed_source_dir(str(tmp_path / "missing.tar.gz")).endswith("missing.tar.gz")


def test_wheels_are_built_with_fixed_times_and_build_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFLAGS", "-O2")
    monkeypatch.delenv("CXXFLAGS", raising=False)
    plan = {"volume_dir": "/warpdrive", "key": "k"}
    env, _ = builds.build_env(plan, "/warpdrive/k/staging-1")
    assert env["SOURCE_DATE_EPOCH"] == builds.WHEEL_EPOCH
    assert env["CFLAGS"] == f"-O2 -ffile-prefix-map={builds.SOURCE_ROOT}=/build"
    assert env["CXXFLAGS"] == f"-ffile-prefix-map={builds.SOURCE_ROOT}=/build"


def test_the_check_sees_no_deps_image_it_did_not_make() -> None:
    theirs = BASE.__class__(**{**BASE.__dict__, "id": "sha256:theirs"})
    engine = FakeEngine(images={"warpdrive-deps/app:key": theirs}, candidates=[theirs])
    isolated = Isolated(engine, "tok")  # type: ignore[arg-type]
    assert isolated.image("warpdrive-deps/app:key") is None
    assert isolated.images_with_labels({"io.warpdrive.kind": "deps"}) == []
    isolated.tag("sha256:mine", "warpdrive-deps/app:key")
    assert isolated.tagged == {"warpdrive-check-tok/app:key": "sha256:mine"}
    assert engine.images["warpdrive-deps/app:key"] is theirs  # their tag did not move
    assert isolated.image("app:latest") is None  # other refs are the engine's own


def _saved(layers: list[dict[str, bytes]], created: str = "2023-11-14T22:13:20Z") -> bytes:
    """A `docker save` tar of an image of these layers (name -> content)."""
    members: dict[str, bytes] = {}
    paths, ids = [], []
    for i, files in enumerate(layers):
        layer = tar_files(files, mtime=i)
        ids.append("sha256:" + hashlib.sha256(layer).hexdigest())
        paths.append(f"l{i}/layer.tar")
        members[paths[-1]] = layer
    config = {
        "created": created,
        "rootfs": {"type": "layers", "diff_ids": ids},
        "history": [{"created_by": f"step {i}"} for i in range(len(layers))],
    }
    members["config.json"] = json.dumps(config).encode()
    members["manifest.json"] = json.dumps([{"Config": "config.json", "Layers": paths}]).encode()
    return tar_files(members)


def test_compare_names_the_first_layer_and_path_that_differ(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    a.write_bytes(_saved([{"x": b"1"}, {"app/a.py": b"a", "app/b.py": b"b"}]))
    b.write_bytes(_saved([{"x": b"1"}, {"app/a.py": b"a", "app/b.py": b"B"}]))
    said = compare(a, b)
    assert said is not None
    assert said.startswith("layer 2 of 2 (step 1): app/b.py: content ")
    assert compare(a, a) is None
    b.write_bytes(_saved([{"x": b"1"}, {"app/a.py": b"a", "app/b.py": b"b"}], "2024"))
    assert compare(a, b) == 'config.created: "2023-11-14T22:13:20Z" != "2024"'
    b.write_bytes(_saved([{"x": b"1"}]))
    assert compare(a, b) == "the first has 2 layers, the second 1"


def test_the_check_builds_in_isolation_and_removes_what_it_made(tmp_path: Path) -> None:
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")
    engine = FakeEngine()
    engine.volumes.add(f"{cfg.volume}-check-x")
    seen: list[tuple[str, str, str]] = []

    def build(again: object, isolated: object, ref: str) -> str:
        seen.append((again.volume, ref, os.environ["XDG_CACHE_HOME"]))  # type: ignore[attr-defined]
        isolated.tag("sha256:first", "warpdrive-deps/x:key")  # type: ignore[attr-defined]
        return "sha256:first"

    checked = reproduce_module.check(cfg, engine, lambda line: None, "sha256:first", build)
    assert checked.difference is None and "same image ID sha256:first" in checked.summary()
    ((volume, ref, cache),) = seen
    assert volume.startswith(f"{cfg.volume}-check-") and ":warpdrive-check-" in ref
    assert cache != os.environ.get("XDG_CACHE_HOME") and not Path(cache).exists()
    assert volume not in engine.volumes


def test_what_the_check_could_not_remove_is_said(tmp_path: Path) -> None:
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")

    class Busy(FakeEngine):
        def remove_volume(self, name: str) -> None:
            raise EngineError(f"volume {name} is in use")

    lines: list[str] = []
    checked = reproduce_module.check(
        cfg, Busy(), lines.append, "sha256:first", lambda *args: "sha256:first"
    )
    assert checked.difference is None
    (said,) = [line for line in lines if "left volume" in line]
    assert said.startswith(f"warpdrive: --check-reproducible left volume {cfg.volume}-check-")
    assert said.endswith("is in use")


def test_a_failed_second_build_is_said_as_the_checks(tmp_path: Path) -> None:
    write_wsgi_site(tmp_path / "site")
    cfg = load_config(tmp_path / "site")

    def build(again: object, isolated: object, ref: str) -> str:
        raise WarpdriveError("pip failed", fix="read its output")

    with pytest.raises(WarpdriveError) as caught:
        reproduce_module.check(cfg, FakeEngine(), lambda line: None, "sha256:first", build)
    assert caught.value.message.startswith("--check-reproducible: the second build")
    assert caught.value.fix == "read its output"
    assert isinstance(caught.value.__cause__, WarpdriveError)


def test_cache_home_puts_xdg_cache_home_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check's second build and the integration tests' session share it: inside,
    the caches are in ``path``; after, $XDG_CACHE_HOME is what it was (or unset)."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with reproduce_module.cache_home(str(tmp_path)):
        assert os.environ["XDG_CACHE_HOME"] == str(tmp_path)
    assert "XDG_CACHE_HOME" not in os.environ
    monkeypatch.setenv("XDG_CACHE_HOME", "/elsewhere")
    with pytest.raises(RuntimeError), reproduce_module.cache_home(str(tmp_path)):
        raise RuntimeError
    assert os.environ["XDG_CACHE_HOME"] == "/elsewhere"
