"""Re-collecting only the changed static files (build/static.py): when it is allowed
(Django's plain storage and finders, only files in static directories edited), and when
collectstatic must run in full."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from unit_support import write

from nox_warpdrive.build import static_cache
from nox_warpdrive.build.static import _load_inputs, changed_static, remember_inputs
from nox_warpdrive.build.static_inputs import StaticInputs, choose
from nox_warpdrive.source.context import collect, load_ignore_rules

SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
INSTALLED_APPS = ["django.contrib.staticfiles", "shop"]
STATIC_ROOT = BASE_DIR / "collected"
"""


def inputs_of(root: Path, settings_text: str) -> StaticInputs:
    write(root, "manage.py", "import os\n")
    write(root, "site1/__init__.py", "")
    write(root, "site1/settings.py", settings_text)
    write(root, "shop/__init__.py", "")
    write(root, "shop/static/shop/site.css", "body {}\n")
    entries = collect(root, load_ignore_rules(root))
    return choose(root, "site1.settings", entries, {e.relpath: e.kind for e in entries})[0]


def test_the_default_storage_is_a_plain_copy(tmp_path: Path) -> None:
    assert inputs_of(tmp_path, SETTINGS).plain_copy
    named = SETTINGS + (
        'STORAGES = {"staticfiles": {"BACKEND": '
        '"django.contrib.staticfiles.storage.StaticFilesStorage"}}\n'
    )
    assert inputs_of(tmp_path, named).plain_copy


@pytest.mark.parametrize(
    "extra",
    [
        'STORAGES = {"staticfiles": {"BACKEND": '
        '"django.contrib.staticfiles.storage.ManifestStaticFilesStorage"}}\n',
        'STATICFILES_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"\n',
        'STORAGES = {"staticfiles": {"BACKEND": "x.Y", "OPTIONS": {"location": "/srv"}}}\n',
        'STATICFILES_FINDERS = ["compressor.finders.CompressorFinder"]\n',
        'STATICFILES_DIRS = [("vendor", BASE_DIR / "vendor")]\n',
        'VENDOR = ("vendor", BASE_DIR / "vendor")\nSTATICFILES_DIRS = [VENDOR]\n',
    ],
)
def test_what_makes_collectstatic_more_than_a_copy(tmp_path: Path, extra: str) -> None:
    """A hashing storage (its manifest and the references in other files depend on every
    file), a finder of its own, a prefixed directory: collectstatic runs in full."""
    assert not inputs_of(tmp_path, SETTINGS + extra).plain_copy


def line(digest: str, kind: str = "file") -> str:
    return f"{kind}\x00664\x001001\x000\x001\x00{digest}\x003"


def inputs_record(records: dict[str, str], **over: Any) -> dict[str, Any]:
    text = "".join(f"{p}\x00{m}\n" for p, m in records.items())
    data = {"base": "k", "dirs": ["a/static/", "b/static/"], "files": ["manage.py"]}
    return {**data, **over, "records": text}


BEFORE = {
    "manage.py": line("m"),
    "a/static/a/site.css": line("1"),
    "a/static/a/app.js": line("2"),
    "b/static/b/x.css": line("3"),
}


def test_an_edited_static_file_is_copied_alone() -> None:
    after = {**BEFORE, "a/static/a/site.css": line("9"), "b/static/b/x.css": line("8")}
    found = changed_static(inputs_record(BEFORE), inputs_record(after))
    assert found == {"a/site.css": "a/static/a/site.css", "b/x.css": "b/static/b/x.css"}


@pytest.mark.parametrize(
    "after, over",
    [
        ({**BEFORE, "a/static/a/new.css": line("4")}, {}),  # added
        ({k: v for k, v in BEFORE.items() if k != "a/static/a/app.js"}, {}),  # removed
        ({**BEFORE, "manage.py": line("9")}, {}),  # not a static file
        (BEFORE, {"base": "other"}),  # settings, base image, packages
        ({**BEFORE, "a/static/a/app.js": line("l", "symlink")}, {}),  # a link now
        (BEFORE, {}),  # nothing changed: reused, not re-collected
    ],
)
def test_what_makes_collectstatic_run_in_full(after: dict[str, str], over: dict[str, Any]) -> None:
    assert changed_static(inputs_record(BEFORE), inputs_record(after, **over)) is None


def test_a_path_two_static_directories_have_runs_it_in_full() -> None:
    """Which of the two is collected is the finders' order: not decided here."""
    before = {**BEFORE, "b/static/a/site.css": line("5")}
    after = {**before, "a/static/a/site.css": line("9")}
    assert changed_static(inputs_record(before), inputs_record(after)) is None


def test_a_file_collectstatic_ignores_runs_it_in_full() -> None:
    before = {**BEFORE, "a/static/a/.hidden.css": line("5"), "a/static/a/x.css~": line("6")}
    for name in ("a/static/a/.hidden.css", "a/static/a/x.css~"):
        after = {**before, name: line("9")}
        assert changed_static(inputs_record(before), inputs_record(after)) is None


def test_inputs_are_kept_only_for_a_plain_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plain = StaticInputs(files=frozenset({"manage.py"}), dirs=("a/static/",), plain_copy=True)
    remember_inputs("sha256:one", "k", plain, "a/static/x.css\x00" + line("1") + "\n")
    kept = _load_inputs("sha256:one")
    assert kept is not None and kept["dirs"] == ["a/static/"] and kept["base"] == "k"
    remember_inputs("sha256:two", "k", StaticInputs(files=frozenset(), plain_copy=False), "")
    remember_inputs("sha256:three", "k", StaticInputs(everything=True, plain_copy=True), "")
    assert _load_inputs("sha256:two") is None and _load_inputs("sha256:three") is None
    # a damaged file is no set of inputs
    path = static_cache.cache_dir() / "inputs" / "sha256_one.json"
    path.write_text("{")
    assert _load_inputs("sha256:one") is None
    path.write_text(json.dumps([1]))
    assert _load_inputs("sha256:one") is None


def collected(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.mtime = len(data), 0o664, 1001, 12345
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_changed_member_gets_the_new_bytes_only_when_provably_its_copy(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from nox_warpdrive.build.static import _replaced
    from nox_warpdrive.source.layers import AppTree

    write(tmp_path, "a/static/a/site.css", "new\n")
    app: Any = SimpleNamespace(tree=AppTree(tree={}, root=tmp_path, src="opt/app-root/src"))
    root, rel, relpath = "/opt/app-root/src/collected", "a/site.css", "a/static/a/site.css"
    files = collected({"opt/app-root/src/collected/a/site.css": b"old\n"})
    before, after = {relpath: line(sha(b"old\n"))}, {relpath: line(sha(b"new\n"))}
    out = _replaced(files, root, app, {rel: relpath}, before, after)
    assert out is not None
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        (member,) = tar.getmembers()
        fh = tar.extractfile(member)
        assert fh is not None and fh.read() == b"new\n"
        assert (member.mode, member.uid, member.mtime) == (0o664, 1001, 12345)
    # the collected bytes are not this file's before: another file was copied there
    other = {relpath: line(sha(b"something else\n"))}
    assert _replaced(files, root, app, {rel: relpath}, other, after) is None
    # the file changed again since the build hashed it
    write(tmp_path, relpath, "newer\n")
    assert _replaced(files, root, app, {rel: relpath}, before, after) is None
    # not in the collected files at all
    assert _replaced(files, root, app, {"a/x.css": relpath}, before, after) is None
