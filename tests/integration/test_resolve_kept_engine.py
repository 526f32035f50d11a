"""A changed requirements file keeps the versions the wheelhouse has (runtime/resolve.py,
issue 24: adding a package), on the real engine with a local package index of its own.

The index starts with wd-keep 1.0. Once the wheelhouse has it, wd-keep 2.0 is published
and the app adds wd-more: the build keeps wd-keep 1.0 and asks the index only about
wd-more (the server's request log has no page of wd-keep). ``--upgrade`` (cfg.upgrade)
then resolves afresh: wd-keep 2.0, a new deps layer. A requirement the wheelhouse's
versions cannot meet (wd-keep>=3, once 3.0 is published) is resolved from the index."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from conftest import App, use_index
from pkgindex import Index, _write_simple_tree, serve
from test_build import manifest

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import build_image


def pure_wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel of ``name`` (one module) as pip and uv install it."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}.py": f'VERSION = "{version}"\n'.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


class OwnIndex:
    """The session's fixture index (its files linked) plus wheels published by the test."""

    def __init__(self, root: Path, served: Index):
        self.root, self.files = root, root / "files"
        self.files.mkdir(parents=True)
        for f in (served.root / "files").iterdir():
            (self.files / f.name).symlink_to(f)

    def publish(self, name: str, version: str) -> None:
        filename, data = pure_wheel(name, version)
        (self.files / filename).write_bytes(data)
        _write_simple_tree(self.root / "simple", sorted(self.files.iterdir()))


def pages(idx: Index, since: int) -> set[str]:
    """The projects whose page the index served after request number ``since``."""
    return {p.split("/")[2] for p in idx.requests[since:] if p.startswith("/simple/")}


def resolved(engine: Engine, app: App) -> dict[str, str]:
    return {w["name"]: w["version"] for w in manifest(engine, app)["resolved"]}


def test_a_changed_requirements_file_keeps_the_versions_the_wheelhouse_has(
    make_app: object,
    engine: Engine,
    index: Index,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    own = OwnIndex(tmp_path / "index", index)
    own.publish("wd-keep", "1.0")
    with serve(own.root) as idx:
        use_index(monkeypatch, idx)
        app: App = make_app(["wd-pure-demo", "wd-cext-demo", "wd-keep"])  # type: ignore[operator]
        build_image(load_config(app.root), engine, lambda line: None)
        assert resolved(engine, app)["wd_keep"] == "1.0"

        own.publish("wd-keep", "2.0")
        own.publish("wd-more", "1.0")
        app.requirements.append("wd-more")
        app.write()
        since, lines = len(idx.requests), []
        build_image(load_config(app.root), engine, lines.append)
        got = resolved(engine, app)
        assert (got["wd_keep"], got["wd_more"]) == ("1.0", "1.0")
        assert any("keeping the versions the wheelhouse has" in x for x in lines), lines
        assert "wd-more" in pages(idx, since)
        assert pages(idx, since).isdisjoint({"wd-keep", "wd-pure-demo", "wd-cext-demo"})
        assert any("adding 1 wheels on top of the deps layer" in x for x in lines), lines

        since, lines = len(idx.requests), []
        upgrade = dataclasses.replace(load_config(app.root), upgrade=True)
        result = build_image(upgrade, engine, lines.append)
        assert resolved(engine, app)["wd_keep"] == "2.0", (lines, idx.requests[since:])
        assert not result.up_to_date and not result.deps_reused
        assert any("--upgrade: resolving the requirements again" in x for x in lines), lines
        assert not any("keeping the versions" in x for x in lines), lines
        assert "wd-keep" in pages(idx, since)

        own.publish("wd-keep", "3.0")
        app.requirements[-2] = "wd-keep>=3"
        app.write()
        lines = []
        build_image(load_config(app.root), engine, lines.append)
        assert resolved(engine, app)["wd_keep"] == "3.0"
        assert any("could not resolve keeping the wheelhouse" in x for x in lines), lines
