"""A build whose output goes into the project it builds (`nox -s image > build.log 2>&1`,
common in CI scripts and by hand) succeeds, every time: the log, written while the
source is read and the layers made, goes into the image as it was at one moment, a
consistent copy (a prefix of the log the build went on writing)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from conftest import App, output
from pkgindex import Index
from test_build import nox

from nox_warpdrive.engine import Engine


def in_image(engine: Engine, ref: str, path: str) -> bytes:
    out = output(engine.client, ref, ["cat", path], user="1001")
    return bytes(out)


def test_a_build_logging_into_the_project_succeeds_twice(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # the log grows all along, as in CI
    r = nox(app, "-s", "wheelhouse", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    log = app.root / "build.log"
    command = f"{sys.executable} -m nox --no-color -s image -- --no-index > build.log 2>&1"
    ids = []
    for run in (1, 2):
        app.write(message=f"logged-v{run}")
        proc = subprocess.run(command, shell=True, cwd=app.root, env=env, timeout=900)
        text = log.read_text(errors="replace")
        assert proc.returncode == 0, f"run {run}:\n{text}"
        assert "Traceback" not in text and "changed while" not in text, text
        copy = in_image(engine, app.image, "/opt/app-root/src/build.log")
        assert copy and log.read_bytes().startswith(copy), (copy, text)
        assert b"Running session image" in copy
        ids.append(engine.inspect_raw(app.image)["Id"])
        # one warning names it, and how to leave it out
        assert text.count("fix: add 'build.log' to .dockerignore") == 1, text
    assert ids[0] != ids[1]  # the second build made an image of its own code
