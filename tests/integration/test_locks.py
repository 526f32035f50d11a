"""Lock files on the real engine with the local index: an app per format (uv.lock made by
the real uv, pylock.toml exported by it, poetry.lock, Pipfile.lock, requirements with
--hash) built into an image that answers HTTP, an app with nothing but the standard
library, and a lock whose hash for one package was changed, which fails naming it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_IMAGE, BUILDER_IMAGE, App
from pkgindex import Index
from test_build import image, wheelhouse
from test_runtime import STDLIB_SERVER, serve_and_check

from nox_warpdrive.engine import Engine
from nox_warpdrive.errors import BuildError
from nox_warpdrive.inputs.locks.pipenv import pipfile_hash
from nox_warpdrive.inputs.locks.poetry import poetry_content_hash

WSGI = """\
import importlib.util
import os

import wd_cext_demo
import wd_pure_demo

{extra_import}


def application(environ, start_response):
    dev = importlib.util.find_spec("wd_extra_demo") is not None
    body = "%s %s add=%d dev=%s uid=%d" % (
        {message}, wd_pure_demo.hello(), wd_cext_demo.add(2, 40), dev, os.getuid()
    )
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""


def files_of(index: Index) -> dict[str, tuple[str, str]]:
    """file name -> (URL, sha256) of every file the local index serves."""
    out = {}
    for path in sorted((index.root / "files").iterdir()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out[path.name] = (f"{index.base_url}files/{path.name}", digest)
    return out


def warpdrive_table(app: App, extra: str = "") -> str:
    return (
        f'[tool.warpdrive]\nimage = "{app.image}"\nbase-image = "{BASE_IMAGE}"\n'
        f'builder-image = "{BUILDER_IMAGE}"\nvolume = "{app.volume}"\nnetwork = "host"\n{extra}'
    )


def fresh(make_app: Any) -> App:
    """An app directory with only its noxfile: each test writes its own inputs."""
    app: App = make_app(["wd-pure-demo"])
    for name in ("requirements.txt", "wsgi.py", "pyproject.toml"):
        (app.root / name).unlink()
    return app


def uv(uv_binary: Path, index: Index, cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(
        UV_INDEX_URL=index.url,
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        UV_CACHE_DIR=str(cwd.parent / f"{cwd.name}-uv-cache"),
        UV_NO_PROGRESS="1",
    )
    proc = subprocess.run(
        [str(uv_binary), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------------------------------


def write_uv_project(app: App, packaged: bool) -> None:
    """A project with a dev group and a Windows-only dependency (neither is installed);
    ``packaged``: the app's code is a package in src/ that only an install makes
    importable."""
    build = (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '\n[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
    )
    (app.root / "pyproject.toml").write_text(
        f'[project]\nname = "{app.name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["wd-pure-demo", "wd-cext-demo", "gunicorn",'
        " \"wd-extra-demo; sys_platform == 'win32'\"]\n\n"
        '[dependency-groups]\ndev = ["wd-extra-demo"]\n\n'
        + (build if packaged else "")
        + warpdrive_table(app)
    )
    if packaged:
        pkg = app.root / "src" / "wdlockapp"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text('MESSAGE = "from the locked package"\n')
        message, extra_import = "wdlockapp.MESSAGE", "import wdlockapp"
    else:
        message, extra_import = '"from uv.lock"', ""
    (app.root / "wsgi.py").write_text(WSGI.format(message=message, extra_import=extra_import))


def test_uv_lock_app_with_its_package(
    make_app: Any, engine: Engine, index_env: Index, uv_binary: Path
) -> None:
    app = fresh(make_app)
    write_uv_project(app, packaged=True)
    uv(uv_binary, index_env, app.root, "lock")
    assert 'source = { editable = "." }' in (app.root / "uv.lock").read_text()
    lines: list[str] = []
    result = wheelhouse(app, engine, lines)
    text = "\n".join(lines)
    assert "installing from uv.lock (found): 3 pinned packages" in text, text
    assert "the project " + app.name in text
    names = {n.split("-")[0] for n in result.new}
    assert names == {"wd_pure_demo", "wd_cext_demo", "gunicorn", app.name.replace("-", "_")}
    image(app, engine, lines, no_index=True)
    body, _, _ = serve_and_check(engine, app.image, "from the locked package")
    assert body == "from the locked package hello from wd-pure-demo add=42 dev=False uid=1001"

    # a code change: the editable project points at the source, nothing is rebuilt but
    # the app layer
    (app.root / "src" / "wdlockapp" / "__init__.py").write_text('MESSAGE = "changed"\n')
    assert wheelhouse(app, engine).up_to_date
    built = image(app, engine, no_index=True)
    assert built.deps_reused and not built.up_to_date
    serve_and_check(engine, app.image, "changed hello from wd-pure-demo add=42 dev=False")


SIMPLE_WSGI = """\
import importlib.util
import os

import wd_pure_demo


def application(environ, start_response):
    dev = importlib.util.find_spec("wd_extra_demo") is not None
    body = "{message} %s dev=%s uid=%d" % (wd_pure_demo.hello(), dev, os.getuid())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""


def test_pylock_exported_by_uv(
    make_app: Any, engine: Engine, index_env: Index, uv_binary: Path
) -> None:
    app = fresh(make_app)
    write_uv_project(app, packaged=False)
    uv(uv_binary, index_env, app.root, "lock")
    uv(uv_binary, index_env, app.root, "export", "--format", "pylock.toml", "--frozen",
       "--no-dev", "-o", "pylock.toml")  # fmt: skip
    (app.root / "uv.lock").unlink()
    lines: list[str] = []
    wheelhouse(app, engine, lines)
    assert any("installing from pylock.toml (found): 3 pinned" in x for x in lines), lines
    image(app, engine, no_index=True)
    serve_and_check(engine, app.image, "from uv.lock hello from wd-pure-demo add=42 dev=False")


def poetry_lock(files: dict[str, tuple[str, str]], content_hash: str) -> str:
    """poetry.lock as Poetry 2 writes it (format 2.1: groups and markers per package;
    file names and hashes, no URLs)."""

    def package(name: str, version: str, groups: str, marker: str | None, prefix: str) -> str:
        entries = (
            "".join(
                f'    {{file = "{fn}", hash = "sha256:{sha}"}},\n'
                for fn, (_, sha) in files.items()
                if fn.startswith(prefix)
            )
            or '    {file = "pywin_demo-1.0-py3-none-win_amd64.whl", hash = "sha256:'
            + "1" * 64
            + '"},\n'
        )
        markers = f"markers = {json.dumps(marker)}\n" if marker else ""
        return (
            f'[[package]]\nname = "{name}"\nversion = "{version}"\ndescription = ""\n'
            f'optional = false\npython-versions = ">=3.8"\ngroups = [{groups}]\n{markers}'
            f"files = [\n{entries}]\n\n"
        )

    return (
        "# This file is automatically @generated by Poetry 2.5.1 and should not be changed "
        "by hand.\n\n"
        + package("gunicorn", "27.0.1", '"main"', None, "gunicorn-")
        + package("pywin-demo", "1.0", '"main"', 'sys_platform == "win32"', "pywin_demo-")
        + package("wd-cext-demo", "0.1.0", '"main"', None, "wd_cext_demo-")
        + package("wd-extra-demo", "0.1.0", '"dev"', None, "wd_extra_demo-")
        + package("wd-pure-demo", "0.1.0", '"main"', None, "wd_pure_demo-")
        + f'[metadata]\nlock-version = "2.1"\npython-versions = ">=3.11"\n'
        f'content-hash = "{content_hash}"\n'
    )


def test_poetry_lock(make_app: Any, engine: Engine, index_env: Index) -> None:
    """Poetry's lock names files but no URLs: they are found on the index by name and
    checked against its hashes; a package for Windows only and a dev group are left out."""
    app = fresh(make_app)
    project = (
        f'[project]\nname = "{app.name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["wd-pure-demo", "wd-cext-demo", "gunicorn", '
        "\"pywin-demo; sys_platform == 'win32'\"]\n\n"
        '[dependency-groups]\ndev = ["wd-extra-demo"]\n\n'
        "[tool.poetry]\npackage-mode = false\n\n"
    )
    (app.root / "pyproject.toml").write_text(project + warpdrive_table(app))
    from nox_warpdrive.config import load_pyproject

    digest = poetry_content_hash(load_pyproject(app.root))
    (app.root / "poetry.lock").write_text(poetry_lock(files_of(index_env), digest))
    (app.root / "wsgi.py").write_text(WSGI.format(message='"from poetry.lock"', extra_import=""))
    lines: list[str] = []
    wheelhouse(app, engine, lines)
    assert any("installing from poetry.lock (found): 3 pinned" in x for x in lines), lines
    image(app, engine, no_index=True)
    serve_and_check(engine, app.image, "from poetry.lock hello from wd-pure-demo add=42 dev=False")


def test_pipfile_lock_and_hashed_requirements(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """Pipfile.lock and requirement files with --hash name no files at all: the builder
    finds them on the index by their hashes. One volume: the second reuses the wheels."""
    app = fresh(make_app)
    files = files_of(index_env)

    def sha(prefix: str) -> str:
        return next(d for fn, (_, d) in files.items() if fn.startswith(prefix))

    pipfile = (
        f'[[source]]\nurl = "{index_env.url}"\nverify_ssl = false\nname = "local"\n\n'
        '[packages]\nwd-pure-demo = "*"\ngunicorn = "*"\n\n[dev-packages]\nwd-extra-demo = "*"\n'
    )
    (app.root / "Pipfile").write_text(pipfile)
    from nox_warpdrive.config import load_pyproject

    entry = {
        "wd-pure-demo": {"version": "==0.1.0", "hashes": [f"sha256:{sha('wd_pure_demo-')}"]},
        "gunicorn": {"version": "==27.0.1", "hashes": [f"sha256:{sha('gunicorn-')}"]},
        "pywin-demo": {"version": "==1.0", "markers": "sys_platform == 'win32'",
                       "hashes": ["sha256:" + "1" * 64]},
    }  # fmt: skip
    develop = {"wd-extra-demo": {"version": "==0.1.0", "hashes": [f"sha256:{sha('wd_extra_')}"]}}
    meta = {
        "hash": {"sha256": pipfile_hash(load_pyproject_file(app.root / "Pipfile"))},
        "pipfile-spec": 6,
        "requires": {},
        "sources": [{"name": "local", "url": index_env.url, "verify_ssl": False}],
    }
    lock = {"_meta": meta, "default": entry, "develop": develop}
    (app.root / "Pipfile.lock").write_text(json.dumps(lock, indent=4))
    (app.root / "pyproject.toml").write_text(
        f'[project]\nname = "{app.name}"\n\n' + warpdrive_table(app)
    )
    assert load_pyproject(app.root)
    (app.root / "wsgi.py").write_text(SIMPLE_WSGI.format(message="from Pipfile.lock"))
    lines: list[str] = []
    wheelhouse(app, engine, lines)
    assert any("installing from Pipfile.lock (found): 2 pinned" in x for x in lines), lines
    image(app, engine, no_index=True)
    serve_and_check(engine, app.image, "from Pipfile.lock hello from wd-pure-demo dev=False")

    # the same pins as requirements with --hash: taken from the volume, checked
    (app.root / "Pipfile.lock").unlink()
    (app.root / "requirements.txt").write_text(
        f"wd-pure-demo==0.1.0 \\\n    --hash=sha256:{sha('wd_pure_demo-')}\n"
        f"gunicorn==27.0.1 --hash=sha256:{sha('gunicorn-')}\n"
        f"pywin-demo==1.0 ; sys_platform == 'win32' --hash=sha256:{'1' * 64}\n"
    )
    (app.root / "wsgi.py").write_text(SIMPLE_WSGI.format(message="from --hash"))
    lines = []
    result = wheelhouse(app, engine, lines)
    assert any("installing from requirements.txt (--hash)" in x for x in lines), lines
    assert result.new == () and result.resolved == 2, result
    image(app, engine, no_index=True)
    serve_and_check(engine, app.image, "from --hash hello from wd-pure-demo dev=False")


def load_pyproject_file(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


def test_an_app_with_only_the_standard_library(
    make_app: Any, engine: Engine, index_env: Index, uv_binary: Path
) -> None:
    app = fresh(make_app)
    (app.root / "pyproject.toml").write_text(
        f'[project]\nname = "{app.name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        "dependencies = []\n\n" + warpdrive_table(app)
    )
    uv(uv_binary, index_env, app.root, "lock")
    (app.root / "app.py").write_text(STDLIB_SERVER.format(who="stdlib only"))
    result = wheelhouse(app, engine)
    assert result.summary() == "wheelhouse: nothing to build, the app needs no packages"
    image(app, engine, no_index=True)
    serve_and_check(engine, app.image, "stdlib only uid=1001")


def test_a_changed_hash_fails_and_names_the_package(
    make_app: Any, engine: Engine, index_env: Index, uv_binary: Path
) -> None:
    app = fresh(make_app)
    (app.root / "pyproject.toml").write_text(
        f'[project]\nname = "{app.name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["wd-pure-demo", "gunicorn"]\n\n' + warpdrive_table(app)
    )
    (app.root / "wsgi.py").write_text(SIMPLE_WSGI.format(message="x"))
    uv(uv_binary, index_env, app.root, "lock")
    first = wheelhouse(app, engine)
    real = dict(first.manifest["wheels"])["wd_pure_demo-0.1.0-py3-none-any.whl"]
    forged = "0" * 64
    lock = app.root / "uv.lock"
    lock.write_text(lock.read_text().replace(f"sha256:{real}", f"sha256:{forged}"))
    line = next(
        i for i, t in enumerate(lock.read_text().splitlines(), 1) if t == 'name = "wd-pure-demo"'
    )
    with pytest.raises(BuildError) as failed:
        wheelhouse(app, engine)
    message = str(failed.value)
    assert f"uv.lock line {line}" in message and "wd-pure-demo" in message, message
    assert real in message and forged in message, message
    assert "was not installed" in message
    # the volume still has the real file, and no set was recorded for the forged lock
    from test_build import manifest

    data = manifest(engine, app)
    assert data["wheels"]["wd_pure_demo-0.1.0-py3-none-any.whl"] == real
    assert len(data["sets"]) == 1
