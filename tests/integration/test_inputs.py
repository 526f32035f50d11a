"""Apps that need no packages at all build and answer HTTP: a stdlib app.py, an app.sh,
and a WSGI module whose only package is the server nox-warpdrive adds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import App
from pkgindex import Index
from test_build import image, wheelhouse
from test_runtime import WSGI, app_py, app_sh, serve_and_check

from nox_warpdrive.engine import Engine


def wsgi_only(root: Path) -> str:
    (root / "wsgi.py").write_text(WSGI.format(name="application", who="from wsgi"))
    return "from wsgi"


CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    # name: (writer, requirements.txt)
    "app.py, empty requirements.txt": (app_py, ""),
    "app.sh, requirements.txt with only a comment": (app_sh, "# nothing yet\n"),
    "wsgi.py, no requirements file (only the server)": (wsgi_only, ""),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_app_that_needs_no_packages(
    case: str, make_app: Any, engine: Engine, index_env: Index
) -> None:
    writer, requirements = CASES[case]
    app: App = make_app([])
    expect = writer(app.root)
    req = app.root / "requirements.txt"
    if case.startswith("wsgi.py"):
        req.unlink()
    else:
        req.write_text(requirements)
    lines: list[str] = []
    result = wheelhouse(app, engine, lines)
    if case.startswith("wsgi.py"):
        assert result.resolved == 1 and any("gunicorn" in n for n in result.new), result
    else:
        assert result.summary() == "wheelhouse: nothing to build, the app needs no packages"
    built = image(app, engine, lines, no_index=True)
    assert not built.up_to_date
    serve_and_check(engine, app.image, expect)
