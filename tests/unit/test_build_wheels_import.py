"""build_wheels.py's import mode (runs in the builder container): what another
wheelhouse brings is published only after its sha256 is checked, never over the
volume's own file, never outside the wheels directory, and merged keeping the volume's
requirement sets."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.runtime import protocol, resolve, wheel_import

KEY = {
    "interpreter": "cp311",
    "abi": "cp311",
    "platform": "linux_x86_64",
    "libc": "glibc",
    "libc_version": "2.36",
    "distro": "debian",
    "distro_version": "12",
    "python_version": "3.11.2",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Box:
    """A volume and an incoming directory, and the plan the host would send."""

    def __init__(self, tmp: Path) -> None:
        self.volume = tmp / "volume"
        self.incoming = tmp / "incoming"
        (self.incoming / "wheels").mkdir(parents=True)
        self.root = self.volume / "key"
        (self.root / "wheels").mkdir(parents=True)
        self.plan = {
            "mode": "import",
            "key": "key",
            "volume_dir": str(self.volume),
            "incoming": str(self.incoming),
            "source": "REF",
            "platform_key": KEY,
        }

    def theirs(
        self, wheels: dict[str, bytes], sent: dict[str, bytes] | None = None, **more: Any
    ) -> None:
        manifest = {"platform_key": KEY, "wheels": {n: sha(d) for n, d in wheels.items()}, **more}
        (self.incoming / "manifest.json").write_text(json.dumps(manifest))
        for name, data in (wheels if sent is None else sent).items():
            (self.incoming / "wheels" / name).write_bytes(data)

    def ours(self, wheels: dict[str, bytes], **more: Any) -> None:
        for name, data in wheels.items():
            (self.root / "wheels" / name).write_bytes(data)
        manifest = {"platform_key": KEY, "wheels": {n: sha(d) for n, d in wheels.items()}, **more}
        (self.root / "manifest.json").write_text(json.dumps(manifest))

    def run(self) -> dict[str, Any]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert wheel_import.import_main(self.plan) == 0
        lines = buf.getvalue().splitlines()
        report = [x for x in lines if x.startswith(protocol.IMPORTED_PREFIX)]
        assert len(report) == 1, lines
        data: dict[str, Any] = json.loads(report[0][len(protocol.IMPORTED_PREFIX) :])
        data["lines"] = lines
        return data

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "manifest.json").read_text())
        return data

    def published(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.root / "wheels").iterdir()}


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def test_only_wheels_whose_sha256_matches_are_published(box: Box) -> None:
    box.theirs({"a-1-py3-none-any.whl": b"a"}, sent={"a-1-py3-none-any.whl": b"not a"})
    report = box.run()
    assert report["added"] == [] and report["refused"][0][0] == "a-1-py3-none-any.whl"
    assert box.published() == {}
    assert any("does not match its sha256" in x and "REF" in x for x in report["lines"])
    assert not box.incoming.exists()  # what came in is removed
    assert [p.name for p in box.root.iterdir()] != [] and not list(box.root.glob("staging-*"))


def test_names_that_leave_the_wheels_directory_are_ignored(box: Box) -> None:
    bad = {"../evil.whl": b"x", "sub/dir.whl": b"y", ".hidden.whl": b"z", "notawheel": b"w"}
    box.theirs({**bad, "ok-1-py3-none-any.whl": b"ok"}, sent={"ok-1-py3-none-any.whl": b"ok"})
    report = box.run()
    assert report["added"] == ["ok-1-py3-none-any.whl"]
    assert set(box.manifest()["wheels"]) == {"ok-1-py3-none-any.whl"}
    assert not (box.volume / "key" / "evil.whl").exists()


def test_the_volumes_own_wheel_of_the_same_name_wins(box: Box) -> None:
    name = "c-1-cp311-cp311-linux_x86_64.whl"
    box.ours(
        {name: b"compiled here"},
        sets={
            "mine": {"resolved": [{"file": name, "sha256": sha(b"compiled here")}], "built_at": "1"}
        },
    )
    box.theirs(
        {name: b"compiled there"},
        sets={
            "theirs": {
                "resolved": [{"file": name, "sha256": sha(b"compiled there")}],
                "built_at": "2",
            }
        },
    )
    report = box.run()
    assert report["added"] == []
    assert box.published() == {name: b"compiled here"}
    assert set(box.manifest()["sets"]) == {"mine"}


def test_a_known_wheel_whose_file_is_gone_comes_back(box: Box) -> None:
    name = "a-1-py3-none-any.whl"
    box.ours({name: b"a"})
    (box.root / "wheels" / name).unlink()
    box.theirs({name: b"a"})
    assert box.run()["added"] == [name]
    assert box.published() == {name: b"a"}


def test_a_file_another_run_published_is_kept(box: Box) -> None:
    name = "a-1-py3-none-any.whl"
    (box.root / "wheels" / name).write_bytes(b"another run's a")  # not yet recorded
    box.theirs({name: b"a"})
    report = box.run()
    assert report["added"] == [] and box.published() == {name: b"another run's a"}
    assert name not in box.manifest()["wheels"]


def test_sets_merge_keeping_the_volumes_and_the_newest_of_the_others(box: Box) -> None:
    name = "a-1-py3-none-any.whl"
    entry = {"resolved": [{"file": name, "sha256": sha(b"a")}]}
    mine = {f"m{i}": {**entry, "built_at": f"2026-01-{i + 1:02}"} for i in range(15)}
    box.ours({name: b"a"}, sets=mine, tools={"uv": {"path": "tools/uv-1/uv"}})
    theirs = {f"t{i}": {**entry, "built_at": f"2026-02-{i + 1:02}"} for i in range(10)}
    missing = {
        "gone": {"resolved": [{"file": "b-1-py3-none-any.whl", "sha256": "0"}], "built_at": "9"}
    }
    box.theirs({name: b"a"}, sets={**theirs, **missing}, tools={"uv": {"path": "elsewhere"}})
    box.run()
    manifest = box.manifest()
    assert set(manifest["sets"]) == set(mine) | {f"t{i}" for i in range(5, 10)}
    assert manifest["tools"] == {"uv": {"path": "tools/uv-1/uv"}}


def test_another_platform_is_refused_whole(box: Box) -> None:
    box.theirs({"a-1-py3-none-any.whl": b"a"}, platform_key={**KEY, "abi": "cp312"})
    report = box.run()
    assert report["error"] == "platform" and box.published() == {}


def test_uv_finds_the_published_wheels_on_a_page_with_their_sha256s(tmp_path: Path) -> None:
    """uv is given a flat index with the manifest's hashes: from a bare directory it
    would unpack every wheel into its cache to hash it (seconds on a seeded volume)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in (
        "a-1-py3-none-any.whl",
        "a-1-cp311-cp311-linux_x86_64.whl",
        "b-2+local-py3-none-any.whl",
    ):
        (wheels / name).write_bytes(name.encode())
    (wheels / ".replace-x").write_bytes(b"half")
    manifest = tmp_path / "manifest.json"
    known = {"a-1-py3-none-any.whl": "1" * 64, "a-1-cp311-cp311-linux_x86_64.whl": "2" * 64}
    manifest.write_text(json.dumps({"wheels": known}))
    page = Path(resolve.flat_index(str(wheels), str(manifest), str(tmp_path)))
    anchors = [x for x in page.read_text().splitlines() if x.startswith("<a ")]
    assert anchors == [
        f'<a href="file://{wheels}/a-1-cp311-cp311-linux_x86_64.whl#sha256={"2" * 64}">'
        "a-1-cp311-cp311-linux_x86_64.whl</a>",
        f'<a href="file://{wheels}/a-1-py3-none-any.whl#sha256={"1" * 64}">'
        "a-1-py3-none-any.whl</a>",
        f'<a href="file://{wheels}/b-2%2Blocal-py3-none-any.whl">b-2+local-py3-none-any.whl</a>',
    ]
