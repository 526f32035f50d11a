"""A wheelhouse volume whose filesystem fills, and volumes that do not keep their files,
on the real engine: the error names the volume, nothing partial stays in its caches, and
the same command succeeds once there is room again."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import App
from pkgindex import Index
from test_reliability import run_nox, start_nox, volume_shell

from nox_warpdrive.engine import Engine


@contextlib.contextmanager
def small_volume(engine: Engine, tmp_path: Path, size: str) -> Iterator[tuple[str, Path]]:
    """A named volume on a host tmpfs of ``size`` (a local bind volume: the files stay
    between containers, and the filesystem can be grown with a remount)."""
    mount = tmp_path / "small-fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    name = f"wdtest-small-{uuid.uuid4().hex[:8]}"
    try:
        engine.client.volumes.create(
            name, driver="local", driver_opts={"type": "none", "o": "bind", "device": str(mount)}
        )
        yield name, mount
    finally:
        engine.remove_volume(name)
        subprocess.run(["umount", str(mount)], check=False)


def fill(mount: Path, leave: int) -> None:
    """Fill the filesystem at ``mount`` (with a file that is no part of the wheelhouse)
    until ``leave`` bytes are free."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    (mount / "someone-elses-file").write_bytes(b"x" * max(0, free - leave))


def cache_is_whole(mount: Path) -> list[str]:
    """What in the volume's caches is cut off: wheels that are no whole zip, temp files."""
    bad = []
    for path in mount.rglob("*"):
        if not path.is_file() or "cache" not in path.parts:
            continue
        if path.suffix == ".tmp":
            bad.append(str(path))
        elif path.suffix == ".whl":
            try:
                zipfile.ZipFile(path).close()
            except zipfile.BadZipFile:
                bad.append(str(path))
    return bad


def fill_during(app: App, index: Index, mount: Path, trigger: str) -> tuple[int, str]:
    """`nox -s wheelhouse`, with the volume's filesystem filled up when ``trigger`` is
    printed (another writer on the same disk, at the worst moment)."""
    proc = start_nox(app, "wheelhouse", index)
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line)
        if trigger in line:
            fill(mount, 0)
            break
    rest, _ = proc.communicate(timeout=600)
    return proc.returncode, "".join(seen) + rest


def test_a_full_volume_is_named_and_the_same_command_succeeds_once_it_has_room(
    make_app: Any, engine: Engine, index: Index, tmp_path: Path
) -> None:
    app: App = make_app(["wd-pure-demo"])
    with small_volume(engine, tmp_path, "4m") as (volume, mount):
        app.volume = volume
        app.write()
        code, text = run_nox(app, "wheelhouse", index)
        assert code == 0, text
        # the disk fills while the sdist compiles (in the engine's /tmp): pip's copy of
        # the wheel into its cache in the volume is what no longer fits
        app.requirements = ["wd-pure-demo", "wd-cext-demo"]
        app.write()
        code, text = fill_during(app, index, mount, "Building wheel for wd-cext-demo")
        assert code != 0, text
        assert f"the volume '{volume}' is full" in text, text
        assert "free of 4.2 MB" in text, text
        assert f"docker volume inspect {volume}" in text, text
        assert "docker system df" not in text, text
        assert "cut-off files from pip's cache" in text, text
        assert not cache_is_whole(mount), text
        # the filesystem grows; the same command succeeds with no manual step
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        code, text = run_nox(app, "wheelhouse", index)
        assert code == 0, text
        assert "wd_cext_demo" in text, text
        assert "is invalid" not in text, text
        code, text = run_nox(app, "wheelhouse", index, "--verify")
        assert code == 0 and " 0 damaged, 0 missing" in text, text


def test_a_fresh_small_volume_is_named_and_works_once_grown(
    make_app: Any, engine: Engine, index: Index, tmp_path: Path
) -> None:
    """A first build into a volume too small for its wheels (uv and gunicorn do not
    fit): the volume is named; grown, the same command succeeds."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    with small_volume(engine, tmp_path, "1m") as (volume, mount):
        app.volume = volume
        app.write()
        fill(mount, 128 * 1024)
        code, text = run_nox(app, "wheelhouse", index)
        assert code != 0, text
        assert f"the volume '{volume}' is full" in text, text
        assert "Traceback" not in text.split("nox > Session wheelhouse")[-1], text
        assert not cache_is_whole(mount), text
        subprocess.run(["mount", "-o", "remount,size=128m", str(mount)], check=True)
        code, text = run_nox(app, "wheelhouse", index)
        assert code == 0, text


def test_a_volume_that_does_not_keep_its_files_is_named(
    make_app: Any, engine: Engine, index: Index
) -> None:
    """A tmpfs volume is emptied whenever no container mounts it: `wheelhouse` and
    `image` say so, instead of succeeding and then sending the user round `--verify`."""
    app: App = make_app(["wd-pure-demo"])
    name = f"wdtest-tmpfs-{uuid.uuid4().hex[:8]}"
    engine.client.volumes.create(
        name, driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=256m"}
    )
    try:
        app.volume = name
        app.write()
        said = f"the volume '{name}' did not keep its files: a tmpfs volume?"
        code, text = run_nox(app, "wheelhouse", index)
        assert code != 0, text
        assert said in text, text
        # `image` installs the first wheels while the builder still mounts the volume
        # (the early deps layer): when the two overlap, the tmpfs keeps its files and the
        # image is right; when they do not, the volume is named. Never the --verify loop.
        code, text = run_nox(app, "image", index)
        assert code == 0 or said in text, text
        assert "do not match their sha256" not in text, text
    finally:
        engine.remove_volume(name)


def test_a_wheel_missing_from_the_volume_is_fetched_again_by_an_image_build(
    make_app: Any, engine: Engine, index: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    code, text = run_nox(app, "wheelhouse", index)
    assert code == 0, text
    volume_shell(engine, app.volume, "rm /v/*/wheels/wd_pure_demo-*.whl")
    code, text = run_nox(app, "image", index)
    assert code == 0, text
    assert "the wheelhouse lists are missing from it: wd_pure_demo" in text, text
    assert "fetching or building them again" in text, text
    assert "did not keep its files" not in text, text
    code, text = run_nox(app, "wheelhouse", index, "--verify")
    assert code == 0 and " 0 damaged, 0 missing" in text, text


def test_a_full_host_disk_while_an_export_is_written_is_named(
    make_app: Any, engine: Engine, index: Index, tmp_path: Path
) -> None:
    """`wheelhouse -- --export DIR` onto a full host filesystem: the error names the
    directory, no half-written file stays, and with room the same command succeeds."""
    app: App = make_app(["wd-pure-demo"])
    mount = tmp_path / "ci-cache"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        fill(mount, 0)
        code, text = run_nox(app, "wheelhouse", index, "--export", str(mount))
        assert code != 0, text
        assert f"the host disk is full: writing in {mount}/" in text, text
        assert "Traceback" not in text, text
        written = [p for p in mount.rglob("*") if p.is_file()]
        assert [p.name for p in written] == ["someone-elses-file"], written
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        code, text = run_nox(app, "wheelhouse", index, "--export", str(mount))
        assert code == 0, text
        assert "exported the wheelhouse" in text, text
    finally:
        subprocess.run(["umount", str(mount)], check=False)
