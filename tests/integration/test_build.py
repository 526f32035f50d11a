"""End to end on a real engine: wheelhouse, image, run, reuse, failure, secrets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import BASE_IMAGE, BUILDER_IMAGE, App, output, serve_image
from pkgindex import Index

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.engine.owner import PROCESS_LABEL, me
from nox_warpdrive.errors import PlatformMismatchError, WarpdriveError
from nox_warpdrive.image import build_image
from nox_warpdrive.wheelhouse.build import build_wheelhouse, manifest_path, probe_image

ROOT = Path(__file__).resolve().parents[2]


def wheelhouse(app: App, engine: Engine, lines: list[str] | None = None, **kw: Any) -> Any:
    out = lines.append if lines is not None else (lambda line: None)
    return build_wheelhouse(load_config(app.root), engine, out, **kw)


def image(app: App, engine: Engine, lines: list[str] | None = None, **kw: Any) -> Any:
    out = lines.append if lines is not None else (lambda line: None)
    return build_image(load_config(app.root), engine, out, **kw)


def manifest(engine: Engine, app: App) -> dict[str, Any]:
    cfg = load_config(app.root)
    _, key = probe_image(engine, cfg.builder_image, "builder-image", cfg)
    raw = engine.read_volume_file(app.volume, manifest_path(key), BASE_IMAGE)
    assert raw is not None, "no manifest in the volume"
    data: dict[str, Any] = json.loads(raw)
    return data


def volume_listing(engine: Engine, volume: str) -> list[str]:
    out = output(
        engine.client,
        BASE_IMAGE,
        ["sh", "-c", "cd /v && find . | sort"],
        mounts=[docker.types.Mount("/v", volume, type="volume", read_only=True)],
    )
    return str(out.decode()).split()


def http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (OSError, urllib.error.URLError) as exc:
            last = exc
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s: {last}")


def nox(
    app: App, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nox", "--no-color", *args],
        cwd=app.root,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
    )


# ---------------------------------------------------------------------------------------


def test_wheelhouse_builds_once_then_only_what_is_new(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app()
    lines: list[str] = []
    first = wheelhouse(app, engine, lines)
    text = "\n".join(lines)
    assert not first.up_to_date
    new = set(first.new)
    cext = [w for w in new if w.startswith("wd_cext_demo-0.1.0-cp311-cp311-linux_")]
    assert cext, f"the C extension was not built into a platform wheel: {new}"
    assert "wd_pure_demo-0.1.0-py3-none-any.whl" in new
    assert any(w.startswith("gunicorn-") for w in new), "the server was not added"
    assert "building wd-cext-demo==0.1.0" in text, "the sdist was not compiled in the builder"
    # uv came straight from the index (PEP 503 HTML here), without starting pip
    assert "fetched uv-" in text and "fetching uv with pip" not in text, text
    assert any(r.rstrip("/").endswith("/simple/uv") for r in index_env.requests), index_env.requests

    # the manifest records every wheel with its real sha256
    data = manifest(engine, app)
    assert set(data["wheels"]) == new
    raw = engine.read_volume_file(app.volume, f"{first.key.slug}/wheels/{cext[0]}", BASE_IMAGE)
    assert raw is not None
    assert data["wheels"][cext[0]] == hashlib.sha256(raw).hexdigest()

    # unchanged requirements: nothing downloaded, built, or even asked of the index
    before = list(index_env.requests)
    again = wheelhouse(app, engine)
    assert again.up_to_date
    assert index_env.requests == before, "an up-to-date wheelhouse consulted the index"

    # one added requirement: only that one is fetched and published
    app.requirements.append("wd-extra-demo")
    app.write()
    downloaded_before = len(index_env.downloaded())  # the index serves the whole session
    lines.clear()
    third = wheelhouse(app, engine, lines)
    assert third.new == ("wd_extra_demo-0.1.0-py3-none-any.whl",)
    fetched = set(index_env.downloaded()[downloaded_before:])
    assert fetched == {"wd_extra_demo-0.1.0-py3-none-any.whl"}, fetched
    assert "building wd-cext-demo" not in "\n".join(lines)
    assert "resolving with uv" in "\n".join(lines), "uv was not used"

    # nothing half-written or temporary stays in the volume
    listing = volume_listing(engine, app.volume)
    ours = [p for p in listing if "/uv-cache/" not in p and "/cache/" not in p]
    assert not [p for p in ours if "staging-" in p or ".tmp-" in p or p.endswith(".part")], ours


def test_nox_sessions_build_an_image_that_serves_as_non_root(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app()
    env = dict(os.environ)
    r = nox(app, "-s", "wheelhouse", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    # --no-index: the index is made unreachable to prove it is not needed
    env["PIP_INDEX_URL"] = "http://127.0.0.1:9/simple/"
    r = nox(app, "-s", "image", "--", "--no-index", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr

    attrs = engine.inspect_raw(app.image)
    cfg = attrs["Config"]
    assert cfg["User"] == "1001"
    assert not cfg.get("Volumes"), "a build-time mount leaked into the image config"
    assert "8080/tcp" in cfg["ExposedPorts"]
    labels = cfg["Labels"]
    base = engine.image(BASE_IMAGE)
    assert base is not None
    assert labels["io.warpdrive.base-image-id"] == base.id
    assert labels["io.warpdrive.platform-key"].startswith("cp311-cp311-linux_")
    assert labels["org.opencontainers.image.created"]

    with serve_image(engine, app.image) as (container, url):
        status, body = http_get(f"{url}/")
        assert status == 200, body
        assert "hello-v1 hello from wd-pure-demo add=42 uid=1001" in body
        code, out = container.exec_run(["sh", "-c", "id -u; id -g"])
        assert out.decode().split() == ["1001", "0"]
        code, _ = container.exec_run(["sh", "-c", "command -v gcc || command -v cc"])
        assert code != 0, "a compiler is in the runtime image"
        # no wheel files and no pip/uv cache beyond what the base image ships
        code, out = container.exec_run(
            user="0",
            cmd=[
                "sh",
                "-c",
                "find / -xdev \\( -name '*.whl' -o -path '*/.cache/pip' -o -path '*/.cache/uv' "
                "-o -path '*/warpdrive-build*' \\) -not -path '/usr/share/python-wheels/*' "
                "-not -path '/usr/lib/python3*/ensurepip/*'",
            ],
        )
        assert out.decode().strip() == "", out.decode()
        started = time.monotonic()
        container.stop(timeout=10)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0
        assert time.monotonic() - started < 10

    # an arbitrary uid in group 0 (OpenShift) also works
    with serve_image(engine, app.image, user="12345:0") as (_, url):
        status, body = http_get(f"{url}/")
        assert status == 200 and "uid=12345" in body, body


def test_code_change_rebuilds_only_the_app_layer(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    wheelhouse(app, engine)
    first = image(app, engine, no_index=True)
    assert not first.up_to_date and not first.deps_reused
    engine.tag(first.image_id, f"{app.name}:first")  # a second tag keeps it after rebuilds

    same = image(app, engine, no_index=True)
    assert same.up_to_date and same.image_id == first.image_id

    app.write(message="hello-v2")
    second = image(app, engine, no_index=True)
    assert second.deps_reused and not second.up_to_date
    assert second.image_id != first.image_id
    old = engine.inspect_raw(first.image_id)["RootFS"]["Layers"]
    new = engine.inspect_raw(second.image_id)["RootFS"]["Layers"]
    assert old[:-1] == new[:-1], "a code change rebuilt more than the app layer"
    assert old[-1] != new[-1]


def test_failures_keep_the_previous_wheelhouse_and_image(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    app.extra_config["installer"] = "pip"  # the fallback path, without uv
    app.write()
    lines: list[str] = []
    wheelhouse(app, engine, lines)
    assert "resolving with uv" not in "\n".join(lines)
    good = image(app, engine, no_index=True)
    before = manifest(engine, app)

    app.requirements.append("wd-does-not-exist-anywhere")
    app.write()
    with pytest.raises(WarpdriveError) as info:
        wheelhouse(app, engine)
    assert "manifest is unchanged" in str(info.value)
    assert manifest(engine, app) == before
    assert not [p for p in volume_listing(engine, app.volume) if "staging-" in p]

    with pytest.raises(WarpdriveError) as info:
        image(app, engine, no_index=True)
    assert "nox -s wheelhouse" in str(info.value)
    current = engine.image(app.image)
    assert current is not None and current.id == good.image_id


def test_platform_mismatch_is_refused(make_app: Any, engine: Engine, index_env: Index) -> None:
    app: App = make_app(["wd-pure-demo"])
    # a builder that differs from the base in one field of the key: the distro release
    tag = f"wdtest-mismatch:{uuid.uuid4().hex[:8]}"
    c = engine.client.containers.run(
        BUILDER_IMAGE,
        ["sh", "-c", "sed -i 's/^VERSION_ID=.*/VERSION_ID=\"99\"/' /usr/lib/os-release"],
        detach=True,
    )
    try:
        c.wait()
        c.commit(*tag.split(":"))
    finally:
        c.remove(force=True)
    try:
        app.extra_config["builder-image"] = tag
        text = (app.root / "pyproject.toml").read_text()
        (app.root / "pyproject.toml").write_text(
            text.replace(f'builder-image = "{BUILDER_IMAGE}"', f'builder-image = "{tag}"')
        )
        with pytest.raises(PlatformMismatchError) as info:
            wheelhouse(app, engine)
        msg = str(info.value)
        assert tag in msg and BASE_IMAGE in msg and "distro_version" in msg
        assert not engine.volume_exists(app.volume), "a refused build created the volume"
    finally:
        engine.client.images.remove(tag, force=True)


def test_secrets_never_land_in_images_volumes_or_logs(
    make_app: Any,
    engine: Engine,
    index_env: Index,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    canary = f"wdcanary{uuid.uuid4().hex}"
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(host_ca.read_bytes() + f"\n# {canary}-ca\n".encode())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    url = index_env.url.replace("http://", f"http://wduser:{canary}-pw@")
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:{canary}-proxy@127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    app: App = make_app(["wd-pure-demo"])
    lines: list[str] = []
    wheelhouse(app, engine, lines)
    # requirements changed after the wheelhouse: `image` builds the missing wheel into
    # the wheelhouse first (secrets in use again), then the image
    app.requirements.append("wd-extra-demo")
    app.write()
    image(app, engine, lines, no_index=False)
    # not among the sets the wheelhouse listed: the builder starts before any read
    assert any("had not resolved; building them first" in line for line in lines)

    assert canary not in "\n".join(lines), "a secret was printed"
    saved = b"".join(engine.client.images.get(app.image).save())
    assert canary.encode() not in saved, "a secret is in the image (layers or config)"
    assert canary not in engine.history_text(app.image)
    out = output(
        engine.client,
        BASE_IMAGE,
        ["sh", "-c", f"grep -rl {canary} /v || true"],
        mounts=[docker.types.Mount("/v", app.volume, type="volume", read_only=True)],
    )
    assert out.decode().strip() == "", f"a secret is in the wheelhouse volume: {out!r}"
    mine = me().token  # other processes' builds may be running on this engine
    leftovers = [
        v.name
        for v in engine.client.volumes.list()
        if "secrets" in v.name and (v.attrs.get("Labels") or {}).get(PROCESS_LABEL) == mine
    ]
    assert not leftovers, f"secrets volumes left behind: {leftovers}"
