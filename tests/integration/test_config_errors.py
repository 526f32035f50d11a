"""A wrong setting is named as such on the real engine: ``python = "python3.12"`` in
images that have no such command fails naming the ``python`` key and the image, on a
first build (nothing probed) and after a good build (the probe of ``python3`` cached,
the deps layer there to reuse), and never blames the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import BUILDER_IMAGE, App
from pkgindex import Index
from test_reliability import nox_env

from nox_warpdrive.engine import Engine


def nox(app: App, index: Index, cache: Path, session: str) -> tuple[int, str]:
    env = {**nox_env(index), "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "nox", "-f", "noxfile.py", "-s", session],
        cwd=app.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def assert_names_the_key(code: int, text: str) -> None:
    assert code != 0, text
    assert "`python = 'python3.12'` in [tool.warpdrive]" in text, text
    assert BUILDER_IMAGE in text or "base-image" in text, text
    assert "set `python`" in text, text
    assert "runs and answers" not in text, text  # the engine answered
    assert "Traceback" not in text, text


def test_a_python_the_images_lack_fails_naming_the_key_cold_and_warm(
    make_app: Any, engine: Engine, index: Index, tmp_path: Path
) -> None:
    app: App = make_app(["wd-pure-demo"])
    cold = tmp_path / "cold-cache"
    app.extra_config["python"] = "python3.12"
    app.write()
    assert_names_the_key(*nox(app, index, cold, "wheelhouse"))
    assert not os.path.exists(cold / "nox-warpdrive" / "probes") or not any(
        (cold / "nox-warpdrive" / "probes").iterdir()
    ), "a failed probe was cached"

    warm = tmp_path / "warm-cache"
    del app.extra_config["python"]
    app.write()
    code, text = nox(app, index, warm, "image")
    assert code == 0, text
    assert any((warm / "nox-warpdrive" / "probes").iterdir())  # probed and cached
    app.extra_config["python"] = "python3.12"
    app.write()
    assert_names_the_key(*nox(app, index, warm, "image"))
    assert_names_the_key(*nox(app, index, warm, "wheelhouse"))
