"""The wheelhouse image (wheelhouse/image.py) on a simulated engine and registry: its tag,
a push that carries only new wheels on top of the previous image (squashed past the
depth bound), a pull that seeds only what the volume lacks, checked against the sha256s
and merged keeping the volume's own sets; and each way there is nothing to pull from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from transfer_support import (
    KEY,
    SimEngine,
    image_files,
    layer_files,
    put_volume,
    sha,
    volume_manifest,
    wheel,
    wheels_in,
)

from nox_warpdrive.errors import ConfigError, EngineError
from nox_warpdrive.wheelhouse import image as wheelhouse_image
from nox_warpdrive.wheelhouse.image import (
    MAX_LAYERS,
    image_tag,
    plan_push,
    pull_seed,
    push_wheelhouse,
)
from nox_warpdrive.wheelhouse.transfer import Wheelhouse, shipped_manifest

REF = "127.0.0.1:5000/team/wheelhouse"
TAG = f"{REF}:{KEY.slug}"
A, B, C = wheel("a"), wheel("b"), wheel("c")


def wh(volume: str) -> Wheelhouse:
    return Wheelhouse(volume, KEY, "sha256:builder")


def push(engine: SimEngine, volume: str, lines: list[str] | None = None) -> str:
    manifest = volume_manifest(engine, volume)
    shown = [] if lines is None else lines
    return push_wheelhouse(engine, wh(volume), REF, manifest, shown.append)


# -- tags ------------------------------------------------------------------------------


def test_the_tag_names_the_platform_key() -> None:
    assert image_tag("reg:5000/team/wh", KEY) == f"reg:5000/team/wh:{KEY.slug}"
    assert image_tag("reg:5000/team/wh:main", KEY) == f"reg:5000/team/wh:main-{KEY.slug}"
    long = image_tag("reg/wh:" + "x" * 120, KEY)
    assert len(long.split(":", 1)[1]) == 128
    assert long != image_tag("reg/wh:" + "x" * 119 + "y", KEY)
    with pytest.raises(ConfigError, match="digest"):
        image_tag("reg/wh@sha256:" + "0" * 64, KEY)


# -- pushes ----------------------------------------------------------------------------


def test_a_first_push_is_one_layer_with_the_wheels_and_the_manifest_only(
    tmp_path: Path,
) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "vol", dict([A, B]), {"set1": [A[0], B[0]]})
    lines: list[str] = []
    push(engine, "vol", lines)
    assert engine.pushed == [TAG]
    image = engine.images[TAG]
    assert image.labels["io.warpdrive.kind"] == "wheelhouse"
    assert image.labels["io.warpdrive.platform-key"] == KEY.slug
    assert json.loads(image.labels["io.warpdrive.wheelhouse.wheels"]) == {
        A[0]: sha(A[1]),
        B[0]: sha(B[1]),
    }
    config = engine.configs[image.id]["config"]
    assert not config.get("Cmd") and not config.get("Entrypoint")  # nothing to run
    files = image_files(engine, TAG)
    assert set(files) == {
        "wheelhouse/manifest.json",
        f"wheelhouse/wheels/{A[0]}",
        f"wheelhouse/wheels/{B[0]}",
    }
    shipped = json.loads(files["wheelhouse/manifest.json"])
    assert set(shipped) == {"format", "platform_key", "wheels", "sets", "built_from"}
    assert "tools" not in shipped and "stats" not in shipped
    assert list(shipped["sets"]) == ["set1"]
    assert any(f"wheelhouse image {TAG}: 2 wheels in one layer" in x for x in lines), lines


def test_a_push_adds_a_layer_with_only_the_new_wheels(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "first", dict([A, B]), {"set1": [A[0], B[0]]})
    push(engine, "first")
    first = engine.images[TAG]
    put_volume(engine, "second", dict([A, B, C]), {"set2": [A[0], C[0]]})
    push(engine, "second")
    second = engine.images[TAG]
    assert second.diff_ids[:1] == first.diff_ids and len(second.diff_ids) == 2
    assert layer_files(engine, second.diff_ids[1]) == [
        "wheelhouse/manifest.json",
        f"wheelhouse/wheels/{C[0]}",
    ]
    shipped = json.loads(image_files(engine, TAG)["wheelhouse/manifest.json"])
    assert set(shipped["sets"]) == {"set1", "set2"}  # the earlier pipeline's set is kept
    assert set(shipped["wheels"]) == {A[0], B[0], C[0]}
    assert engine.removed == [first.id]  # the previous image is not kept here


def test_nothing_new_pushes_nothing(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "vol", dict([A]), {"set1": [A[0]]})
    push(engine, "vol")
    lines: list[str] = []
    push(engine, "vol", lines)
    assert engine.pushed == [TAG]
    assert any("already holds this wheelhouse" in line for line in lines), lines


def test_a_rebuilt_wheel_of_the_same_name_is_carried_again(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "one", dict([A]), {"s": [A[0]]})
    push(engine, "one")
    rebuilt = (A[0], b"the same wheel, compiled elsewhere")
    put_volume(engine, "two", dict([rebuilt]), {"t": [A[0]]})
    push(engine, "two")
    files = image_files(engine, TAG)
    assert files[f"wheelhouse/wheels/{A[0]}"] == rebuilt[1]
    shipped = json.loads(files["wheelhouse/manifest.json"])
    assert shipped["wheels"][A[0]] == sha(rebuilt[1])
    assert set(shipped["sets"]) == {"t"}  # "s" resolved to the other file


def test_past_the_depth_bound_a_push_squashes(tmp_path: Path) -> None:
    local = shipped_manifest({"wheels": {A[0]: sha(A[1])}, "platform_key": {}})
    previous = shipped_manifest({"wheels": {B[0]: sha(B[1])}})
    layered = plan_push(local, previous, MAX_LAYERS - 1)
    assert layered is not None and not layered.squash and layered.new == (A[0],)
    squashed = plan_push(local, previous, MAX_LAYERS)
    assert squashed is not None and squashed.squash
    assert squashed.new == (A[0],) and set(squashed.manifest["wheels"]) == {A[0]}
    engine = SimEngine(tmp_path)
    wheels: dict[str, bytes] = {}
    for i in range(MAX_LAYERS + 1):
        wheels.update([wheel(f"w{i}")])
        put_volume(engine, "vol", wheels)
        push(engine, "vol")
    assert engine.images[TAG].layers == 1  # squashed at the 11th push
    assert len(json.loads(engine.images[TAG].labels["io.warpdrive.wheelhouse.wheels"])) == 11


def test_a_damaged_wheel_in_the_volume_is_never_pushed(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "vol", dict([A, B]))
    (engine.volume_dir("vol") / KEY.slug / "wheels" / B[0]).write_bytes(b"damaged")
    with pytest.raises(Exception, match=f"wheel {B[0]} in volume 'vol' does not match"):
        push(engine, "vol")
    assert engine.pushed == [] and TAG not in engine.registry


def test_a_push_never_replaces_an_image_that_is_not_a_wheelhouse(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    app = dataclasses.replace(
        engine.images["builder"], id="sha256:app", labels={"io.warpdrive.kind": "app"}
    )
    engine.images[app.id] = app
    engine.registry[TAG] = app.id
    put_volume(engine, "vol", dict([A]))
    with pytest.raises(ConfigError) as info:
        push(engine, "vol")
    assert (
        "is not a wheelhouse image" in info.value.message
        and "would replace it" in info.value.message
    )
    assert info.value.fix and "another REF" in info.value.fix
    assert engine.registry[TAG] == app.id


def test_a_push_to_an_unreachable_registry_is_an_error_naming_it(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    engine.unreachable = True
    put_volume(engine, "vol", dict([A]))
    with pytest.raises(EngineError) as info:
        push(engine, "vol")
    assert f"cannot reach the wheelhouse image {TAG}" in info.value.message
    assert "unchanged" in info.value.message and info.value.fix
    assert wheels_in(engine, "vol") == dict([A])


# -- pulls -----------------------------------------------------------------------------


def test_a_pull_seeds_only_what_the_volume_lacks_and_keeps_its_sets(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "ci", dict([A, B, C]), {"theirs": [A[0], C[0]]})
    push(engine, "ci")
    local = put_volume(engine, "fresh", dict([A]), {"mine": [A[0]]})
    lines: list[str] = []
    imported = pull_seed(engine, wh("fresh"), REF, local, lines.append)
    assert imported is not None and sorted(imported.added) == [B[0], C[0]]
    assert wheels_in(engine, "fresh") == dict([A, B, C])
    merged = volume_manifest(engine, "fresh")
    assert set(merged["sets"]) == {"mine", "theirs"}
    assert merged["tools"] == local["tools"]  # the volume's own, not the image's
    assert set(merged["stats"]) == {A[0], B[0], C[0]}
    assert any(f"wheelhouse image {TAG}: 2 wheels imported" in line for line in lines), lines
    # only the two wheels the volume lacked were sent, one by one
    assert [d for d, _ in engine.sent] == [
        "/tmp/warpdrive-incoming",
        "/tmp/warpdrive-incoming/wheels",
        "/tmp/warpdrive-incoming/wheels",
    ]


def test_a_pulled_wheel_that_does_not_match_its_sha256_is_refused(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "ci", dict([A, B]), {"theirs": [A[0], B[0]]})
    push(engine, "ci")
    image_id = engine.registry[TAG]
    engine._fs(image_id)  # materialize, then damage the image's copy of B
    (engine._fs(image_id) / "wheelhouse" / "wheels" / B[0]).write_bytes(b"tampered")
    lines: list[str] = []
    imported = pull_seed(engine, wh("fresh"), REF, {}, lines.append)
    assert imported is not None and imported.added == (A[0],)
    assert [r[0] for r in imported.refused] == [B[0]]
    assert wheels_in(engine, "fresh") == dict([A])
    assert "theirs" not in volume_manifest(engine, "fresh")["sets"]  # B is missing
    assert any(f"wheel {B[0]} from {TAG} does not match its sha256" in x for x in lines), lines
    assert any("1 refused" in line for line in lines), lines


def test_a_wheel_of_the_same_name_in_the_volume_wins(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    put_volume(engine, "ci", dict([A]), {"theirs": [A[0]]})
    push(engine, "ci")
    mine = (A[0], b"compiled here")
    local = put_volume(engine, "fresh", dict([mine]), {"mine": [A[0]]})
    pull_seed(engine, wh("fresh"), REF, local, lambda line: None)
    assert wheels_in(engine, "fresh") == dict([mine])
    assert set(volume_manifest(engine, "fresh")["sets"]) == {"mine"}


def test_no_image_yet_is_one_line(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    lines: list[str] = []
    assert pull_seed(engine, wh("fresh"), REF, {}, lines.append) is None
    assert lines == [
        f"warpdrive: no wheelhouse image at {TAG} yet (a first run); building without it"
    ]


def test_an_unreachable_registry_is_a_warning_with_its_fix(tmp_path: Path) -> None:
    engine = SimEngine(tmp_path)
    engine.unreachable = True
    lines: list[str] = []
    assert pull_seed(engine, wh("fresh"), REF, {}, lines.append) is None
    assert lines[0].startswith(f"warpdrive: warning: cannot pull the wheelhouse image {TAG}")
    assert lines[0].endswith("building without it") and lines[1].startswith("  fix: ")


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        (
            {"io.warpdrive.kind": "app"},
            "is not a wheelhouse image (an image nox-warpdrive built as 'app')",
        ),
        ({}, "is not a wheelhouse image (not nox-warpdrive's)"),
        (
            {"io.warpdrive.kind": "wheelhouse", "io.warpdrive.platform-key": "cp313-x"},
            f"holds the wheelhouse of platform 'cp313-x', not of this builder's {KEY.slug}",
        ),
    ],
)
def test_an_image_that_cannot_seed_is_a_warning_naming_it(
    tmp_path: Path, labels: dict[str, str], says: str
) -> None:
    engine = SimEngine(tmp_path)
    other = dataclasses.replace(engine.images["builder"], id="sha256:other", labels=labels)
    engine.images[other.id] = other
    engine.registry[TAG] = other.id
    lines: list[str] = []
    assert pull_seed(engine, wh("fresh"), REF, {}, lines.append) is None
    assert lines[0] == f"warpdrive: warning: {TAG} {says}; building without it", lines
    assert "fix:" in lines[1] and "--push" in lines[1]
    assert engine.containers == 0 and not wheels_in(engine, "fresh")


def test_the_module_says_what_the_image_holds() -> None:
    assert wheelhouse_image.IMAGE_DIR == "/wheelhouse"
