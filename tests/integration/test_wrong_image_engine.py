"""Never a silent wrong image, on the real engine: an image whose config is not the plan's
is an error naming the field, and the image is removed (no tag could have moved)."""

from __future__ import annotations

import pytest
from conftest import BASE_IMAGE

from nox_warpdrive import assembly
from nox_warpdrive.engine import Engine
from nox_warpdrive.engine.checked import verified
from nox_warpdrive.errors import WrongImage
from nox_warpdrive.plan import CommitSpec
from nox_warpdrive.tars import tar_files


def test_an_image_that_is_not_the_plan_is_refused_and_removed(engine: Engine) -> None:
    spec = CommitSpec(user="1001", cmd=("warpdrive-start",), labels={"io.warpdrive.t": "1"})
    layer = tar_files({"opt/wrong-image-test.txt": b"x\n"})
    image_id = engine.append_layer(BASE_IMAGE, layer, spec)  # checked already: it is right
    try:
        config = engine.inspect_raw(image_id)["Config"]
        assert assembly.config_mismatch(assembly.config_changes(spec), config) is None
        # what an engine that dropped the user would have made, as the check sees it
        wanted = assembly.config_changes(CommitSpec(user="0:0"))
        with pytest.raises(WrongImage, match=r"User: wanted '0:0', the image has '1001'"):
            verified(engine, image_id, wanted, "test image")  # type: ignore[arg-type]
        assert engine.image(image_id) is None, "the wrong image was left behind"
    finally:
        engine.remove_image(image_id)
