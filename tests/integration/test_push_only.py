"""`image -- --push-only`, for real: the image built in the registry (Debian's
docker-registry on loopback, and the one requiring a login) from a fresh runner (the
second, empty engine), pulling nothing. A code change uploads one small layer and names
every other by the digest the registry has; nothing changed uploads nothing; changed
requirements fall back to a build on the engine and a push, which works. The result,
pulled, runs and serves the new code. The password is in no output."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import App, output, write_django
from pkgindex import Index
from test_registry import cleanup_runner, client_for, nox_on, serve_on
from test_registry_auth import AuthRegistry, Runs, logged_in, write_pure
from test_registry_auth import runs as runs

from nox_warpdrive.engine import registry_api as api
from nox_warpdrive.labels import DEPS_DEPTH_LABEL, DEPS_WHEELS_LABEL

MAIN = "unix:///var/run/docker.sock"


def on_engine(host: str, app: App) -> list[str]:
    """What the engine at ``host`` holds of the app: image tags and ids."""
    with client_for(host) as client:
        found = []
        for img in client.images.list():
            labels = img.labels or {}
            if labels.get("org.opencontainers.image.title") == app.name or any(
                app.name in t for t in img.tags
            ):
                found.append(img.id)
        return found


def manifest(ref: str, login: tuple[str, str] | None = None) -> dict[str, Any]:
    parsed = api.parse_ref(ref)
    found = api.Registry(parsed.registry, login, timeout=10).manifest(
        parsed.repository, parsed.reference
    )
    assert found is not None, ref
    return {"digest": found.digest, **found.data}


def uploaded(text: str) -> tuple[int, float]:
    found = re.search(r"built in the registry: (\d+) layers? uploaded \(([\d.]+) kB", text)
    assert found, text
    return int(found.group(1)), float(found.group(2))


@pytest.fixture
def pushed(make_app: Any, index: Index, registry: str, runner: str) -> Iterator[App]:
    """A pure-Python WSGI app whose first pipeline (on the main engine) pushed its image."""
    app: App = make_app(["wd-pure-demo"])
    app.image = f"{registry}/{app.name}:latest"
    write_pure(app, "push-only-v1")
    code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
    assert code == 0 and f"pushed {app.image}" in text, text
    try:
        yield app
    finally:
        cleanup_runner(runner, app)
        cleanup_runner(MAIN, app)


def test_a_code_change_is_built_in_the_registry_pulling_nothing(
    pushed: App, index: Index, runner: str
) -> None:
    app = pushed
    before = manifest(app.image)
    write_pure(app, "push-only-v2")
    started = time.monotonic()
    args = ("-s", "image", "--", "--cache-from", app.image, "--push-only")
    code, text = nox_on(app, runner, index, *args)
    in_registry = time.monotonic() - started
    assert code == 0, text
    count, kb = uploaded(text)
    assert count == 1 and kb < 100, text
    assert "nothing pulled" in text and "Traceback" not in text, text
    assert "wheelhouse" not in text.split("nox >")[-1], text
    # nothing of the app on the engine: no pull, no deps image, no app image
    assert on_engine(runner, app) == [], text
    after = manifest(app.image)
    assert after["digest"] != before["digest"]
    layers_before = [d["digest"] for d in before["layers"]]
    layers_after = [d["digest"] for d in after["layers"]]
    assert layers_after[:-1] == layers_before[:-1] and layers_after[-1] != layers_before[-1]
    assert after["layers"][-1]["mediaType"] == api.DOCKER_LAYER
    # nothing changed: nothing uploaded, the same manifest
    code, text = nox_on(app, runner, index, *args)
    assert code == 0 and "up to date in the registry: nothing pushed or pulled" in text, text
    assert manifest(app.image)["digest"] == after["digest"]
    # `--push-only` alone: the image ref is its own cache
    code, text = nox_on(app, runner, index, "-s", "image", "--", "--push-only")
    assert code == 0 and "up to date in the registry" in text, text
    # pulled, it runs and serves the new code; its history says what made each layer
    with client_for(runner) as client:
        client.images.pull(app.image)
        history = [h.get("CreatedBy", "") for h in client.images.get(app.image).history()]
    assert "nox-warpdrive app layer" in history[0], history
    assert "push-only-v2" in serve_on(runner, app.image)
    cleanup_runner(runner, app)
    # the same code change the engine's way, on the same fresh runner: pull, build, push
    write_pure(app, "push-only-v3")
    started = time.monotonic()
    pushing = ("-s", "image", "--", "--cache-from", app.image, "--push")
    code, text = nox_on(app, runner, index, *pushing)
    engine_way = time.monotonic() - started
    assert code == 0 and f"pushed {app.image}" in text, text
    print(
        f"\nfresh runner, code change: --push-only {in_registry:.1f} s, "
        f"--cache-from --push {engine_way:.1f} s (whole nox runs)"
    )


#: the virtualenv of an image as a listing: every path, its kind, mode, owner, and for
#: files their sha256 (bytecode: only that it is there; it records its source's mtime)
VENV_TREE = r"""
import hashlib, os, stat
for root, dirs, files in os.walk("/opt/app-root/venv"):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(root, name)
        st = os.lstat(p)
        kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
        what = os.readlink(p) if kind == "l" else ""
        if kind == "f" and not p.endswith(".pyc"):
            what = hashlib.sha256(open(p, "rb").read()).hexdigest()
        print(p, kind, oct(st.st_mode), st.st_uid, st.st_gid, what)
"""


def same_tree(listing: str) -> list[str]:
    """A VENV_TREE listing, less what differs between two wheelhouse volumes holding the
    same wheels: uv records the wheel file's mtime in uv_cache.json (and its hash in
    RECORD)."""
    kept = []
    for line in listing.splitlines():
        if "/uv_cache.json " in line or line.split(" ")[0].endswith(".dist-info/RECORD"):
            line = line.rsplit(" ", 1)[0]
        kept.append(line)
    return kept


def in_image(host: str, ref: str, *command: str) -> str:
    with client_for(host) as client:
        out = output(client, ref, list(command[1:]), entrypoint=[command[0]])
    return bytes(out).decode()


def test_added_packages_grow_the_cache_in_the_registry(
    pushed: App, index: Index, runner: str
) -> None:
    """Requirements that only add packages: the wheelhouse is built for them and a layer
    of the added wheels goes on the cache's deps layers, in the registry; nothing is
    pulled, and the image holds exactly what a build on the engine makes."""
    app = pushed
    before = manifest(app.image)
    app.requirements += ["wd-extra-demo", "click==8.5.1"]
    write_pure(app, "push-only-deps")
    args = ("-s", "image", "--", "--cache-from", app.image, "--push-only")
    code, text = nox_on(app, runner, index, *args)
    assert code == 0, text
    assert "the requirements (or the installer) changed" in text, text
    assert "a deps layer of 2 added wheels" in text and "nothing pulled" in text, text
    assert "Traceback" not in text and on_engine(runner, app) == [], text
    after = manifest(app.image)
    old = [d["digest"] for d in before["layers"]]
    new = [d["digest"] for d in after["layers"]]
    # the base and deps layers named, then the added wheels' layer and the app layer
    assert new[: len(old) - 1] == old[:-1] and len(new) == len(old) + 1, (old, new)
    python = "/opt/app-root/venv/bin/python"
    with client_for(runner) as client:
        client.images.pull(app.image)
        labels = client.images.get(app.image).labels
    assert labels[DEPS_DEPTH_LABEL] == "1", labels
    assert "push-only-deps" in serve_on(runner, app.image)
    assert in_image(runner, app.image, "/opt/app-root/venv/bin/wd-extra").strip() == (
        "hello from wd-extra-demo"
    )
    grown = in_image(runner, app.image, python, "-c", VENV_TREE)
    # the engine's way, on the first pipeline's engine: installed on its deps image
    code, text = nox_on(app, None, index, "-s", "image")
    assert code == 0 and "adding 2 wheels on top of the deps layer" in text, text
    local = in_image(MAIN, app.image, python, "-c", VENV_TREE)
    assert "wd_extra_demo" in grown and "bin/wd-extra" in grown, grown
    assert same_tree(grown) == same_tree(local)
    # a code change on the grown image: built in the registry, one layer uploaded
    cleanup_runner(runner, app)
    write_pure(app, "push-only-deps-v2")
    code, text = nox_on(app, runner, index, *args)
    assert code == 0 and uploaded(text)[0] == 1 and "nothing pulled" in text, text
    assert [d["digest"] for d in manifest(app.image)["layers"]][:-1] == new[:-1]


def test_removed_packages_fall_back_and_work(
    make_app: Any, index: Index, registry: str, runner: str
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-extra-demo"])
    app.image = f"{registry}/{app.name}:latest"
    write_pure(app, "removed-v1")
    try:
        code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
        assert code == 0 and f"pushed {app.image}" in text, text
        app.requirements.remove("wd-extra-demo")
        write_pure(app, "removed-v2")
        args = ("-s", "image", "--", "--cache-from", app.image, "--push-only")
        code, text = nox_on(app, runner, index, *args)
        assert code == 0, text
        assert "packages were removed or changed, not only added" in text, text
        assert "building here and pushing instead" in text and f"pushed {app.image}" in text
        cleanup_runner(runner, app)
        assert "removed-v2" in serve_on(runner, app.image)
        with client_for(runner) as client:
            labels = client.images.get(app.image).labels
        assert labels[DEPS_DEPTH_LABEL] == "0", labels
        assert "wd_extra" not in labels[DEPS_WHEELS_LABEL], labels
    finally:
        cleanup_runner(runner, app)
        cleanup_runner(MAIN, app)


def test_a_registry_that_wants_a_login(
    make_app: Any,
    index: Index,
    auth_registry: AuthRegistry,
    runs: Runs,
    runner: str,
    tmp_path: Path,
) -> None:
    reg = auth_registry
    app: App = make_app(["wd-pure-demo"])
    app.image = f"{reg.address}/{app.name}:latest"
    write_pure(app, "auth-push-only-v1")
    config = logged_in(tmp_path / "docker", reg)
    try:
        code, text = runs.nox(app, index, config, "-s", "image", "--", "--push")
        assert code == 0 and f"pushed {app.image}" in text, text
        write_pure(app, "auth-push-only-v2")
        args = ("-s", "image", "--", "--push-only")
        # no login: one warning naming the fix, then the engine's way, which fails the same
        empty = tmp_path / "nobody"
        empty.mkdir()
        (empty / "config.json").write_text("{}")
        code, text = runs.nox(app, index, empty, *args, host=runner)
        assert code != 0, text
        assert f"{reg.address} wants a login" in text and f"docker login {reg.address}" in text
        assert "Traceback" not in text, text
        cleanup_runner(runner, app)
        # the config.json login
        code, text = runs.nox(app, index, config, *args, host=runner)
        assert code == 0, text
        assert uploaded(text)[0] == 1, text
        assert on_engine(runner, app) == [], text
        found = manifest(app.image, (reg.user, reg.password))
        raw = json.dumps(found)
        assert all(s not in raw for s in reg.secrets())
    finally:
        cleanup_runner(runner, app)
        cleanup_runner(MAIN, app)


def test_django_reuses_the_static_layer_by_digest(
    make_app: Any, index: Index, registry: str, runner: str
) -> None:
    app: App = make_app(["Django==5.2.19"])
    app.image = f"{registry}/{app.name}:latest"
    app.write()
    (app.root / "wsgi.py").unlink()
    write_django(app.root)
    try:
        code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
        assert code == 0 and "collectstatic" in text and f"pushed {app.image}" in text, text
        before = manifest(app.image)
        # a view changed: collectstatic's inputs did not; its layer is the cache's blob
        write_django(app.root, message="shop-v2")
        args = ("-s", "image", "--", "--cache-from", app.image, "--push-only")
        code, text = nox_on(app, runner, index, *args)
        assert code == 0, text
        assert "reusing the collected static files" in text and uploaded(text)[0] == 1, text
        assert on_engine(runner, app) == [], text
        after = manifest(app.image)
        static = {d["digest"] for d in before["layers"]} & {d["digest"] for d in after["layers"]}
        assert len(static) == len(before["layers"]) - 1, (before, after)
        assert "shop-v2 uid=1001" in serve_on(runner, app.image)
        cleanup_runner(runner, app)
        # a static file changed: collectstatic must run, so it is built here and pushed
        write_django(app.root, message="shop-v3", css="body { color: blue }\n")
        code, text = nox_on(app, runner, index, *args)
        assert code == 0, text
        assert "the static inputs changed: collectstatic must run" in text, text
        assert f"pushed {app.image}" in text, text
    finally:
        cleanup_runner(runner, app)
        cleanup_runner(MAIN, app)
