"""Podman through its Docker API: the engine kind from ``/version``, the ``changes`` a
commit carries, label filters in the map form, and images made the Podman way (a created
container, its files put, a commit with ``changes``) checked against the plan. The
backend runs against a fake docker-py client that answers as Podman 4.3 does: it ignores
a commit's config body and keeps only what ``changes`` says."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nox_warpdrive import assembly
from nox_warpdrive.engine import DockerEngine
from nox_warpdrive.engine.checked import verified
from nox_warpdrive.engine.podman import commit_changes, has_labels, is_podman, label_filters
from nox_warpdrive.errors import BuildError, EngineError, LayerRefused, WrongImage
from nox_warpdrive.plan import CommitSpec, Step
from nox_warpdrive.tars import tar_files

PODMAN_VERSION = {
    "Version": "4.3.1",
    "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}, {"Name": "Conmon"}],
}
DOCKER_VERSION = {"Version": "20.10.24", "Components": [{"Name": "Engine"}, {"Name": "runc"}]}
PARENT_CONFIG = {"Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "Cmd": ["python3"], "Labels": {"b": "1"}}
SPEC = CommitSpec(
    env=(("PATH", "/opt/venv/bin:/usr/bin"),),
    cmd=("warpdrive-start",),
    user="1001",
    workdir="/opt/app-root/src",
    exposed_ports=("8080/tcp",),
    labels={"io.warpdrive.layers": '[["code","k","sha256:1"]]', "title": "a b"},
)


def test_the_engine_kind_comes_from_the_version_components() -> None:
    assert is_podman(PODMAN_VERSION)
    assert not is_podman(DOCKER_VERSION)
    assert not is_podman({})  # an old Docker without Components


def test_label_filters_use_the_map_form_and_results_are_checked() -> None:
    assert json.loads(label_filters({"a": "1", "b": "x=y"})) == {
        "label": {"a=1": True, "b=x=y": True}
    }
    assert has_labels({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "2"})
    assert not has_labels({"a": "1"}, {"a": "1", "b": "2"})


def test_commit_changes_say_the_whole_config_one_instruction_a_line() -> None:
    conf = assembly.merge_config(PARENT_CONFIG, SPEC)
    lines = commit_changes(conf).split("\n")
    assert lines[:4] == [
        "ENTRYPOINT []",
        'CMD ["warpdrive-start"]',
        "USER 1001",
        "WORKDIR /opt/app-root/src",
    ]
    assert "ENV PATH=/opt/venv/bin:/usr/bin" in lines and "ENV LANG=C.UTF-8" in lines
    assert "EXPOSE 8080/tcp" in lines
    assert 'LABEL io.warpdrive.layers=[["code","k","sha256:1"]]' in lines
    assert "LABEL title=a b" in lines and "LABEL b=1" in lines


def test_a_line_break_in_a_value_is_refused_not_read_as_an_instruction() -> None:
    with pytest.raises(BuildError, match="line break"):
        commit_changes({"Labels": {"x": "a\nUSER 0"}})


def test_config_mismatch_names_the_first_wrong_field() -> None:
    wanted = assembly.merge_config(PARENT_CONFIG, SPEC)
    right = {**wanted, "Env": [*wanted["Env"], "container=podman"], "Entrypoint": []}
    assert assembly.config_mismatch(wanted, right) is None
    for field, wrong, said in [
        ("User", "0:0", "User: wanted '1001'"),
        ("Cmd", ["true"], "Cmd: wanted ['warpdrive-start']"),
        ("WorkingDir", "/", "WorkingDir"),
        ("Env", ["PATH=/usr/bin"], "Env PATH: wanted '/opt/venv/bin:/usr/bin'"),
        ("ExposedPorts", None, "ExposedPorts: wanted 8080/tcp"),
        ("Labels", {"b": "1"}, "Labels io.warpdrive.layers"),
        ("Entrypoint", ["sh"], "Entrypoint"),
    ]:
        said_now = assembly.config_mismatch(wanted, {**right, field: wrong})
        assert said_now is not None and said_now.startswith(said), (field, said_now)


# -- the backend, against a fake docker-py client that behaves like Podman 4.3 --------


class FakeContainer:
    def __init__(self, client: FakeClient, image: str, kwargs: dict[str, Any]) -> None:
        self.client, self.image, self.kwargs = client, image, kwargs
        self.id = f"c{len(client.containers.made)}"
        self.files: list[bytes] = []
        self.removed = False

    def put_archive(self, path: str, data: Any) -> bool:
        self.files.append(data if isinstance(data, bytes) else data.read())
        return self.client.put_ok

    def remove(self, **kwargs: Any) -> None:
        self.removed = True


class FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.made: list[FakeContainer] = []

    def create(self, image: str, **kwargs: Any) -> FakeContainer:
        made = FakeContainer(self.client, image, kwargs)
        self.made.append(made)
        return made


class FakeApi:
    """The parts of docker-py's APIClient the backend calls; a commit keeps the
    container's config (its Cmd ["true"], no user) plus what ``changes`` says, as
    Podman 4.3 does, and ignores the body."""

    base_url = "http+docker://localhost"

    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.images: dict[str, dict[str, Any]] = {
            "sha256:parent": {"Id": "sha256:parent", "Config": dict(PARENT_CONFIG)}
        }
        self.commits: list[dict[str, Any]] = []
        self.removed: list[str] = []

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return self.images[ref if ref.startswith("sha256:") else "sha256:" + ref]

    def remove_image(self, ref: str, **kwargs: Any) -> None:
        self.removed.append(ref)

    def remove_container(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _url(self, path: str) -> str:
        return path

    def _post_json(self, url: str, data: Any, params: dict[str, Any]) -> dict[str, Any]:
        assert url == "/commit" and data == {}
        self.commits.append(params)
        config: dict[str, Any] = {
            "Env": [*PARENT_CONFIG["Env"], "container=podman"],
            "Cmd": ["true"],
            "Labels": dict(PARENT_CONFIG["Labels"]),
        }
        for line in params["changes"].split("\n"):
            word, _, rest = line.partition(" ")
            if word in self.client.drop:
                continue
            if word == "CMD":
                config["Cmd"] = json.loads(rest)
            elif word == "ENTRYPOINT":
                config["Entrypoint"] = json.loads(rest)
            elif word == "USER":
                config["User"] = rest
            elif word == "WORKDIR":
                config["WorkingDir"] = rest
            elif word == "ENV":
                name = rest.split("=", 1)[0]
                config["Env"] = [e for e in config["Env"] if not e.startswith(name + "=")]
                config["Env"].append(rest)
            elif word == "EXPOSE":
                config.setdefault("ExposedPorts", {})[rest] = {}
            elif word == "LABEL":
                key, _, value = rest.partition("=")
                config["Labels"][key] = value
        image_id = f"sha256:new{len(self.commits)}"
        self.images[image_id] = {"Id": image_id, "Config": config}
        return {"Id": image_id[7:]}  # Podman answers without the "sha256:"

    def _result(self, response: Any, json: bool = False) -> Any:
        return response


class FakeClient:
    def __init__(self, version: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
        self.answer, self.drop, self.put_ok = version, drop, True
        self.api = FakeApi(self)
        self.containers = FakeContainers(self)

    def version(self) -> dict[str, Any]:
        return self.answer


def test_on_podman_a_layer_goes_into_a_created_container_committed_with_changes() -> None:
    client = FakeClient(PODMAN_VERSION)
    engine = DockerEngine(client)
    layer, static = tar_files({"opt/app/x.py": b"x = 1\n"}), tar_files({"s/a.css": b"a"})
    image_id = engine.append_layer("sha256:parent", layer, SPEC, under=[("static", static)])
    assert image_id == "sha256:new1"  # as the engine names it, from the read-back
    (box,) = client.containers.made
    assert box.image == "sha256:parent" and box.files == [static, layer] and box.removed
    config = client.api.images[image_id]["Config"]
    assert config["User"] == "1001" and config["Cmd"] == ["warpdrive-start"]
    assert config["Labels"]["io.warpdrive.layers"] == '[["code","k","sha256:1"]]'


def test_on_podman_a_layer_named_by_diff_id_is_refused_so_callers_send_the_tree() -> None:
    engine = DockerEngine(FakeClient(PODMAN_VERSION))
    with pytest.raises(LayerRefused, match="named by diff ID") as raised:
        engine.append_layer("sha256:parent", b"", SPEC, under=[("named", "sha256:" + "9" * 64)])
    assert raised.value.fix is not None and "runs and answered" in raised.value.fix


def test_an_engine_that_drops_a_field_is_an_error_and_the_image_is_removed() -> None:
    client = FakeClient(PODMAN_VERSION, drop=("USER",))
    engine = DockerEngine(client)
    with pytest.raises(WrongImage, match=r"User: wanted '1001'"):
        engine.append_layer("sha256:parent", tar_files({"a": b"1"}), SPEC)
    assert client.api.removed == ["new1"]


def test_a_wrong_image_that_cannot_be_removed_is_still_said_as_wrong() -> None:
    """The removal's failure is part of the message, not the error raised instead."""

    class Stuck:
        def _inspect(self, ref: str) -> dict[str, Any] | None:
            return {"Id": ref, "Config": {"User": "0:0"}}

        def remove_image(self, image_id: str) -> None:
            raise EngineError("image is in use by a container")

    with pytest.raises(WrongImage) as raised:
        verified(Stuck(), "sha256:" + "7" * 64, {"User": "1001"}, "app layer")
    message = raised.value.message
    assert "User: wanted '1001'" in message
    assert "could not be removed (image is in use by a container)" in message


def test_a_step_container_on_podman_is_committed_with_changes() -> None:
    client = FakeClient(PODMAN_VERSION)
    engine = DockerEngine(client)
    box = client.containers.create("sha256:parent")
    spec = CommitSpec(user="1001", labels={"io.warpdrive.kind": "deps"})
    step = Step(name="deps", image="sha256:parent", command=("sh", "-c", "x"), commit=spec)
    image_id = engine._commit(box, step)
    config = client.api.images[image_id]["Config"]
    assert config["Cmd"] == ["sh", "-c", "x"]  # the step's, as on Docker
    assert config["Labels"]["io.warpdrive.kind"] == "deps" and config["User"] == "1001"


def test_doctor_names_podman_as_podman() -> None:
    from nox_warpdrive.engine.about import about_of

    assert about_of({}, PODMAN_VERSION).kind == "Podman"
    assert about_of({}, DOCKER_VERSION).kind == "Docker"
