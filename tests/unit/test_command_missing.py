"""A command the image lacks is the image's (or the config's) fault, never the engine's:
the engine answered, so no message may tell the user to check that it runs."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from nox_warpdrive.engine.base import foreign_errors, missing_command
from nox_warpdrive.engine.dockerpy import _import_docker, _start
from nox_warpdrive.errors import CommandMissing, EngineError
from nox_warpdrive.plan import Step

ON_PATH = (
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to "
    'start container process: exec: "python3.12": executable file not found in $PATH: unknown'
)
BY_PATH = (
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to "
    'start container process: exec: "/opt/py/bin/python": stat /opt/py/bin/python: no such '
    "file or directory: unknown"
)


_import_docker()  # dockerpy imports docker-py only when a container must run


def _api_error(text: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = 400
    return docker.errors.APIError("400 Client Error", response, explanation=text)


def test_missing_command_reads_both_runc_forms() -> None:
    assert missing_command(ON_PATH) == "python3.12"
    assert missing_command(BY_PATH) == "/opt/py/bin/python"
    assert missing_command("HTTP 500: no space left on device") is None


class _Container:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def start(self) -> None:
        raise self.error


def test_a_step_whose_command_is_missing_names_it_and_the_image() -> None:
    step = Step(name="probe", image="app-base:1", command=("python3.12", "-c", "1"))
    with pytest.raises(CommandMissing) as info:
        _start(_Container(_api_error(ON_PATH)), step)
    text = str(info.value)
    assert "image app-base:1 has no command 'python3.12'" in text, text
    assert "runs and answers" not in text and "not running" not in text
    assert isinstance(info.value.__cause__, docker.errors.APIError)


def test_other_start_failures_pass_unchanged() -> None:
    step = Step(name="probe", image="app-base:1", command=("python3", "-c", "1"))
    error = _api_error("driver failed programming external connectivity")
    with pytest.raises(docker.errors.APIError):
        _start(_Container(error), step)


def test_the_one_translation_place_never_blames_the_engine_for_it() -> None:
    with pytest.raises(CommandMissing) as info, foreign_errors("running the deps step"):
        raise _api_error(ON_PATH)
    assert "runs and answers" not in str(info.value)
    with pytest.raises(EngineError) as other, foreign_errors("running the deps step"):
        raise _api_error("something else broke")
    assert "runs and answers" in str(other.value)  # a real engine failure still says so
