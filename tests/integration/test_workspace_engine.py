"""A uv workspace on the real engine, as a monorepo has one: the app in the member
directory backend/, uv.lock at the workspace root (made by the real uv against the local
index, one package held at its older release by a uv constraint), a dev group at the
root and in the member. Built from backend/ with only image, base-image, builder-image
and volume set (and the test network): the build says it installs from the workspace's
lock, the image holds the locked versions (the held one included) and no dev-group
package, and the app is started from `entrypoint` in [tool.fastapi]; another member it
depends on (libs/wscommon) is built as a wheel from its directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import BASE_IMAGE, BUILDER_IMAGE, output
from pkgindex import Index
from test_locks import fresh, uv
from test_runtime import serve_and_check

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image
from nox_warpdrive.inputs.model import target_for
from nox_warpdrive.inputs.read import read_inputs
from nox_warpdrive.wheelhouse.build import probe_image

ROOT_PYPROJECT = """\
[dependency-groups]
dev = ["wd-extra-demo"]

[tool.uv.workspace]
members = ["backend", "libs/*"]

[tool.uv]
constraint-dependencies = ["wd-held-demo<2"]
"""

MEMBER_PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["wd-pure-demo", "wd-held-demo", "uvicorn", "wscommon"]

[tool.uv.sources]
wscommon = {{ workspace = true }}

[dependency-groups]
dev = ["wd-extra-demo"]

[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[tool.setuptools.packages.find]
where = ["src"]

[tool.fastapi]
entrypoint = "wsapp.main:app"

[tool.warpdrive]
image = "{image}"
base-image = "{base}"
builder-image = "{builder}"
volume = "{volume}"
network = "host"
"""

ASGI_APP = """\
import importlib.util
import os

import wd_held_demo
import wd_pure_demo
import wscommon


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    dev = importlib.util.find_spec("wd_extra_demo") is not None
    body = "from the workspace held=%s %s %s dev=%s uid=%d" % (
        wd_held_demo.VERSION, wd_pure_demo.hello(), wscommon.MESSAGE, dev, os.getuid()
    )
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
"""


COMMON_PYPROJECT = """\
[project]
name = "wscommon"
version = "0.3.0"
requires-python = ">=3.11"
dependencies = ["wd-pure-demo"]

[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
"""


def exported(text: str) -> dict[str, str]:
    """name -> version from `uv export --format requirements-txt` (editables left out)."""
    out = {}
    for line in text.splitlines():
        line = line.split(";")[0].strip()
        if line and not line.startswith(("#", "-e")):
            name, _, version = line.partition("==")
            out[name] = version
    return out


def test_member_built_from_the_workspace_lock(
    make_app: Any, engine: Engine, index_env: Index, uv_binary: Path
) -> None:
    app = fresh(make_app)
    root = app.root  # the repository (it has .git) and the workspace's root
    member = root / "backend"
    (member / "src" / "wsapp").mkdir(parents=True)
    (member / "src" / "wsapp" / "__init__.py").write_text("")
    (member / "src" / "wsapp" / "main.py").write_text(ASGI_APP)
    (root / "pyproject.toml").write_text(ROOT_PYPROJECT)
    common = root / "libs" / "wscommon"
    (common / "wscommon").mkdir(parents=True)
    (common / "wscommon" / "__init__.py").write_text('MESSAGE = "common v1"\n')
    (common / "pyproject.toml").write_text(COMMON_PYPROJECT)
    (member / "pyproject.toml").write_text(
        MEMBER_PYPROJECT.format(
            name=app.name,
            image=app.image,
            base=BASE_IMAGE,
            builder=BUILDER_IMAGE,
            volume=app.volume,
        )
    )
    uv(uv_binary, index_env, root, "lock")
    lock = (root / "uv.lock").read_text()
    assert 'source = { editable = "backend" }' in lock and 'version = "1.0.0"' in lock
    assert 'source = { editable = "libs/wscommon" }' in lock
    assert not (member / "uv.lock").exists()

    # the selection is what uv itself exports for the member, without dev groups
    cfg = load_config(member)
    _, key = probe_image(engine, cfg.base_image, "base-image", cfg)
    ours = {p.name: p.version for p in read_inputs(cfg, target_for(key)).locked}
    args = ["--package", app.name, "--no-dev", "--frozen", "--format", "requirements-txt"]
    theirs = exported(uv(uv_binary, index_env, root, "export", *args, "--no-hashes"))
    assert ours == theirs, (ours, theirs)
    assert ours["wd-held-demo"] == "1.0.0" and "wd-extra-demo" not in ours

    lines: list[str] = []
    build_image(cfg, engine, lines.append)
    text = "\n".join(lines)
    assert (
        f"warpdrive: installing from uv.lock (workspace root ../uv.lock, member {app.name}): "
        "5 pinned packages" in text
    ), text
    assert "the workspace members wscommon (wheels built from their directories)" in text
    assert f"the project {app.name} (editable, built from the source)" in text, text
    body, _, _ = serve_and_check(engine, app.image, "from the workspace")
    assert body == (
        "from the workspace held=1.0.0 hello from wd-pure-demo common v1 dev=False uid=1001"
    )
    listing = output(
        engine.client, app.image, ["sh", "-c", "ls /opt/app-root/venv/lib/python3.11/site-packages"]
    ).decode()
    assert "wd_held_demo-1.0.0.dist-info" in listing and "wd_extra_demo" not in listing
    assert "wscommon-0.3.0.dist-info" in listing

    # a change of the other member builds its wheel again
    (common / "wscommon" / "__init__.py").write_text('MESSAGE = "common v2"\n')
    build_image(load_config(member), engine, lambda line: None)
    serve_and_check(
        engine, app.image, "from the workspace held=1.0.0 hello from wd-pure-demo common v2"
    )
