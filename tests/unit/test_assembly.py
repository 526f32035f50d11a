"""Image assembly without an engine (assembly.py): the config a new layer's image gets,
its history, the `docker load` bundle, and the one config rule commit and load share."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from unit_support import tar_contents

from nox_warpdrive import assembly
from nox_warpdrive.plan import CommitSpec

PARENT_DIFF_IDS = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
#: docker's history: newest first; one row without a layer (Size 0)
PARENT_HISTORY = [
    {"Created": 1_700_000_200, "CreatedBy": "/bin/sh -c #(nop) CMD", "Size": 0},
    {"Created": 1_700_000_100, "CreatedBy": "apt-get install", "Size": 10, "Comment": "c"},
    {"Created": 1_600_000_000, "CreatedBy": "ADD rootfs", "Size": 100},
]
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_710_000_000))
PARENT: dict[str, Any] = {
    "Id": "sha256:parent",
    "Architecture": "arm64",
    "Variant": "v8",
    "Os": "linux",
    "Config": {
        "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
        "Cmd": ["/bin/sh"],
        "Entrypoint": ["/entry"],
        "Hostname": "abc",
        "Domainname": "",
        "Image": "sha256:older",
        "Labels": {"base": "yes"},
        "ExposedPorts": {"22/tcp": {}},
    },
    "RootFS": {"Type": "layers", "Layers": list(PARENT_DIFF_IDS)},
}
SPEC = CommitSpec(
    env=(("PATH", "/opt/app-root/venv/bin:/usr/bin:/bin"), ("NEW", "1")),
    cmd=("/opt/app-root/bin/start",),
    user="1001",
    workdir="/opt/app-root/src",
    exposed_ports=("8080/tcp",),
    labels={"io.warpdrive.kind": "deps"},
    message="nox-warpdrive deps layer",
)


def layer_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"print('hello')\n"
        info = tarfile.TarInfo("opt/app-root/venv/hello.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def written(bundle: assembly.Bundle) -> bytes:
    buf = io.BytesIO()
    bundle.write(buf)
    return buf.getvalue()


def bundle(layer: bytes | Path, **kw: Any) -> assembly.Bundle:
    kw.setdefault("created_by", "nox-warpdrive deps")
    return assembly.layer_bundle(PARENT, PARENT_HISTORY, layer, SPEC, created=NOW, **kw)


def test_bundle_names_the_parents_layers_and_carries_the_new_one(tmp_path: Path) -> None:
    layer = layer_bytes()
    path = tmp_path / "layer.tar"
    path.write_bytes(layer)
    made = bundle(path)
    files = tar_contents(written(made))
    name = made.image_id[7:] + ".json"
    assert set(files) == {"manifest.json", name, "new/layer.tar"}
    assert files["new/layer.tar"] == layer
    assert made.image_id == "sha256:" + hashlib.sha256(files[name]).hexdigest()
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": name,
            "RepoTags": None,
            "Layers": ["1" * 64 + "/layer.tar", "2" * 64 + "/layer.tar", "new/layer.tar"],
        }
    ]
    config = json.loads(files[name])
    new_diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [*PARENT_DIFF_IDS, new_diff]}
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v8")
    assert config["created"] == NOW
    assert config["history"] == [
        {"created": "2020-09-13T12:26:40Z", "created_by": "ADD rootfs"},
        {"created": "2023-11-14T22:15:00Z", "created_by": "apt-get install", "comment": "c"},
        {
            "created": "2023-11-14T22:16:40Z",
            "created_by": "/bin/sh -c #(nop) CMD",
            "empty_layer": True,
        },
        {"created": NOW, "created_by": "nox-warpdrive deps", "comment": SPEC.message},
    ]


def test_merged_config_follows_commit() -> None:
    cfg = assembly.merge_config(PARENT["Config"], SPEC)
    assert cfg["Env"] == ["PATH=/opt/app-root/venv/bin:/usr/bin:/bin", "LANG=C", "NEW=1"]
    assert cfg["Cmd"] == ["/opt/app-root/bin/start"]
    assert cfg["Entrypoint"] is None
    assert (cfg["User"], cfg["WorkingDir"]) == ("1001", "/opt/app-root/src")
    assert cfg["ExposedPorts"] == {"22/tcp": {}, "8080/tcp": {}}
    assert cfg["Labels"] == {"base": "yes", "io.warpdrive.kind": "deps"}
    assert not {"Hostname", "Domainname", "Image"} & set(cfg)


def test_commit_and_load_apply_the_same_changes() -> None:
    changes = assembly.config_changes(SPEC)
    merged = assembly.merge_config({}, SPEC)
    for key, value in changes.items():
        assert merged[key] == value, key
    assert changes["Entrypoint"] is None  # both: the command is the whole command line
    assert assembly.config_changes(CommitSpec()) == {}


def test_bytes_and_file_make_the_same_bundle(tmp_path: Path) -> None:
    layer = layer_bytes()
    path = tmp_path / "layer.tar"
    path.write_bytes(layer)
    a, b = bundle(path), bundle(layer)
    assert a.image_id == b.image_id
    assert written(a) == written(b)


def test_default_created_by_is_the_app_layer() -> None:
    made = assembly.layer_bundle(PARENT, PARENT_HISTORY, layer_bytes(), CommitSpec(), created=NOW)
    assert json.loads(made.config)["history"][-1]["created_by"] == "nox-warpdrive app layer"


def test_a_history_that_does_not_match_the_layers_is_left_out() -> None:
    made = assembly.layer_bundle(
        PARENT, PARENT_HISTORY[1:2], layer_bytes(), SPEC, created=NOW, created_by="x"
    )
    assert [h["created_by"] for h in json.loads(made.config)["history"]] == ["x"]


def test_under_layers_are_carried_or_named() -> None:
    static = layer_bytes()
    named = "sha256:" + "9" * 64
    made = bundle(layer_bytes(), under=[("static", static), ("named", named)])
    manifest = json.loads(made.manifest)[0]["Layers"]
    assert manifest[2:] == ["under0/layer.tar", "9" * 64 + "/layer.tar", "new/layer.tar"]
    config = json.loads(made.config)
    assert config["rootfs"]["diff_ids"][2:4] == [
        "sha256:" + hashlib.sha256(static).hexdigest(),
        named,
    ]
    assert [h["created_by"] for h in config["history"][-3:]] == [
        "static",
        "named",
        "nox-warpdrive deps",
    ]
    files = tar_contents(written(made))
    assert files["under0/layer.tar"] == static and "9" * 64 + "/layer.tar" not in files


def test_sha256_of_bytes_and_of_a_file_agree(tmp_path: Path) -> None:
    data = b"x" * (3 << 20)
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    assert assembly.sha256_of(data) == assembly.sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_a_file_hashed_as_it_was_written_is_not_read_again(tmp_path: Path) -> None:
    """The digest given when a file was written is taken while the file is the same (the
    engine reads an export's layer and hashes it on the way); a file written again is
    hashed afresh."""
    path = tmp_path / "layer.tar"
    path.write_bytes(b"layer bytes")
    assembly.written_with_digest(path, "given")
    assert assembly.sha256_of(path) == "given"  # not read: the given digest
    path.write_bytes(b"other bytes, another size")
    assert assembly.sha256_of(path) == hashlib.sha256(b"other bytes, another size").hexdigest()
