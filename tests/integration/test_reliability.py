"""What CI does to builds, on the real engine: signals at several points of a cold build,
several runs on one volume in the same second, damaged wheels, and two clones of one
source. Each is followed by a plain rerun that must succeed with no manual cleanup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker.types
import pytest
from conftest import BASE_IMAGE, App, output
from pkgindex import Index

from nox_warpdrive.engine import Engine
from nox_warpdrive.engine.owner import PROCESS_LABEL, TEMP_PREFIX, owner_of_name

CANARY = "canary-3f9d2c-token"


def nox_env(index: Index) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    url = index.url.replace("http://", f"http://ci-user:{CANARY}@")
    env.update(PIP_INDEX_URL=url, PYTHONUNBUFFERED="1", WARPDRIVE_NO_HOST_CA="1")
    return env


def start_nox(app: App, session: str, index: Index, *args: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "nox", "-f", "noxfile.py", "-s", session]
    if args:
        cmd += ["--", *args]
    return subprocess.Popen(
        cmd,
        cwd=app.root,
        env=nox_env(index),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_nox(app: App, session: str, index: Index, *args: str) -> tuple[int, str]:
    proc = start_nox(app, session, index, *args)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def leftovers(engine: Engine, pid: int) -> list[str]:
    """Containers and volumes the process ``pid`` made that still exist."""
    api = engine.client.api
    found = []
    for row in api.containers(all=True, filters={"name": TEMP_PREFIX}):
        owner = owner_of_name(row["Names"][0])
        if owner is not None and owner.pid == pid:
            found.append(row["Names"][0])
    for vol in api.volumes().get("Volumes") or []:
        if f".{pid}." in (vol.get("Labels") or {}).get(PROCESS_LABEL, ""):
            found.append(vol["Name"])
    return found


def volume_shell(engine: Engine, volume: str, script: str) -> str:
    out = output(
        engine.client,
        BASE_IMAGE,
        ["sh", "-c", script],
        mounts=[docker.types.Mount("/v", volume, type="volume")],
    )
    return str(out.decode())


#: (name, a line of a cold `nox -s image` at which the signal is sent)
POINTS = [
    ("builder-resolving", "resolving with uv"),
    ("builder-compiling", "building wd-cext-demo"),
    ("deps-installing", "warpdrive: $ "),
]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=str)
def test_signals_at_several_points_of_a_cold_build_leave_nothing(
    make_app: Any, engine: Engine, index: Index, sig: signal.Signals
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    for point, trigger in POINTS:
        proc = start_nox(app, "image", index)
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if trigger in line:
                proc.send_signal(sig)
                break
        else:
            pytest.fail(f"{point}: the build ended before {trigger!r}:\n{''.join(seen)}")
        rest, _ = proc.communicate(timeout=120)
        text = "".join(seen) + rest
        assert proc.returncode == -sig, f"{point}: exit {proc.returncode}\n{text}"
        assert f"interrupted by {sig.name}" in text, text
        assert not leftovers(engine, proc.pid), f"{point}: {leftovers(engine, proc.pid)}"
        assert CANARY not in text
        assert engine.image(app.image) is None, f"{point}: a tag moved"
    # a plain rerun succeeds and leaves no staging dir of the interrupted runs
    code, text = run_nox(app, "image", index)
    assert code == 0, text
    assert engine.image(app.image) is not None
    listing = volume_shell(engine, app.volume, "cd /v && find . -maxdepth 2 | sort")
    assert "staging-" not in listing, listing


def test_a_killed_run_is_swept_by_the_next(
    make_app: Any, engine: Engine, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL cannot be handled: with no reaper (WARPDRIVE_REAPER=0; see
    test_owner_death_engine.py for the reaper), its stopped builder container and secrets
    volume stay until the next run removes them (named and labelled by their owner)."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    monkeypatch.setenv("WARPDRIVE_REAPER", "0")
    proc = start_nox(app, "wheelhouse", index)
    monkeypatch.delenv("WARPDRIVE_REAPER")
    assert proc.stdout is not None
    for line in proc.stdout:
        if "resolving with uv" in line:
            proc.kill()
            break
    proc.communicate(timeout=60)
    assert leftovers(engine, proc.pid), "a SIGKILL should leave the builder for the sweep"
    code, text = run_nox(app, "wheelhouse", index)
    assert code == 0, text
    assert "leftovers of interrupted runs" in text
    assert not leftovers(engine, proc.pid)


SETS = [
    ["wd-pure-demo"],
    ["wd-cext-demo"],
    ["wd-pure-demo", "wd-cext-demo"],
    ["wd-extra-demo", "wd-cext-demo"],
]


def test_runs_in_the_same_second_on_one_cold_volume_all_succeed(
    make_app: Any, engine: Engine, index: Index
) -> None:
    apps: list[App] = [make_app(reqs) for reqs in SETS]
    shared = apps[0].volume
    for app in apps:
        app.volume = shared
        app.write()
    for attempt in range(2):
        engine.remove_volume(shared)
        barrier = threading.Barrier(len(apps))
        results: list[tuple[int, str]] = [(-1, "")] * len(apps)

        def one(i: int, barrier: threading.Barrier, results: list[tuple[int, str]]) -> None:
            barrier.wait()
            results[i] = run_nox(apps[i], "wheelhouse", index)

        threads = [
            threading.Thread(target=one, args=(i, barrier, results)) for i in range(len(apps))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for (code, text), reqs in zip(results, SETS, strict=True):
            assert code == 0, f"attempt {attempt}, {reqs}:\n{text}"
        # every set is recorded, every wheel matches its sha256
        code, text = run_nox(apps[2], "wheelhouse", index, "--verify")
        assert code == 0, text
        assert " 0 damaged, 0 missing" in text, text
    listing = volume_shell(engine, shared, "cd /v && find . -maxdepth 2 | sort")
    assert "staging-" not in listing, listing


def _pure_wheel(engine: Engine, app: App) -> str:
    return volume_shell(engine, app.volume, "cd /v/*/wheels && ls wd_pure_demo-*.whl").strip()


def test_damaged_wheels_are_fetched_again_never_trusted(
    make_app: Any, engine: Engine, index: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    code, text = run_nox(app, "wheelhouse", index)
    assert code == 0, text
    wheel = _pure_wheel(engine, app)
    # truncated, and the compiled wheel deleted
    volume_shell(
        engine,
        app.volume,
        f"cd /v/*/wheels && head -c 100 {wheel} > t && mv t {wheel} && rm wd_cext_demo-*.whl",
    )
    code, text = run_nox(app, "wheelhouse", index)
    assert code == 0, text
    assert "up to date" not in text
    assert f"wheel {wheel} is damaged" in text and "wd_cext_demo" in text, text
    # same size and mtime, other content: only a hash sees it, and the deps step hashes
    volume_shell(
        engine,
        app.volume,
        f"cd /v/*/wheels && python3 -c \"import os; p='{wheel}'; s=os.stat(p); "
        "d=bytearray(open(p,'rb').read()); d[len(d)//2]^=1; open(p,'wb').write(d); "
        'os.utime(p, ns=(s.st_atime_ns, s.st_mtime_ns))"',
    )
    code, text = run_nox(app, "wheelhouse", index)
    assert code == 0 and "up to date" in text, text  # stats unchanged: trusted here
    code, text = run_nox(app, "image", index)
    assert code == 0, text
    assert "do not match their sha256" in text and wheel in text, text
    code, text = run_nox(app, "wheelhouse", index, "--verify")
    assert code == 0 and " 0 damaged, 0 missing" in text, text


def _app_layer(engine: Engine, ref: str) -> str:
    info = engine.image(ref)
    assert info is not None
    return info.diff_ids[-1]


def test_two_clones_of_one_source_give_the_same_app_layer(
    make_app: Any, engine: Engine, index: Index, tmp_path: Path
) -> None:
    app: App = make_app(["wd-pure-demo"])
    code, text = run_nox(app, "image", index)
    assert code == 0, text
    first = _app_layer(engine, app.image)
    clone = tmp_path / "clone"
    old = os.umask(0o077)
    try:
        shutil.copytree(app.root, clone)
    finally:
        os.umask(old)
    later = time.time() + 86400
    for path in clone.rglob("*"):
        os.utime(path, (later, later), follow_symlinks=False)
    engine.client.images.remove(app.image, force=True)
    code, text = run_nox(App(clone, app.name, app.image, app.volume), "image", index)
    assert code == 0, text
    assert _app_layer(engine, app.image) == first


def test_env_files_are_left_out_and_said(make_app: Any, engine: Engine, index: Index) -> None:
    app: App = make_app(["wd-pure-demo"])
    (app.root / ".env").write_text(f"SECRET={CANARY}\n")
    code, text = run_nox(app, "image", index)
    assert code == 0, text
    assert "left out .env" in text
    out = output(engine.client, app.image, ["sh", "-c", "ls -a /opt/app-root/src"])
    assert ".env" not in out.decode().split()
    data = json.dumps(engine.inspect_raw(app.image))
    assert CANARY not in data


def test_two_image_builds_at_once_on_one_cold_volume(
    make_app: Any, engine: Engine, index: Index
) -> None:
    apps: list[App] = [make_app(["wd-pure-demo", "wd-cext-demo"]), make_app(["wd-cext-demo"])]
    apps[1].volume = apps[0].volume
    apps[1].write()
    results: list[tuple[int, str]] = [(-1, "")] * 2
    barrier = threading.Barrier(2)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = run_nox(apps[i], "image", index)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for code, text in results:
        assert code == 0, text
    for app in apps:
        assert engine.image(app.image) is not None


def test_a_rebuild_removes_the_image_the_tag_named_unless_it_is_used(
    make_app: Any, engine: Engine, index: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    assert run_nox(app, "image", index)[0] == 0
    first = engine.image(app.image)
    app.write(message="second")
    assert run_nox(app, "image", index)[0] == 0
    second = engine.image(app.image)
    assert first is not None and second is not None and second.id != first.id
    assert engine.image(first.id) is None, "the replaced image was left dangling"
    # a container of the current image keeps it when the tag moves on
    container = engine.client.containers.create(second.id, command=["true"])
    try:
        app.write(message="third")
        assert run_nox(app, "image", index)[0] == 0
        assert engine.image(second.id) is not None
    finally:
        container.remove(force=True)
