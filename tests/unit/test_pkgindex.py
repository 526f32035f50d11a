"""The local fixture package index (tests/integration/pkgindex.py) works from the host."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

import pkgindex

PY_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"


@pytest.fixture(scope="module")
def simple(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pkgindex.build_index(tmp_path_factory.mktemp("pkgindex"))


@pytest.fixture
def index(simple: Path) -> Iterator[pkgindex.Index]:
    with pkgindex.serve(simple.parent) as idx:
        yield idx


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(
        cmd, env=pkgindex.hermetic_pip_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_simple_tree_lists_every_project(simple: Path) -> None:
    projects = sorted(p.name for p in simple.iterdir() if p.is_dir())
    assert projects == [
        "asgiref",
        "blinker",
        "click",
        "django",
        "flask",
        "gunicorn",
        "h11",
        "itsdangerous",
        "jinja2",
        "markupsafe",
        "setuptools",
        "sqlparse",
        "uv",
        "uvicorn",
        "waitress",
        "wd-broken-demo",
        "wd-cext-demo",
        "wd-embed-demo",
        "wd-extra-demo",
        "wd-held-demo",
        "wd-needs-cext-demo",
        "wd-newpy-demo",
        "wd-pure-demo",
        "werkzeug",
        "whitenoise",
    ]
    files = sorted(p.name for p in (simple.parent / "files").iterdir())
    assert "wd_cext_demo-0.1.0.tar.gz" in files
    assert not [f for f in files if f.startswith("wd_cext_demo") and f.endswith(".whl")]
    page = (simple / "wd-pure-demo" / "index.html").read_text()
    assert re.search(
        r'href="\.\./\.\./files/wd_pure_demo-0\.1\.0-py3-none-any\.whl#sha256=[0-9a-f]{64}"', page
    )


def test_build_index_is_idempotent(simple: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in simple.parent.rglob("*") if p.is_file()}
    assert pkgindex.build_index(simple.parent) == simple
    after = {p: p.stat().st_mtime_ns for p in simple.parent.rglob("*") if p.is_file()}
    assert after == before


def test_serve_records_requests(index: pkgindex.Index) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/simple/", index.url)
    with urllib.request.urlopen(index.url + "wd-pure-demo/") as resp:
        assert b"wd_pure_demo-0.1.0-py3-none-any.whl" in resp.read()
    assert index.requests == ["/simple/wd-pure-demo/"]
    assert index.downloaded() == []


@pytest.mark.parametrize("project", ["wd-pure-demo", "wd-extra-demo"])
def test_pip_download_pure_wheel(index: pkgindex.Index, project: str, tmp_path: Path) -> None:
    _pip(
        "download",
        "--isolated",
        "--no-deps",
        "--no-cache-dir",
        "--index-url",
        index.url,
        project,
        "-d",
        str(tmp_path),
    )
    wheel = f"{project.replace('-', '_')}-0.1.0-py3-none-any.whl"
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel]
    assert index.downloaded() == [wheel]


def test_pip_wheel_compiles_cext_sdist_with_served_backend(
    index: pkgindex.Index, tmp_path: Path
) -> None:
    out = tmp_path / "wheels"
    _pip(
        "wheel",
        "--isolated",
        "--no-cache-dir",
        "--index-url",
        index.url,
        "wd-cext-demo",
        "-w",
        str(out),
    )
    wheels = sorted(p.name for p in out.iterdir())
    assert len(wheels) == 1, wheels
    assert re.fullmatch(rf"wd_cext_demo-0\.1\.0-{PY_TAG}-{PY_TAG}-linux_\w+\.whl", wheels[0])
    # The sdist came from the index, and so did the build backend for build isolation.
    fetched = index.downloaded()
    assert "wd_cext_demo-0.1.0.tar.gz" in fetched
    assert any(re.fullmatch(r"setuptools-[\d.]+-py3-none-any\.whl", f) for f in fetched), fetched

    # The compiled extension really works.
    site = tmp_path / "site"
    _pip(
        "install",
        "--isolated",
        "--no-index",
        "--no-deps",
        "--target",
        str(site),
        str(out / wheels[0]),
    )
    assert list((site / "wd_cext_demo").glob(f"_speedup*{sysconfig.get_config_var('EXT_SUFFIX')}"))
    check = subprocess.run(
        [sys.executable, "-c", "import wd_cext_demo; print(wd_cext_demo.add(2, 40))"],
        env={**pkgindex.hermetic_pip_env(), "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "42"
