"""A static file edited in a Django app (Django's default storage): only that file is
copied again into the collected files, no container runs collectstatic, and the image is
byte for byte the one a full collectstatic of the same source makes."""

from __future__ import annotations

import os
import shutil
from typing import Any

from conftest import App, output, write_django
from pkgindex import Index
from test_build import image, wheelhouse

from nox_warpdrive.build import static_cache
from nox_warpdrive.engine import Engine

CSS = "/opt/app-root/src/collected/shop/site.css"


def cat(engine: Engine, ref: str, path: str) -> str:
    return str(output(engine.client, ref, ["cat", path]).decode())


def test_an_edited_static_file_is_recollected_alone_and_the_result_is_a_full_runs(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    (app.root / "shop" / "static" / "shop" / "other.js").write_text("var a = 1;\n")
    wheelhouse(app, engine)
    lines: list[str] = []
    first = image(app, engine, lines, no_index=True)
    assert "manage.py collectstatic" in "\n".join(lines)

    # the edit: re-collected without a container, the new bytes served from the image
    write_django(app.root, css="body { color: blue }\n")
    lines.clear()
    second = image(app, engine, lines, no_index=True)
    text = "\n".join(lines)
    assert "manage.py collectstatic" not in text, text
    assert "1 static file(s) changed (shop/static/shop/site.css); re-collected only those" in text
    assert cat(engine, second.image_id, CSS) == "body { color: blue }\n"
    assert cat(engine, second.image_id, CSS.replace("site.css", "other.js")) == "var a = 1;\n"
    assert second.image_id != first.image_id

    # the same source without a current image: collectstatic runs in full, and makes
    # the same static layer, the same image
    engine.tag(second.image_id, f"{app.name}:incremental")
    engine.client.images.remove(app.image)
    # (not the files of the image removed, which the host's index would give:
    # test_static_earlier_engine.py)
    shutil.rmtree(static_cache.cache_dir() / "keys", ignore_errors=True)
    lines.clear()
    full = image(app, engine, lines, no_index=True)
    assert "manage.py collectstatic" in "\n".join(lines)
    before, after = engine.image(second.image_id), engine.image(full.image_id)
    assert before is not None and after is not None
    label = "io.warpdrive.static-layer"
    assert after.labels[label] == before.labels[label]
    assert full.image_id == second.image_id

    # a static file added: which file a path is collected from may change, so
    # collectstatic runs in full
    (app.root / "shop" / "static" / "shop" / "new.css").write_text("p { margin: 0 }\n")
    lines.clear()
    image(app, engine, lines, no_index=True)
    assert "manage.py collectstatic" in "\n".join(lines)
