"""Wheel, the host's record of a manifest entry: read and written back at the JSON
boundary, it must give exactly what the builder (runtime/build_wheels.py) wrote, so that
volumes, CI cache directories and wheelhouse images made by earlier versions are still
recognised, and the labels and shipped manifests made from them do not change."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nox_warpdrive.runtime import common, protocol, publish
from nox_warpdrive.runtime.wheel_import import set_fits
from nox_warpdrive.wheelhouse.build import _ready
from nox_warpdrive.wheelhouse.transfer import manifest_bytes, shipped_manifest, wheels_of
from nox_warpdrive.wheelhouse.wheels import Wheel, wheel_ids, wheels_from_manifest

FILES = {
    "Django-5.0.6-py3-none-any.whl": b"django wheel bytes" * 40,
    "asgiref-3.8.1-py3-none-any.whl": b"asgiref",
    "psycopg2-2.9.9-cp312-cp312-linux_x86_64.whl": b"built here" * 7,
    "sqlparse-0.5.0-py3-none-any.whl": b"",
}


def recorded_manifest(tmp_path: Path) -> dict[str, Any]:
    """A manifest as the builder's own ``record`` writes it (two requirement sets)."""
    root = tmp_path / "key"
    (root / "wheels").mkdir(parents=True)
    staging = root / "staging-1"
    staging.mkdir()
    for name, data in FILES.items():
        (staging / name).write_bytes(data)
    plan = {
        "python": sys.executable,
        "requirements_hash": "first",
        "key": "k",
        "platform_key": {"interpreter": "cp312", "abi": "cp312"},
    }
    ctx = common.RunState(plan, str(root), str(staging))
    ctx.built_from = {"psycopg2-2.9.9-cp312-cp312-linux_x86_64.whl": "f" * 64}
    publish.record(ctx, sorted(FILES)[:3], None)
    ctx.plan["requirements_hash"] = "second"
    manifest = publish.record(ctx, sorted(FILES), None)
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk == manifest
    assert isinstance(manifest, dict)
    return manifest


#: a set as a builder from before sizes were recorded wrote it
OLD_SET: dict[str, Any] = {
    "built_at": "2026-01-01T00:00:00Z",
    "resolved": [
        {
            "file": "flask-3.0.3-py3-none-any.whl",
            "name": "flask",
            "version": "3.0.3",
            "sha256": "a" * 64,
        },
        {
            "file": "click-8.1.7-py3-none-any.whl",
            "name": "click",
            "version": "8.1.7",
            "sha256": "b" * 64,
        },
    ],
}


def entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for s in manifest["sets"].values() for e in s["resolved"]] + manifest["resolved"]


def test_round_trip_is_identical_on_a_recorded_manifest(tmp_path: Path) -> None:
    manifest = recorded_manifest(tmp_path)
    assert len(entries(manifest)) == 3 + 4 + 4
    for entry in entries(manifest):
        wheel = Wheel.from_manifest(entry)
        assert wheel is not None
        assert wheel.to_manifest() == entry
        # the same bytes, as every manifest is written (keys sorted)
        assert json.dumps(wheel.to_manifest(), sort_keys=True) == json.dumps(entry, sort_keys=True)
        assert wheel.size == len(FILES[wheel.filename])


def test_round_trip_is_identical_without_sizes() -> None:
    wheels = wheels_from_manifest(OLD_SET["resolved"])
    assert wheels is not None and all(w.size is None for w in wheels)
    assert json.dumps([w.to_manifest() for w in wheels]) == json.dumps(OLD_SET["resolved"])


def old_shipped_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """shipped_manifest as it was written before Wheel, on dicts (the reference)."""
    fields = ("file", "name", "version", "sha256", "size")
    wheels = wheels_of(manifest)
    sets = {}
    for digest, entry in manifest["sets"].items():
        shipped = {
            "resolved": [{k: w[k] for k in fields if k in w} for w in entry["resolved"]],
            "built_at": str(entry.get("built_at") or ""),
        }
        if set_fits(shipped, wheels):
            sets[digest] = shipped
    built = manifest.get("built_from") or {}
    return {
        "format": 1,
        "platform_key": manifest.get("platform_key") or {},
        "wheels": wheels,
        "sets": sets,
        "built_from": {f: s for f, s in built.items() if f in wheels and isinstance(s, str)},
    }


def test_shipped_manifest_bytes_are_unchanged(tmp_path: Path) -> None:
    manifest = recorded_manifest(tmp_path)
    manifest["sets"]["old"] = {
        **OLD_SET,
        "resolved": [
            {"file": f, "name": f.split("-")[0], "version": "1", "sha256": manifest["wheels"][f]}
            for f in sorted(FILES)[:2]
        ],
    }
    shipped = manifest_bytes(shipped_manifest(manifest))
    assert shipped == manifest_bytes(old_shipped_manifest(manifest))
    assert set(json.loads(shipped)["sets"]) == {"first", "second", "old"}
    # shipping what was shipped changes nothing (a pull, then a push)
    again = manifest_bytes(shipped_manifest(json.loads(shipped)))
    assert again == shipped


def test_ids_and_the_deps_label_are_unchanged(tmp_path: Path) -> None:
    manifest = recorded_manifest(tmp_path)
    resolved = manifest["sets"]["second"]["resolved"]
    wheels = wheels_from_manifest(resolved)
    assert wheels is not None
    old_ids = sorted(f"{w['file']}@{w['sha256'][:16]}" for w in resolved)
    assert wheel_ids(reversed(wheels)) == old_ids
    assert json.dumps(wheel_ids(wheels), separators=(",", ":")) == json.dumps(
        old_ids, separators=(",", ":")
    )


def test_the_ready_line_reads_as_the_builder_wrote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, data in FILES.items():
        (wheels / name).write_bytes(data)
    publish.announce_ready(str(wheels), list(FILES), str(tmp_path / "none.json"), None, "")
    (line,) = capsys.readouterr().out.splitlines()
    written = json.loads(line[len(protocol.READY_PREFIX) :])["resolved"]
    parsed = _ready(line)
    assert parsed is not None
    assert [w.to_manifest() for w in parsed[0]] == written


@pytest.mark.parametrize(
    "entry",
    [
        None,
        "flask-3.0.3-py3-none-any.whl",
        {"file": "a.whl", "sha256": "a" * 64},  # no name, no version
        {**OLD_SET["resolved"][0], "sha256": None},
        {**OLD_SET["resolved"][0], "size": "12"},
        {**OLD_SET["resolved"][0], "size": True},
        {**OLD_SET["resolved"][0], "size": None},
    ],
)
def test_a_malformed_entry_is_no_wheel(entry: object) -> None:
    assert Wheel.from_manifest(entry) is None
    assert wheels_from_manifest([OLD_SET["resolved"][1], entry]) is None


def test_a_wheel_is_frozen() -> None:
    wheel = Wheel("a-1-py3-none-any.whl", "a", "1", "c" * 64, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        wheel.size = 4  # type: ignore[misc]
    assert wheel.id == "a-1-py3-none-any.whl@" + "c" * 16
