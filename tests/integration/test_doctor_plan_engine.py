"""`nox -s doctor` and `nox -s image -- --plan` on a real engine, a real volume and the
real local index: doctor passes on a healthy setup and fails naming a missing builder
image; the plan names what the build would fetch, and changes nothing."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import BASE_IMAGE, BUILDER_IMAGE, App, output, write_django
from pkgindex import Index
from test_build import nox

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image


def test_doctor_passes_on_a_healthy_setup_and_names_a_missing_builder(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app()
    r = nox(app, "-s", "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("engine", "base-image", "builder-image", "fit", "volume", "host caches"):
        assert f"] {name}: " in r.stdout, (name, r.stdout)
    assert "[fail]" not in r.stdout, r.stdout
    assert BUILDER_IMAGE in r.stdout and "Docker " in r.stdout and "API " in r.stdout

    r = nox(app, "-s", "doctor", "--", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"engine", "base-image", "fit"}

    missing = f"wdtest-missing-{uuid.uuid4().hex[:8]}:latest"
    text = (app.root / "pyproject.toml").read_text()
    (app.root / "pyproject.toml").write_text(
        text.replace(f'builder-image = "{BUILDER_IMAGE}"', f'builder-image = "{missing}"')
    )
    r = nox(app, "-s", "doctor")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    failed = [line for line in r.stdout.splitlines() if line.startswith("[fail]")]
    assert len(failed) == 1 and "builder-image" in failed[0] and missing in failed[0], failed
    assert "a build would fail (builder-image)" in r.stderr + r.stdout

    r = nox(app, "-s", "doctor", "--", "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout.split("\nnox >")[0])
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == ["builder-image"]


def volume_listing(engine: Engine, volume: str) -> list[str]:
    """Every path in the volume with its size and mtime (read by a container of the
    test's own, outside what is measured)."""
    out = output(
        engine.client,
        BASE_IMAGE,
        ["sh", "-c", "cd /v && find . -printf '%p %s %T@\\n' | sort"],
        mounts=[docker.types.Mount("/v", volume, type="volume", read_only=True)],
    )
    return str(out.decode()).splitlines()


def containers_of(engine: Engine, app: App) -> list[str]:
    """The engine's containers (running or not) that use this app's volume or images:
    other tests share the engine, so theirs come and go."""
    client = engine.client
    found = client.api.containers(all=True, filters={"volume": app.volume})
    found += client.api.containers(all=True, filters={"ancestor": app.image})
    return sorted(str(c["Id"]) + " " + str(c.get("Names")) for c in found)


def host_cache_files() -> dict[str, tuple[int, int]]:
    root = Path(os.environ["XDG_CACHE_HOME"])
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def state(engine: Engine, app: App) -> dict[str, Any]:
    tagged = engine.image(app.image)
    deps = engine.images_with_labels({"io.warpdrive.deps-project": app.name})
    return {
        "image": tagged.id if tagged is not None else None,
        "deps images": sorted(i.id for i in deps),
        "containers": containers_of(engine, app),
        "volume": volume_listing(engine, app.volume),
        "host caches": host_cache_files(),
    }


def test_plan_names_the_added_package_and_changes_nothing(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app()
    r = nox(app, "-s", "image")
    assert r.returncode == 0, r.stdout + r.stderr

    # unchanged: the plan says so
    r = nox(app, "-s", "image", "--", "--plan")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "image: up to date, nothing rebuilt" in r.stdout, r.stdout

    # a code change: the app layer changes, the deps layer is reused
    (app.root / "wsgi.py").write_text((app.root / "wsgi.py").read_text() + "\n# changed\n")
    r = nox(app, "-s", "image", "--", "--plan", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout.split("\nnox >")[0])
    assert plan["deps"]["action"] == "reused" and not plan["up_to_date"]
    assert any(layer["action"] == "new" for layer in plan["layers"]), plan["layers"]

    app.requirements.append("wd-extra-demo")
    app.write()
    before = state(engine, app)
    downloaded = set(index_env.downloaded())
    r = nox(app, "-s", "image", "--", "--plan")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "to fetch: wd-extra-demo" in r.stdout, r.stdout
    r = nox(app, "-s", "image", "--", "--plan", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    plan = json.loads(r.stdout.split("\nnox >")[0])
    assert plan["wheels"]["fetch"] == ["wd-extra-demo"], plan["wheels"]
    assert plan["wheels"]["complete"] is False
    assert state(engine, app) == before, "the plan changed something"
    assert set(index_env.downloaded()) == downloaded, "the plan fetched from the index"

    # and the build does what the plan said: it fetches that package, and only that
    cfg = load_config(app.root)
    result = build_image(cfg, engine, lambda line: None)
    assert result.wheelhouse is not None
    assert [n.split("-")[0] for n in result.wheelhouse.new] == ["wd_extra_demo"]


def plan_of(app: App) -> dict[str, Any]:
    r = nox(app, "-s", "image", "--", "--plan", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data: dict[str, Any] = json.loads(r.stdout.split("\nnox >")[0])
    return data


def test_plan_says_whether_collectstatic_runs_and_the_build_agrees(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    cfg = load_config(app.root)
    build_image(cfg, engine, lambda line: None)

    # a view changed: the collected files are reused, as a layer named again
    write_django(app.root, message="shop-v2")
    plan = plan_of(app)
    assert plan["static"].startswith("reused"), plan["static"]
    assert {"role": "static", "action": "reused"}.items() <= plan["layers"][0].items()
    lines: list[str] = []
    build_image(cfg, engine, lines.append)
    assert "reusing the collected static files" in "\n".join(lines)

    # a static file changed: only it is collected again
    write_django(app.root, message="shop-v2", css="body { color: blue }\n")
    plan = plan_of(app)
    assert plan["static"].startswith("re-collected"), plan["static"]
    assert "shop/static/shop/site.css" in plan["static"]
    lines.clear()
    build_image(cfg, engine, lines.append)
    assert "re-collected only those" in "\n".join(lines)

    # a static file added: collectstatic runs again
    (app.root / "shop" / "static" / "shop" / "new.css").write_text("p { margin: 0 }\n")
    plan = plan_of(app)
    assert plan["static"].startswith("collectstatic runs"), plan["static"]
    lines.clear()
    build_image(cfg, engine, lines.append)
    assert "manage.py collectstatic" in "\n".join(lines)


@pytest.mark.parametrize("flag", ["--push", "--push-only"])
def test_plan_refuses_what_would_act(make_app: Any, flag: str) -> None:
    app: App = make_app()
    r = nox(app, "-s", "image", "--", "--plan", flag)
    assert r.returncode == 1
    assert f"drop {flag}" in r.stderr + r.stdout
