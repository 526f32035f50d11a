"""Reproducible images on a real engine, with the real local index (its C-extension
sdist compiled in the builder): two clones of one commit, with other mtimes and umask,
each built from nothing (no volume, no deps image, no image, no host cache), give the
same image ID; `image -- --check-reproducible` says so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import App, cleanup
from pkgindex import Index

from nox_warpdrive.build.reproduce import compare
from nox_warpdrive.engine import Engine

COMMIT_TIME = 1_700_000_000
ORIGIN = "https://git.example.com/team/app.git"


def git(cwd: Path, *args: str) -> str:
    if shutil.which("git") is None:
        pytest.fail("these tests need git: `apt-get install git`", pytrace=False)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "GIT_AUTHOR_DATE": f"@{COMMIT_TIME} +0000",
        "GIT_COMMITTER_DATE": f"@{COMMIT_TIME} +0000",
    }
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def nox_image(root: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nox -s image` in ``root`` with host caches of its own (``cache``)."""
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["XDG_CACHE_HOME"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", "-s", "image", "--", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def second_clone(first: Path, dest: Path) -> None:
    """A clone under umask 077 (files 0600), its files' mtimes another time."""
    old = os.umask(0o077)
    try:
        subprocess.run(["git", "clone", "-q", str(first), str(dest)], check=True)
    finally:
        os.umask(old)
    git(dest, "remote", "set-url", "origin", ORIGIN)
    for path in dest.rglob("*"):
        if ".git" not in path.parts:
            os.utime(path, (1_234_567_890, 1_234_567_890))


def test_two_clones_built_from_nothing_give_the_same_image(
    make_app: Any, engine: Engine, index_env: Index, tmp_path: Path
) -> None:
    app: App = make_app()
    (app.root / "pkg").mkdir()
    (app.root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    git(app.root, "init", "-q")
    git(app.root, "add", "-A")
    git(app.root, "commit", "-q", "-m", "one")
    git(app.root, "remote", "add", "origin", ORIGIN)
    head = git(app.root, "rev-parse", "HEAD")

    first = nox_image(app.root, tmp_path / "cache-1")
    assert first.returncode == 0, first.stdout + first.stderr
    first_info = engine.image(app.image)
    assert first_info is not None
    labels = first_info.labels
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.source"] == ORIGIN
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"  # the commit
    config = engine.inspect_raw(first_info.id)
    assert config["Created"].startswith("2023-11-14T22:13:20")
    ours = [r for r in engine.history(first_info.id) if "nox-warpdrive" in (r.get("Comment") or "")]
    assert ours and {r["Created"] for r in ours} <= {COMMIT_TIME, 1}, ours  # not the clock
    saved = tmp_path / "first.tar"  # to name what differs, should the second differ
    engine.save_image(first_info.id, saved)
    cleanup(engine, app)  # nothing of the first build is left: volume, deps image, image

    clone = tmp_path / "clone"
    second_clone(app.root, clone)
    assert (clone / "wsgi.py").stat().st_mode & 0o777 == 0o600
    second = nox_image(clone, tmp_path / "cache-2", "--check-reproducible")
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    second_info = engine.image(app.image)
    assert second_info is not None
    if second_info.id != first_info.id:
        engine.save_image(second_info.id, tmp_path / "second.tar")
        assert second_info.id == first_info.id, compare(saved, tmp_path / "second.tar")
    assert (
        f"reproducible: a second build in isolation gave the same image ID {first_info.id}" in out
    )
    # the check removed what it made: no tag, deps image or volume of its own is left
    leftovers = [t for i in engine.client.images.list() for t in i.tags if "warpdrive-check-" in t]
    assert leftovers == []
    assert not [v for v in engine.client.volumes.list() if f"{app.volume}-check-" in v.name]
    # the C extension compiled in the builder names no directory it was unpacked in
    binary = _compiled(engine, app.image, tmp_path)
    assert b"/tmp/warpdrive-src" not in binary
    assert b"pip-req-build" not in binary and b"/tmp/.tmp" not in binary


def _compiled(engine: Engine, ref: str, tmp_path: Path) -> bytes:
    """The bytes of wd-cext-demo's compiled module in image ``ref``."""
    container = engine.client.containers.create(ref, command=["true"])
    try:
        stream, _ = container.get_archive("/opt/app-root/venv/lib/python3.11/site-packages")
        archive = tmp_path / "site.tar"
        archive.write_bytes(b"".join(stream))
    finally:
        container.remove(force=True)
    with tarfile.open(archive) as tar:
        found = [m for m in tar if m.name.endswith(".so") and "wd_cext_demo" in m.name]
        assert found, "the C extension is not in the image"
        data = tar.extractfile(found[0])
        assert data is not None
        return data.read()


def test_the_check_names_what_a_build_hook_makes_differ(
    make_app: Any, engine: Engine, index_env: Index, tmp_path: Path
) -> None:
    """A build hook that writes the time cannot be reproducible: the check says where
    the images differ, fails, and leaves nothing of its own."""
    app: App = make_app(["wd-pure-demo"])
    hooks = app.root / ".warpdrive" / "action_hooks"
    hooks.mkdir(parents=True)
    (hooks / "build").write_text("#!/bin/sh\nset -e\ndate +%s%N > stamp.txt\n")
    (hooks / "build").chmod(0o755)
    done = nox_image(app.root, tmp_path / "cache", "--check-reproducible")
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "not reproducible: a second build in isolation gave" in out
    assert "first difference: layer " in out, out[-2000:]
    assert "Traceback" not in out
    leftovers = [t for i in engine.client.images.list() for t in i.tags if "warpdrive-check-" in t]
    assert leftovers == []
    assert not [v for v in engine.client.volumes.list() if f"{app.volume}-check-" in v.name]
