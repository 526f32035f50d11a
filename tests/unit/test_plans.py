"""Wheelhouse, deps-layer and app-layer plans: pure data, checked without Docker."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from unit_support import BASE, PKEY, tar_contents, write, write_django_site, write_wsgi_site

from nox_warpdrive import layout as layout_module
from nox_warpdrive import runtime
from nox_warpdrive.build import app_layer as app_layer_module
from nox_warpdrive.build import deps as deps_module
from nox_warpdrive.config import Config, load_config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.errors import ConfigError
from nox_warpdrive.inputs.requirements import read_requirements
from nox_warpdrive.plan import HELPERS_DIR, VOLUME_DIR, CommitSpec, Step, VolumeMount
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.wheelhouse.build import WheelhousePlan, requirements_for, resolved_set
from nox_warpdrive.wheelhouse.wheels import Wheel

#: a requirement set's wheels as the manifest lists them, and as the host reads them
ENTRIES = [
    {"file": "django-5.0-py3-none-any.whl", "name": "django", "version": "5.0", "sha256": "a" * 64},
    {
        "file": "gunicorn-22.0-py3-none-any.whl",
        "name": "gunicorn",
        "version": "22.0",
        "sha256": "b" * 64,
    },
]
RESOLVED = [w for w in map(Wheel.from_manifest, ENTRIES) if w is not None]
SECRET = "s3cr3tT0ken"
INDEX_URL = f"https://deploy:{SECRET}@pypi.example.com/simple"


# ----------------------------------------------------------------------------- helpers


def step_files(step: Step, dest: str) -> dict[str, bytes]:
    archives = [data for d, data in step.files if d == dest]
    assert len(archives) == 1, [d for d, _ in step.files]
    return tar_contents(archives[0])


def wsgi_project(root: Path, requirements: str = "flask\n") -> Config:
    write_wsgi_site(root, requirements)
    write(root, "app/views.py", "X = 1\n")
    return load_config(root)


def django_project(root: Path, collectstatic: bool = True) -> Config:
    write_django_site(
        root,
        '[project]\nname = "site1"\n[tool.warpdrive]\n'
        f"collectstatic = {str(collectstatic).lower()}\n",
    )
    return load_config(root)


def wheelhouse_plan(cfg: Config, no_index: bool = False) -> WheelhousePlan:
    return WheelhousePlan(
        volume=cfg.volume,
        builder_image="sha256:builder",
        key=PKEY,
        requirements=requirements_for(cfg),
        no_index=no_index,
        network=cfg.network,
        python=cfg.python,
    )


# ----------------------------------------------------------------------------- wheelhouse


def test_wheelhouse_step(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root, "reqs/base.txt", "django\n")
    cfg = wsgi_project(root, "-r reqs/base.txt\nflask\n")
    plan = wheelhouse_plan(cfg)
    step = plan.step()
    assert step.image == "sha256:builder"
    assert step.command == ("python3", "-B", f"{HELPERS_DIR}/build_wheels.py")
    assert step.mounts == (VolumeMount("warpdrive-site", VOLUME_DIR, read_only=False),)
    assert VOLUME_DIR == "/warpdrive"
    assert step.uses_secrets is True
    assert step.commit is None
    assert step.env == ()

    files = step_files(step, "/tmp")
    assert set(files) == {
        "warpdrive-build/plan.json",
        "warpdrive-build/req/requirements.txt",
        "warpdrive-build/req/reqs/base.txt",
        *(f"warpdrive-build/{name}" for name in runtime.BUILDER),
    }
    assert "warpdrive-build/wheel_cache.py" in files and "warpdrive-build/protocol.py" in files
    assert files["warpdrive-build/req/reqs/base.txt"] == b"django\n"
    assert b"def " in files["warpdrive-build/build_wheels.py"]
    assert HELPERS_DIR == "/tmp/warpdrive-build"


def test_an_upgrade_reaches_the_builder(tmp_path: Path) -> None:
    """`--upgrade` (cfg.upgrade): the builder resolves again and keeps no version."""
    from nox_warpdrive.wheelhouse.build import builder_plan

    cfg = dataclasses.replace(wsgi_project(tmp_path / "site"), upgrade=True)
    info = ImageInfo("sha256:builder", (), {}, 1, 1, "")
    plan = builder_plan(cfg, (info, PKEY), requirements_for(cfg), False)
    data = json.loads(step_files(plan.step(), "/tmp")["warpdrive-build/plan.json"])
    assert data["upgrade"] is True


def test_wheelhouse_plan_json(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    for no_index in (False, True):
        plan = wheelhouse_plan(cfg, no_index=no_index)
        data = json.loads(step_files(plan.step(), "/tmp")["warpdrive-build/plan.json"])
        assert data["requirements_hash"] == plan.requirements.digest
        assert data["requirements_hash"] == requirements_for(cfg).digest
        assert data["no_index"] is no_index
        assert data["upgrade"] is False  # the builder keeps the wheelhouse's versions
        assert data["key"] == PKEY.slug
        assert data["volume_dir"] == VOLUME_DIR
        assert data["req_dir"] == f"{HELPERS_DIR}/req"
        assert data["top"] == ["requirements.txt"]
        assert data["extra"] == ["gunicorn"]
        assert data["python"] == "python3"
        assert PlatformKey.from_dict(data["platform_key"]) == PKEY


def test_wheelhouse_step_is_deterministic(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    assert wheelhouse_plan(cfg).step().files == wheelhouse_plan(cfg).step().files


# ----------------------------------------------------------------------------- server extra


@pytest.mark.parametrize(
    ("requirements", "extra"),
    [
        ("flask\n", ("gunicorn",)),
        ("flask\ngunicorn==22\n", ()),
        ("Gunicorn==1\n", ()),
        ("gunicorn[gevent]>=21\n", ()),
        ("# gunicorn\nflask\n", ("gunicorn",)),
        ("gunicorn-extras\n", ("gunicorn",)),
    ],
)
def test_requirements_for_adds_gunicorn_only_when_missing(
    tmp_path: Path, requirements: str, extra: tuple[str, ...]
) -> None:
    cfg = wsgi_project(tmp_path / "site", requirements)
    reqs = requirements_for(cfg)
    assert reqs.extra == extra
    assert reqs.files == read_requirements(cfg).files


def test_requirements_for_sees_gunicorn_in_an_included_file(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root, "reqs/base.txt", "gunicorn\n")
    cfg = wsgi_project(root, "-r reqs/base.txt\nflask\n")
    assert requirements_for(cfg).extra == ()


def test_requirements_for_project_dependencies(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root, "pyproject.toml", '[project]\nname = "x"\ndependencies = ["GUNICORN"]\n')
    write(root, "wsgi.py", "application = None\n")
    assert requirements_for(load_config(root)).extra == ()


def test_requirements_for_without_any_requirements_installs_the_server(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root, "pyproject.toml", '[project]\nname = "x"\n')
    write(root, "wsgi.py", "application = None\n")
    reqs = requirements_for(load_config(root))
    assert reqs.extra == ("gunicorn",)
    assert reqs.top == ()


@pytest.mark.parametrize(
    ("files", "table", "extra"),
    [
        ({"asgi.py": "app = None\n"}, "", ("uvicorn",)),
        ({"wsgi.py": "application = None\n"}, 'server = "waitress"\n', ("waitress",)),
        ({"wsgi.py": "application = None\n"}, 'server = "uwsgi"\n', ("uwsgi",)),
        ({"wsgi.py": "application = None\n"}, 'server = "mod_wsgi"\n', ("mod_wsgi",)),
        # a command starts itself: no server to install
        ({"app.py": "if __name__ == '__main__':\n    print('hi')\n"}, "", ()),
        # an app.py that only defines its app is served like app-module
        ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"}, "", ("gunicorn",)),
        ({"app.py": "from fastapi import FastAPI\napp = FastAPI()\n"}, "", ("uvicorn",)),
        ({"wsgi.py": "application = None\n"}, 'start = "python serve.py"\n', ()),
        ({"web.py": "from fastapi import FastAPI\n"}, 'app-module = "web:app"\n', ("uvicorn",)),
    ],
)
def test_requirements_for_adds_the_server_detection_chose(
    tmp_path: Path, files: dict[str, str], table: str, extra: tuple[str, ...]
) -> None:
    root = tmp_path / "site"
    write(root, "pyproject.toml", f'[project]\nname = "x"\n[tool.warpdrive]\n{table}')
    write(root, "requirements.txt", "somelib\n")
    for name, text in files.items():
        write(root, name, text)
    assert requirements_for(load_config(root)).extra == extra


def test_requirements_for_django_adds_whitenoise_for_gunicorn(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "site1")
    assert requirements_for(cfg).extra == ("gunicorn", "whitenoise")
    write(cfg.project_dir, "requirements.txt", "Django>=5\nWhiteNoise[brotli]\n")
    assert requirements_for(load_config(cfg.project_dir)).extra == ("gunicorn",)


def test_requirements_for_django_asgi_gets_uvicorn_only(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "site1")
    write(
        cfg.project_dir,
        "site1/settings.py",
        'WSGI_APPLICATION = "site1.wsgi.application"\n'
        'ASGI_APPLICATION = "site1.asgi.application"\n',
    )
    assert requirements_for(cfg).extra == ("uvicorn",)


def test_requirements_for_without_an_entry_point_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root, "pyproject.toml", '[project]\nname = "x"\n')
    write(root, "requirements.txt", "flask\n")
    with pytest.raises(ConfigError) as info:
        requirements_for(load_config(root))
    assert "wsgi.py" in str(info.value)
    assert info.value.fix and "app-module" in info.value.fix


def test_gunicorn_only_in_a_constraints_file_still_gets_installed(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(root, "constraints.txt", "gunicorn==22.0\n")
    cfg = wsgi_project(root, "-c constraints.txt\nflask\n")
    assert requirements_for(cfg).extra == ("gunicorn",)


# ----------------------------------------------------------------------------- resolved_set


def manifest(files: list[str], digest: str = "d1") -> dict[str, object]:
    return {
        "sets": {digest: {"resolved": ENTRIES}},
        "wheels": {f: {"sha256": "x"} for f in files},
    }


def test_resolved_set_when_every_wheel_is_published() -> None:
    m = manifest([w.filename for w in RESOLVED] + ["other-1.0-py3-none-any.whl"])
    assert resolved_set(m, "d1") == RESOLVED


def test_resolved_set_none_when_a_wheel_is_missing() -> None:
    m = manifest([RESOLVED[0].filename])
    assert resolved_set(m, "d1") is None


def test_resolved_set_none_for_other_requirements() -> None:
    m = manifest([w.filename for w in RESOLVED])
    assert resolved_set(m, "d2") is None
    assert resolved_set({}, "d1") is None


@pytest.mark.parametrize(
    "entry", [None, "x", {"resolved": "x"}, {"resolved": ["a.whl"]}, {"other": []}]
)
def test_resolved_set_none_for_malformed_entries(entry: object) -> None:
    m = {"sets": {"d1": entry}, "wheels": {"a.whl": {}}}
    assert resolved_set(m, "d1") is None


def test_resolved_set_survives_a_malformed_sets_field() -> None:
    assert resolved_set({"sets": [], "wheels": {}}, "d1") is None


# ----------------------------------------------------------------------------- deps plan


def test_plan_deps_with_resolved_set(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    deps = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    step = deps.step
    assert step.image == BASE.id
    assert step.network == "none"
    assert step.uses_secrets is False
    assert step.mounts == (VolumeMount(cfg.volume, VOLUME_DIR, read_only=True),)
    assert step.command == ("python3", f"{HELPERS_DIR}/assemble.py", "deps")
    assert step.commit is not None
    labels = dict(step.commit.labels)
    assert labels["io.warpdrive.deps-key"] == deps.key
    assert labels["io.warpdrive.deps-base"] == BASE.id
    assert labels["io.warpdrive.deps-project"] == cfg.name
    assert json.loads(labels["io.warpdrive.deps-wheels"]) == deps_module.wheel_ids(RESOLVED)
    assert labels["io.warpdrive.deps-depth"] == "0"
    assert deps.parent is None
    assert deps.files == tuple(sorted(w.filename for w in RESOLVED))
    assert deps.ref == f"warpdrive-deps/site:{deps.key[:20]}"

    files = step_files(step, "/tmp")
    assert set(files) == {
        "warpdrive-build/plan.json",
        "warpdrive-build/assemble.py",
        "warpdrive-build/elfcheck.py",
        "warpdrive-build/layerdiff.py",
        "warpdrive-build/protocol.py",
    }
    plan = json.loads(files["warpdrive-build/plan.json"])
    assert plan["files"] == sorted(w.filename for w in RESOLVED)
    assert plan["wheels_dir"] == f"{VOLUME_DIR}/{PKEY.slug}/wheels"


def test_plan_deps_key_is_stable_and_tracks_its_inputs(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")

    def key(
        base: ImageInfo = BASE, resolved: list[Wheel] = RESOLVED, pkey: PlatformKey = PKEY
    ) -> str:
        return deps_module.plan_deps(cfg, base, pkey, resolved).key

    first = key()
    assert key() == first
    assert key(resolved=list(reversed(RESOLVED))) == first  # order does not matter

    changed_sha = [RESOLVED[0], dataclasses.replace(RESOLVED[1], sha256="c" * 64)]
    assert key(resolved=changed_sha) != first
    assert key(resolved=RESOLVED[:1]) != first
    assert key(base=dataclasses.replace(BASE, id="sha256:def")) != first
    assert key(pkey=dataclasses.replace(PKEY, libc_version="2.37")) != first


# ----------------------------------------------------------------------------- app plan


def commit_of(plan: app_layer_module.AppPlan) -> CommitSpec:
    commit = plan.step("sha256:deps").commit
    assert commit is not None
    assert commit == plan.commit
    return commit


SRC_PREFIX = layout_module.APP_SRC[1:] + "/"  # layer names are relative to /


def layer_src(plan: app_layer_module.AppPlan) -> dict[str, bytes]:
    """The source files of the app layer, by path relative to APP_SRC."""
    return {
        name.removeprefix(SRC_PREFIX): data
        for name, data in tar_contents(plan.layer).items()
        if name.startswith(SRC_PREFIX)
    }


def test_plan_app_django(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "site1")
    plan = app_layer_module.plan_app(cfg, BASE, PKEY, "depskey", source_label="site1")
    assert plan.app.kind == "django"
    assert plan.app.module == "site1.wsgi:application"
    assert plan.app.settings == "site1.settings"

    step = plan.step("sha256:deps")
    assert step.image == "sha256:deps"
    assert step.command == (
        f"{layout_module.VENV}/bin/python",
        f"{HELPERS_DIR}/assemble.py",
        "app",
    )
    assert [d for d, _ in step.files] == ["/", "/tmp"]
    assert step.user == "0:0"
    build = step_files(step, "/tmp")
    assert build == tar_contents(plan.helpers)
    build_plan = json.loads(build["warpdrive-build/plan.json"])
    assert build_plan["collectstatic"] is True
    assert build_plan["build_hook"] is False
    assert build_plan["settings"] == "site1.settings"
    assert build_plan["fallback_static_root"] == f"{layout_module.APP_SRC}/staticfiles"
    assert "env" not in build_plan
    assert plan.server == "gunicorn"
    assert plan.runs_something is True

    # one layer tar, names relative to /: the source under APP_SRC, the launcher in bin
    assert step_files(step, "/") == tar_contents(plan.layer)
    src = layer_src(plan)
    assert {"manage.py", "site1/settings.py", "site1/wsgi.py"} <= set(src)
    assert src["site1/settings.py"] == b'WSGI_APPLICATION = "site1.wsgi.application"\n'
    outside = {n for n in tar_contents(plan.layer) if not n.startswith(SRC_PREFIX)}
    assert outside == {
        "opt/app-root/bin/warpdrive-start",
        "opt/app-root/lib/warpdrive_static.py",
        "opt/app-root/lib/warpdrive_init.py",
        "opt/app-root/.warpdrive/start.json",
    }
    # nothing set in [tool.warpdrive]: the launcher detects, as the build did
    assert json.loads(tar_contents(plan.layer)["opt/app-root/.warpdrive/start.json"]) == {}
    # a layer given to step() replaces the plan's (e.g. with reused static files merged in)
    other = plan.step("sha256:deps", layer=b"other")
    assert other.files[0] == ("/", b"other")

    commit = commit_of(plan)
    assert commit.user == "1001"
    assert commit.workdir == layout_module.APP_SRC
    assert commit.exposed_ports == ("8080/tcp",)
    assert commit.cmd == ("warpdrive-start",)
    labels = dict(commit.labels)
    assert labels["io.warpdrive.app"] == "django site1.wsgi:application (gunicorn)"
    assert labels["io.warpdrive.build-key"] == plan.build_key
    assert labels["io.warpdrive.deps-key"] == "depskey"
    assert labels["io.warpdrive.kind"] == "app"
    assert plan.collectstatic is True
    assert plan.static_key and labels["io.warpdrive.static-key"] == plan.static_key


def test_plan_app_django_without_collectstatic(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "site1", collectstatic=False)
    plan = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    step = plan.step("sha256:deps")
    assert step.command is None
    assert step.files == (("/", plan.layer),)
    assert plan.collectstatic is False
    assert plan.static_key == ""
    assert plan.commit.labels["io.warpdrive.static-key"] == ""
    assert plan.commit.labels["io.warpdrive.kind"] == "app"


def test_plan_app_wsgi(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    plan = app_layer_module.plan_app(cfg, BASE, PKEY, "depskey", source_label="site")
    assert (plan.app.kind, plan.app.module) == ("wsgi", "wsgi:application")
    step = plan.step("sha256:deps")
    assert step.command is None  # collectstatic is for Django only
    assert step.files == (("/", plan.layer),)
    assert plan.files >= 3  # pyproject, requirements, wsgi.py, app/...
    assert {"wsgi.py", "app/views.py", "requirements.txt"} <= set(layer_src(plan))
    assert plan.static_key == ""
    assert plan.commit.labels["io.warpdrive.static-key"] == ""
    commit = commit_of(plan)
    assert commit.user == "1001"
    assert commit.exposed_ports == ("8080/tcp",)


def test_plan_app_with_a_build_hook_runs_a_step(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    hook = write(cfg.project_dir, ".warpdrive/action_hooks/build", "#!/bin/sh\necho hi\n")
    plan = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    assert plan.build_hook is False  # not executable: not a hook
    assert plan.step("sha256:deps").command is None
    hook.chmod(0o755)
    plan = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    assert (plan.build_hook, plan.collectstatic, plan.runs_something) == (True, False, True)
    step = plan.step("sha256:deps")
    assert step.command == (
        f"{layout_module.VENV}/bin/python",
        f"{HELPERS_DIR}/assemble.py",
        "app",
    )
    build_plan = json.loads(step_files(step, "/tmp")["warpdrive-build/plan.json"])
    assert (build_plan["build_hook"], build_plan["collectstatic"]) == (True, False)
    assert build_plan["settings"] == ""


def test_plan_app_ships_the_start_settings(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write(
        root,
        "pyproject.toml",
        '[project]\nname = "site"\n[tool.warpdrive]\napp-module = "web:app"\nserver = "waitress"\n',
    )
    write(root, "web.py", "app = None\n")
    first = app_layer_module.plan_app(load_config(root), BASE, PKEY, "k", "s")
    assert (first.app.kind, first.app.module, first.server) == ("wsgi", "web:app", "waitress")
    start_json = tar_contents(first.layer)["opt/app-root/.warpdrive/start.json"]
    assert json.loads(start_json) == {"app_module": "web:app", "server": "waitress"}
    assert first.commit.labels["io.warpdrive.app"] == "wsgi web:app (waitress)"
    # the start settings are part of the build key, even with the same source
    cfg = dataclasses.replace(load_config(root), server="gunicorn")
    second = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    assert second.server == "gunicorn"
    assert second.build_key != first.build_key


def test_plan_app_env_and_labels(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    commit = commit_of(app_layer_module.plan_app(cfg, BASE, PKEY, "depskey", "site"))
    env = dict(commit.env)
    assert env["PATH"].startswith(f"{layout_module.VENV}/bin:")
    assert env["PATH"].endswith(":/usr/bin:/bin")
    assert env["VIRTUAL_ENV"] == layout_module.VENV
    assert env["PORT"] == "8080"
    assert "$" not in env["PATH"]  # the engine does not expand variables

    labels = dict(commit.labels)
    assert labels["io.warpdrive.platform-key"] == PKEY.slug
    assert labels["io.warpdrive.base-image-id"] == BASE.id
    assert labels["io.warpdrive.base-image"] == cfg.base_image
    assert "org.opencontainers.image.created" not in labels  # no clock in a plan
    given = app_layer_module.plan_app(
        cfg,
        BASE,
        PKEY,
        "depskey",
        "site",
        source_labels={"org.opencontainers.image.revision": "abc"},
        created="2026-01-02T03:04:05Z",
    )
    labels = dict(commit_of(given).labels)
    assert labels["org.opencontainers.image.created"] == "2026-01-02T03:04:05Z"
    assert labels["org.opencontainers.image.revision"] == "abc"


def test_created_timestamp_is_utc() -> None:
    created = app_layer_module.created_timestamp()
    assert len(created) == 20 and created.endswith("Z") and created[10] == "T"


def test_plan_app_default_path_when_base_has_none(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    base = dataclasses.replace(BASE, env=("LANG=C.UTF-8",))
    env = dict(commit_of(app_layer_module.plan_app(cfg, base, PKEY, "k", "s")).env)
    assert env["PATH"].endswith(":/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


def test_created_label_honours_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert app_layer_module.created_timestamp() == "1970-01-02T00:00:00Z"


def test_no_secret_reaches_any_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", INDEX_URL)
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", INDEX_URL + "2")
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:{SECRET}@proxy:3128")
    cfg = django_project(tmp_path / "site1")
    app = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    steps = [
        wheelhouse_plan(cfg).step(),
        deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED).step,
        app.step("sha256:deps"),
    ]
    # the app layer and helpers also go into an image without any step (append_layer)
    app_texts = [repr(app)]
    for data in (app.layer, app.helpers):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            app_texts.extend(repr(m.get_info()) + repr(m.pax_headers) for m in tar)
        app_texts.extend(v.decode("utf-8", "replace") for v in tar_contents(data).values())
    for text in app_texts:
        assert SECRET not in text, ("app", text[:200])
        assert "pypi.example.com" not in text, ("app", text[:200])
    for step in steps:
        texts = [repr(step), repr(step.commit), repr(step.env)]
        for _, data in step.files:
            texts.extend(v.decode("utf-8", "replace") for v in tar_contents(data).values())
        if step.commit is not None:
            texts.extend(f"{k}={v}" for k, v in step.commit.labels.items())
            texts.extend(f"{k}={v}" for k, v in step.commit.env)
            texts.append(step.commit.message)
        for text in texts:
            assert SECRET not in text, (step.name, text[:200])
            assert "pypi.example.com" not in text, (step.name, text[:200])
    assert os.environ["PIP_INDEX_URL"] == INDEX_URL  # the secret was really there


def test_git_labels_strip_credentials(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    cfg = wsgi_project(tmp_path / "site")
    root = cfg.project_dir
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["commit", "-qm", "x"],
        ["remote", "add", "origin", f"https://deploy:{SECRET}@git.example.com/s.git"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env, capture_output=True)
    labels = app_layer_module.git_labels(root)
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/s.git"
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert all(SECRET not in v for v in labels.values())
    # the provenance's source is read by the same helper: it says what the labels say
    from nox_warpdrive.supply import provenance

    source = provenance.git_source(root)
    assert source.repository == labels["org.opencontainers.image.source"]
    assert source.commit == labels["org.opencontainers.image.revision"]


def test_build_key_tracks_sources_but_not_excluded_files(tmp_path: Path) -> None:
    cfg = django_project(tmp_path / "site1")

    def key(deps_key: str = "k") -> str:
        return app_layer_module.plan_app(cfg, BASE, PKEY, deps_key, "s").build_key

    first = key()
    assert key() == first

    write(cfg.project_dir, ".git/x", "objects")
    write(cfg.project_dir, "__pycache__/y.pyc", "bytecode")
    write(cfg.project_dir, "site1/__pycache__/settings.cpython-312.pyc", "bytecode")
    assert key() == first

    write(cfg.project_dir, "site1/views.py", "def index(request): ...\n")
    second = key()
    assert second != first

    write(cfg.project_dir, "site1/views.py", "def index(request): return 1\n")
    assert key() not in (first, second)
    assert key("other-deps") != key()


def test_build_key_tracks_base_env_and_image_ref(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    first = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s").build_key
    base = dataclasses.replace(BASE, env=("PATH=/opt/bin:/usr/bin",))
    assert app_layer_module.plan_app(cfg, base, PKEY, "k", "s").build_key != first
    retagged = dataclasses.replace(cfg, image="site:v2")
    assert app_layer_module.plan_app(retagged, BASE, PKEY, "k", "s").build_key != first


def test_build_key_tracks_dockerignore(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    write(cfg.project_dir, "notes.txt", "draft\n")
    with_notes = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    write(cfg.project_dir, ".dockerignore", "notes.txt\n")
    without = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    assert without.build_key != with_notes.build_key
    assert "notes.txt" in layer_src(with_notes)
    assert "notes.txt" not in layer_src(without)
    assert step_files(without.step("x"), "/") == tar_contents(without.layer)


def test_project_without_entry_point_is_a_config_error(tmp_path: Path) -> None:
    root = tmp_path / "nothing"
    write(root, "pyproject.toml", '[project]\nname = "nothing"\n')
    write(root, "requirements.txt", "flask\n")
    write(root, "main.py", "app = object()\n")  # not a name the launcher looks for
    write(root, "app.sh", "#!/bin/sh\n")  # not executable: ignored
    write(root, "wsgi.py", "handler = object()\n")  # neither `application` nor `app`
    cfg = load_config(root)
    with pytest.raises(ConfigError) as info:
        app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    assert "wsgi.py" in str(info.value)
    assert "manage.py" in str(info.value)
    assert info.value.fix


def test_detection_ignores_host_app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The image must start what is in the source, not what the host's env says."""
    monkeypatch.setenv("APP_MODULE", "elsewhere:app")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "other.settings")
    cfg = django_project(tmp_path / "site1")
    plan = app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s")
    assert plan.app.module == "site1.wsgi:application"
    assert plan.app.settings == "site1.settings"


def test_build_key_tracks_the_git_revision(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    cfg = wsgi_project(tmp_path / "site")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-C", str(cfg.project_dir), *args], check=True, env=env, capture_output=True
        )

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "one")

    def plan() -> app_layer_module.AppPlan:
        labels = app_layer_module.git_labels(cfg.project_dir)
        return app_layer_module.plan_app(cfg, BASE, PKEY, "k", "s", source_labels=labels)

    first = plan()
    git("commit", "-q", "--allow-empty", "-m", "two")
    second = plan()
    # same files, new revision: the revision label must not go stale
    assert second.build_key != first.build_key
    assert (
        second.commit.labels["org.opencontainers.image.revision"]
        != first.commit.labels["org.opencontainers.image.revision"]
    )


# ----------------------------------------------------------------------------- incremental deps


def test_plan_deps_on_a_parent_installs_only_the_new_wheels(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    full = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    parent_info = dataclasses.replace(BASE, id="sha256:parent")
    have = deps_module.wheel_ids(RESOLVED[:1])
    deps = deps_module.plan_deps(
        cfg, BASE, PKEY, RESOLVED, parent=deps_module.DepsParent(parent_info, tuple(have), 1)
    )
    assert deps.key == full.key  # same content, whichever way it is built
    assert deps.parent == "sha256:parent"
    assert deps.step.image == "sha256:parent"
    assert deps.files == (RESOLVED[1].filename,)
    plan = json.loads(step_files(deps.step, "/tmp")["warpdrive-build/plan.json"])
    assert plan["files"] == [RESOLVED[1].filename]
    assert plan["incremental"] is True
    assert deps.step.commit is not None
    labels = deps.step.commit.labels
    assert labels["io.warpdrive.deps-depth"] == "2"
    # the label lists every wheel in the image, not only the new ones
    assert json.loads(labels["io.warpdrive.deps-wheels"]) == deps_module.wheel_ids(RESOLVED)
    assert deps.step.network == "none" and deps.step.uses_secrets is False


def find_parent(
    engine: FakeEngine, cfg: Config, wanted: list[str]
) -> deps_module.DepsParent | None:
    return deps_module.find_parent(engine, cfg, BASE, deps_module.Installer("pip"), wanted)


def deps_image(
    image_id: str,
    wheels: list[str] | str,
    depth: int = 0,
    installer: str = "pip",
    project: str = "site",
    kind: str = "deps",
    deps_format: str = deps_module.DEPS_FORMAT,
) -> ImageInfo:
    return dataclasses.replace(
        BASE,
        id=image_id,
        labels={
            "io.warpdrive.kind": kind,
            "io.warpdrive.deps-format": deps_format,
            "io.warpdrive.deps-project": project,
            "io.warpdrive.deps-base": BASE.id,
            "io.warpdrive.deps-installer": installer,
            "io.warpdrive.deps-wheels": wheels if isinstance(wheels, str) else json.dumps(wheels),
            "io.warpdrive.deps-depth": str(depth),
        },
    )


def test_find_parent_picks_the_largest_strict_subset(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    wanted = ["a@1", "b@2", "c@3"]
    engine = FakeEngine(
        candidates=[
            # an older layout of the deps layer, listed first: never built on
            deps_image("sha256:old-format", ["a@1", "b@2"], deps_format="1"),
            deps_image("sha256:small", ["a@1"]),
            deps_image("sha256:best", ["a@1", "b@2"]),
            deps_image("sha256:same", wanted),  # not a strict subset: nothing to add
            deps_image("sha256:stale", ["a@1", "b@OLD"]),  # a wheel that changed
            deps_image("sha256:deep", ["a@1", "b@2"], depth=deps_module.MAX_DEPS_DEPTH),
            deps_image("sha256:uv", ["a@1", "b@2"], installer="uv0.4"),
            deps_image("sha256:other", ["a@1", "b@2"], project="other"),
            deps_image("sha256:bad", "not json"),
        ]
    )
    found = find_parent(engine, cfg, wanted)
    assert found is not None
    assert (found.image.id, found.wheels, found.depth) == ("sha256:best", ("a@1", "b@2"), 0)
    assert engine.filters == [
        {
            "io.warpdrive.kind": "deps",
            "io.warpdrive.deps-format": deps_module.DEPS_FORMAT,
            "io.warpdrive.deps-project": "site",
            "io.warpdrive.deps-base": BASE.id,
        }
    ]


def test_find_parent_prefers_the_started_parent_among_equals(tmp_path: Path) -> None:
    """Two deps images with the same wheels (one made by an older release, whose key
    differed): the one the deps step's container was started on is taken, whichever the
    engine lists first, even when its project label names another app (the same layer,
    found by this app's tag); not when it sits on another base image; a subset larger by
    more than STARTED_SLACK wheels wins."""
    cfg = wsgi_project(tmp_path / "site")
    wanted = ["a@1", "b@2", "c@3"]
    older = deps_image("sha256:older", ["a@1", "b@2"])
    started = deps_image("sha256:started", ["a@1", "b@2"])
    installer = deps_module.Installer("pip")

    def parent_id(engine: FakeEngine, prefer: ImageInfo, want: list[str]) -> str | None:
        found = deps_module.find_parent(engine, cfg, BASE, installer, want, prefer)
        return found.image.id if found is not None else None

    for listed in ([older, started], [started, older]):
        assert parent_id(FakeEngine(candidates=listed), started, wanted) == "sha256:started"
    shared = deps_image("sha256:shared", ["a@1", "b@2"], project="other")
    assert parent_id(FakeEngine(candidates=[older]), shared, wanted) == "sha256:shared"
    elsewhere = dataclasses.replace(
        shared, labels={**shared.labels, "io.warpdrive.deps-base": "sha256:old-base"}
    )
    assert parent_id(FakeEngine(candidates=[older]), elsewhere, wanted) == "sha256:older"
    # a few more wheels elsewhere: the started container still wins (a new one costs more)
    slack = [f"x@{i}" for i in range(deps_module.STARTED_SLACK)]
    larger = deps_image("sha256:larger", ["a@1", "b@2", *slack])
    more = [*wanted, *slack, "y@0"]
    assert parent_id(FakeEngine(candidates=[older, larger]), started, more) == "sha256:started"
    # many more: the larger subset wins
    largest = deps_image("sha256:largest", ["a@1", "b@2", *slack, "y@0"])
    most = [*more, "z@0"]
    assert parent_id(FakeEngine(candidates=[largest, started]), started, most) == "sha256:largest"
    # no image is a strict subset of what is wanted: none
    assert parent_id(FakeEngine(candidates=[older]), started, ["a@1", "c@3"]) is None


def test_find_parent_never_picks_an_app_image(tmp_path: Path) -> None:
    """An app image inherits every deps label of the deps image it was committed on; only
    ``kind`` tells them apart. Building the next deps layer on an app image would ship the
    old app source (and collected static files) inside the deps layer."""
    cfg = wsgi_project(tmp_path / "site")
    wanted = ["a@1", "b@2", "c@3"]
    app_image = deps_image("sha256:app", ["a@1", "b@2"], kind="app")
    unlabelled = deps_image("sha256:old", ["a@1", "b@2"])
    unlabelled = dataclasses.replace(
        unlabelled, labels={k: v for k, v in unlabelled.labels.items() if k != "io.warpdrive.kind"}
    )
    engine = FakeEngine(candidates=[app_image, unlabelled, deps_image("sha256:deps", ["a@1"])])
    found = find_parent(engine, cfg, wanted)
    assert found is not None
    assert found.image.id == "sha256:deps"
    only_app = FakeEngine(candidates=[app_image, unlabelled])
    assert find_parent(only_app, cfg, wanted) is None


def test_plan_deps_labels_its_image_as_deps(tmp_path: Path) -> None:
    """The labels find_parent filters on are the ones plan_deps writes."""
    cfg = wsgi_project(tmp_path / "site")
    deps = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED[:1])
    assert deps.step.commit is not None
    labels = dict(deps.step.commit.labels)
    assert labels["io.warpdrive.kind"] == "deps"
    built = dataclasses.replace(BASE, id="sha256:built", labels=labels)
    engine = FakeEngine(candidates=[built])
    found = find_parent(engine, cfg, deps_module.wheel_ids(RESOLVED))
    assert found is not None and found.image.id == "sha256:built"
    # the app image committed on it carries the same deps labels but kind=app
    app = app_layer_module.plan_app(cfg, BASE, PKEY, deps.key, "s")
    app_labels = {**labels, **app.commit.labels}
    assert app_labels["io.warpdrive.kind"] == "app"
    engine = FakeEngine(candidates=[dataclasses.replace(BASE, id="sha256:app", labels=app_labels)])
    wanted = deps_module.wheel_ids(RESOLVED)
    assert find_parent(engine, cfg, wanted) is None


def test_find_parent_none_without_candidates(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    engine = FakeEngine(candidates=[deps_image("sha256:same", ["a@1"])])
    assert find_parent(engine, cfg, ["a@1"]) is None


# ----------------------------------------------------------------------------- installer


def test_choose_installer(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    with_uv = {"tools": {"uv": {"path": "tools/uv", "version": "0.4.1"}}}
    assert deps_module.choose_installer(cfg, {}, PKEY) == deps_module.Installer("pip")
    uv = deps_module.choose_installer(cfg, with_uv, PKEY)
    assert uv == deps_module.Installer("uv", f"{VOLUME_DIR}/{PKEY.slug}/tools/uv", "0.4.1")
    pip_cfg = dataclasses.replace(cfg, installer="pip")
    assert deps_module.choose_installer(pip_cfg, with_uv, PKEY).name == "pip"
    uv_cfg = dataclasses.replace(cfg, installer="uv")
    assert deps_module.choose_installer(uv_cfg, with_uv, PKEY).name == "uv"
    with pytest.raises(ConfigError, match="no uv"):
        deps_module.choose_installer(uv_cfg, {"tools": []}, PKEY)


def test_installer_is_part_of_the_deps_key(tmp_path: Path) -> None:
    cfg = wsgi_project(tmp_path / "site")
    pip = deps_module.plan_deps(cfg, BASE, PKEY, RESOLVED)
    uv = deps_module.plan_deps(
        cfg, BASE, PKEY, RESOLVED, deps_module.Installer("uv", "/x/uv", "0.4")
    )
    assert pip.key != uv.key
    plan = json.loads(step_files(uv.step, "/tmp")["warpdrive-build/plan.json"])
    assert (plan["installer"], plan["uv"]) == ("uv", "/x/uv")


# ----------------------------------------------------------------------------- normalize_tar


def raw_tar(members: list[tuple[str, bytes | str | None, dict[str, object]]]) -> bytes:
    """A PAX tar of (name, regular file data / symlink target "->x" / hard link "=>x" /
    None for a directory, TarInfo attributes), in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, attrs in members:
            info = tarfile.TarInfo(name)
            payload = None
            if content is None:
                info.type = tarfile.DIRTYPE
            elif isinstance(content, str):
                info.type = tarfile.SYMTYPE if content.startswith("->") else tarfile.LNKTYPE
                info.linkname = content[2:]
            else:
                info.size, payload = len(content), io.BytesIO(content)
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, payload)
    return buf.getvalue()


def static_tree(mtime: float, user: str) -> list[tuple[str, bytes | str | None, dict[str, object]]]:
    """What get_archive might return for a static dir, at another time, by another name."""
    times = {"mtime": mtime, "uname": user, "gname": user}
    pax = {"atime": str(mtime + 1), "ctime": str(mtime + 2), "SCHILY.xattr.user.k": "v"}
    return [
        ("static", None, {**times, "mode": 0o775, "uid": 1001}),
        ("static/app.css", b"body{}\n", {**times, "mode": 0o664, "uid": 1001}),
        ("static/js", None, {**times, "mode": 0o755, "uid": 1001}),
        ("static/js/app.js", b"x()\n", {**times, "mode": 0o644, "uid": 1001, "pax_headers": pax}),
        ("static/latest.css", "->app.css", {**times, "mode": 0o777, "uid": 1001}),
        ("static-extra", None, {**times, "mode": 0o700, "uid": 0, "gid": 5}),
    ]


def tar_infos(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_normalize_tar_same_files_give_identical_bytes() -> None:
    from nox_warpdrive.tars import normalize_tar

    first = raw_tar(static_tree(1_700_000_000.123, "default"))
    second = raw_tar(static_tree(1_600_000_000.5, "root")[::-1])
    assert first != second
    assert normalize_tar(first, 7) == normalize_tar(second, 7)
    assert normalize_tar(first, 7) != normalize_tar(first, 8)


def test_normalize_tar_keeps_what_the_files_are() -> None:
    from nox_warpdrive.tars import normalize_tar

    raw = raw_tar(static_tree(1_700_000_000.123, "default")[::-1])
    js = next(i for i in tar_infos(raw) if i.name == "static/js/app.js")
    assert {"mtime", "atime", "ctime"} <= set(js.pax_headers)  # what is to be dropped
    data = normalize_tar(raw, 1)
    infos = tar_infos(data)
    assert [i.name for i in infos] == [
        "static",
        "static/app.css",
        "static/js",
        "static/js/app.js",
        "static/latest.css",
        "static-extra",
    ]
    by_name = {i.name: i for i in infos}
    assert {(i.mtime, i.uname, i.gname) for i in infos} == {(1, "", "")}
    assert (by_name["static/js/app.js"].mode, by_name["static/js/app.js"].uid) == (0o644, 1001)
    assert (by_name["static-extra"].mode, by_name["static-extra"].gid) == (0o700, 5)
    assert by_name["static/latest.css"].issym()
    assert by_name["static/latest.css"].linkname == "app.css"
    assert tar_contents(data) == {"static/app.css": b"body{}\n", "static/js/app.js": b"x()\n"}
    for info in infos:
        assert not {"mtime", "atime", "ctime"} & set(info.pax_headers), info.name
    assert by_name["static/js/app.js"].pax_headers == {"SCHILY.xattr.user.k": "v"}


def test_normalize_tar_moves_hard_link_data_to_the_first_name() -> None:
    from nox_warpdrive.tars import normalize_tar

    data = normalize_tar(
        raw_tar(
            [
                ("b", None, {}),
                ("b/file", b"shared", {"mode": 0o640}),
                ("a", None, {}),
                ("a/link", "=>b/file", {}),
                ("c", "=>a/link", {}),  # a link to a link
                ("z", "=>outside/file", {}),  # its data is not in this archive
            ]
        ),
        1,
    )
    by_name = {i.name: i for i in tar_infos(data)}
    assert list(by_name) == ["a", "a/link", "b", "b/file", "c", "z"]
    assert by_name["a/link"].isfile()
    assert by_name["a/link"].mode == 0o640
    assert tar_contents(data) == {"a/link": b"shared"}
    assert (by_name["b/file"].islnk(), by_name["b/file"].linkname) == (True, "a/link")
    assert (by_name["c"].islnk(), by_name["c"].linkname) == (True, "a/link")
    assert (by_name["z"].islnk(), by_name["z"].linkname) == (True, "outside/file")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        handle = tar.extractfile("b/file")  # tarfile resolves a hard link to its data
        assert handle is not None
        assert handle.read() == b"shared"


def test_normalize_tar_keeps_the_last_member_of_a_name() -> None:
    from nox_warpdrive.tars import normalize_tar

    data = normalize_tar(raw_tar([("f", b"old", {}), ("g", b"g", {}), ("f", b"new", {})]), 1)
    assert [i.name for i in tar_infos(data)] == ["f", "g"]
    assert tar_contents(data) == {"f": b"new", "g": b"g"}


def test_normalize_tar_output_is_stable() -> None:
    from nox_warpdrive.tars import normalize_tar

    once = normalize_tar(raw_tar(static_tree(1_700_000_000.123, "default")), 1)
    assert normalize_tar(once, 1) == once
