"""The path-based CI cache (wheelhouse/directory.py) on a simulated engine: an export writes
only what the directory lacks, whole files, and prunes what the volume no longer lists;
an import sends only what the volume lacks, and the builder's import step refuses a
damaged wheel; a directory with nothing for this platform is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transfer_support import KEY, SimEngine, put_volume, sha, volume_manifest, wheel, wheels_in

from nox_warpdrive.errors import BuildError
from nox_warpdrive.platform import PlatformKey
from nox_warpdrive.wheelhouse.directory import export_dir, import_dir
from nox_warpdrive.wheelhouse.transfer import Wheelhouse

A, B, C = wheel("a"), wheel("b"), wheel("c")


def wh(volume: str) -> Wheelhouse:
    return Wheelhouse(volume, KEY, "sha256:builder")


def export(engine: SimEngine, volume: str, cache: Path) -> list[str]:
    lines: list[str] = []
    export_dir(engine, wh(volume), volume_manifest(engine, volume), cache, lines.append)
    return lines


def cached(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (cache / KEY.slug / "wheels").iterdir()}


def test_an_export_is_keyed_by_platform_and_incremental(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path / "engine")
    cache = tmp_path / "cache"
    put_volume(engine, "vol", dict([A, B]), {"s1": [A[0], B[0]]})
    lines = export(engine, "vol", cache)
    assert cached(cache) == dict([A, B])
    manifest = json.loads((cache / KEY.slug / "manifest.json").read_text())
    assert set(manifest) == {"format", "platform_key", "wheels", "sets", "built_from"}
    assert lines == [
        f"warpdrive: exported the wheelhouse of {KEY.slug} to {cache / KEY.slug}: "
        "2 wheels written, 0 already there, 0 removed"
    ]
    put_volume(engine, "vol", dict([B, C]), {"s2": [B[0], C[0]]})
    engine.reads.clear()
    lines = export(engine, "vol", cache)
    assert cached(cache) == dict([B, C])  # a is gone from the volume: pruned
    assert "1 wheels written, 1 already there, 1 removed" in lines[0]
    wheel_reads = [p for _, p in engine.reads if p.endswith(".whl") or p.endswith("/wheels")]
    assert wheel_reads == [f"/warpdrive/{KEY.slug}/wheels/{C[0]}"]  # only the new one


def test_an_export_writes_again_a_file_the_cache_damaged(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path / "engine")
    cache = tmp_path / "cache"
    put_volume(engine, "vol", dict([A, B]))
    export(engine, "vol", cache)
    (cache / KEY.slug / "wheels" / A[0]).write_bytes(b"short")
    lines = export(engine, "vol", cache)
    assert cached(cache) == dict([A, B]) and "1 wheels written" in lines[0]


def test_an_export_of_a_damaged_volume_fails_and_keeps_the_cache(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path / "engine")
    cache = tmp_path / "cache"
    put_volume(engine, "vol", dict([A]))
    export(engine, "vol", cache)
    before = (cache / KEY.slug / "manifest.json").read_bytes()
    put_volume(engine, "vol", dict([A, B]))
    (engine.volume_dir("vol") / KEY.slug / "wheels" / B[0]).write_bytes(b"damaged")
    with pytest.raises(BuildError, match="does not match the manifest"):
        export(engine, "vol", cache)
    assert cached(cache) == dict([A])  # no half file, no temporary file left
    assert (cache / KEY.slug / "manifest.json").read_bytes() == before


def test_an_import_sends_what_the_volume_lacks_and_refuses_a_damaged_wheel(
    tmp_path: Path,
) -> None:
    engine = SimEngine(tmp_path / "engine")
    cache = tmp_path / "cache"
    put_volume(engine, "ci", dict([A, B, C]), {"theirs": [A[0], B[0]], "other": [C[0]]})
    export(engine, "ci", cache)
    (cache / KEY.slug / "wheels" / B[0]).write_bytes(b"damaged in the cache")
    local = put_volume(engine, "fresh", dict([A]), {"mine": [A[0]]})
    lines: list[str] = []
    imported = import_dir(engine, wh("fresh"), cache, local, lines.append)
    assert imported is not None and imported.added == (C[0],)
    assert wheels_in(engine, "fresh") == dict([A, C])
    sets = volume_manifest(engine, "fresh")["sets"]
    assert set(sets) == {"mine", "other"}  # "theirs" needs b, which was refused
    assert any(
        f"wheel {B[0]} from {cache / KEY.slug} does not match its sha256" in x for x in lines
    )
    assert any(
        f"imported {cache / KEY.slug}: 1 wheels imported" in x and "1 refused" in x for x in lines
    ), lines
    with_wheels = [d for d, _ in engine.sent]
    assert with_wheels == ["/tmp/warpdrive-incoming"]  # one archive: manifest, b and c


def test_a_directory_without_this_platform_is_one_line(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path / "engine")
    lines: list[str] = []
    assert import_dir(engine, wh("fresh"), tmp_path / "empty", {}, lines.append) is None
    assert lines == [
        f"warpdrive: no wheelhouse for {KEY.slug} in {tmp_path / 'empty'} yet; building without it"
    ]
    assert engine.containers == 0


def test_a_directory_of_another_platform_is_a_warning(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path / "engine")
    other = PlatformKey("cp312", "cp312", "linux_x86_64", "glibc", "2.36", "debian", "12")
    where = tmp_path / "cache" / KEY.slug  # e.g. copied by hand under the wrong key
    (where / "wheels").mkdir(parents=True)
    manifest = {"platform_key": json.loads(other.to_json()), "wheels": {A[0]: sha(A[1])}}
    (where / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []
    assert import_dir(engine, wh("fresh"), tmp_path / "cache", {}, lines.append) is None
    assert f"holds the wheelhouse of {other.slug}" in lines[0] and lines[1].startswith("  fix:")


def test_an_import_onto_a_full_disk_names_the_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nox_warpdrive.runtime import disk, wheel_import

    engine = SimEngine(tmp_path / "engine")
    cache = tmp_path / "cache"
    put_volume(engine, "ci", dict([A, B]), {"theirs": [A[0], B[0]]})
    export(engine, "ci", cache)
    local = put_volume(engine, "fresh", dict([A]), {"mine": [A[0]]})
    volume_dir = str(engine.volume_dir("fresh"))

    def full(src: str, dest: str) -> str:
        raise OSError(28, "No space left on device", dest)

    monkeypatch.setattr(wheel_import, "copy_hashed", full)
    monkeypatch.setattr(disk.full_filesystem, "__defaults__", (volume_dir,))
    lines: list[str] = []
    with pytest.raises(BuildError) as found:
        import_dir(engine, wh("fresh"), cache, local, lines.append)
    # the simulated volume is a directory on this machine's disk: the engine's disk
    assert "the volume 'fresh' lives on it" in found.value.message, found.value.message
    assert found.value.fix is not None and "docker system df" in found.value.fix
    assert not any("FAILURE" in x for x in lines), lines
