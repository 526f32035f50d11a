"""Layer reuse on a real engine: what a change rebuilds, and that nothing stale survives."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from conftest import App, output, serve_image, write_django
from pkgindex import Index
from test_build import http_get, image, wheelhouse
from test_build import manifest as manifest_of

from nox_warpdrive.config import load_config
from nox_warpdrive.engine import Engine
from nox_warpdrive.image import choose_installer, plan_app, plan_deps
from nox_warpdrive.wheelhouse.build import probe_image, requirements_for, resolved_set


def run(engine: Engine, ref: str, *cmd: str) -> str:
    out = output(engine.client, ref, list(cmd))
    return str(out.decode())


def layers(engine: Engine, ref: str) -> list[str]:
    return list(engine.inspect_raw(ref)["RootFS"]["Layers"])


def test_added_requirement_adds_a_small_layer_and_nothing_stale_survives(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["wd-pure-demo"])
    (app.root / "leftover.txt").write_text("old")
    wheelhouse(app, engine)
    first = image(app, engine, no_index=True)
    one = layers(engine, first.image_id)
    assert len(one) == 3  # base, deps, app
    # no build step: the app layer was appended without a container
    history = engine.client.api.history(first.image_id)
    assert history[0]["CreatedBy"] == "nox-warpdrive app layer", history[0]

    app.requirements.append("wd-extra-demo")
    app.write()
    (app.root / "leftover.txt").unlink()
    wheelhouse(app, engine)
    lines: list[str] = []
    second = image(app, engine, lines, no_index=True)
    two = layers(engine, second.image_id)
    assert "adding 1 wheels on top of the deps layer" in "\n".join(lines)
    assert two[:2] == one[:2], "the deps layer was rebuilt instead of extended"
    assert len(two) == 4 and one[2] not in two, "the old app layer is under the new image"
    ok = run(engine, app.image, "python3", "-c", "import wd_extra_demo, wd_pure_demo; print(1)")
    assert ok.strip() == "1"
    listing = run(engine, app.image, "ls", "/opt/app-root/src")
    assert "leftover.txt" not in listing and "wsgi.py" in listing

    # back to the first requirements (a removal): the first deps layer is reused as is,
    # never the extended one
    app.requirements.remove("wd-extra-demo")
    app.write()
    wheelhouse(app, engine)
    third = image(app, engine, no_index=True)
    assert third.deps_reused
    three = layers(engine, third.image_id)
    assert three[:2] == one[:2] and len(three) == 3
    out = run(
        engine,
        app.image,
        "python3",
        "-c",
        "import importlib.util as u; print(u.find_spec('wd_extra_demo') is None)",
    )
    assert out.strip() == "True", "a removed requirement is still installed"


def test_django_static_files_are_collected_and_reused_only_when_unchanged(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    app: App = make_app(["Django==5.2.19"])
    os.unlink(app.root / "wsgi.py")
    write_django(app.root)
    wheelhouse(app, engine)
    lines: list[str] = []
    first = image(app, engine, lines, no_index=True)
    assert "manage.py collectstatic" in "\n".join(lines)
    engine.tag(first.image_id, f"{app.name}:first")  # a second tag keeps it after rebuilds
    css = "/opt/app-root/src/collected/shop/site.css"
    assert run(engine, first.image_id, "cat", css).strip() == "body { color: red }"
    owner = run(engine, first.image_id, "stat", "-c", "%u:%g %A", css).strip()
    assert owner.startswith("1001:0 -rw-rw"), owner
    # the collected files are a layer of their own, under the app layer
    one = layers(engine, first.image_id)
    info = engine.image(first.image_id)
    assert info is not None
    assert info.labels["io.warpdrive.static-layer"] == one[-2]
    assert info.labels["io.warpdrive.static-root"] == "/opt/app-root/src/collected"
    assert [h["CreatedBy"] for h in engine.history(first.image_id)[:2]] == [
        "nox-warpdrive app layer",
        "nox-warpdrive static files (collectstatic)",
    ]
    # with the owners, modes and sizes of a plain container build (run + commit)
    listing = (
        "cd /opt/app-root && stat -c '%n %u:%g %a' src . .warpdrive"
        " && find src/collected .warpdrive -printf '%p %u:%g %m %s\\n' | sort"
    )
    cfg = load_config(app.root)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    plan = plan_app(cfg, base, pkey, info.labels["io.warpdrive.deps-key"], "x")
    deps_ref = next(
        t for img in engine.client.images.list(name=f"warpdrive-deps/{app.name}") for t in img.tags
    )
    committed = engine.run_checked(plan.step(deps_ref), lambda line: None).image_id
    assert committed is not None
    try:
        assert run(engine, first.image_id, "sh", "-c", listing) == run(
            engine, committed, "sh", "-c", listing
        )
    finally:
        engine.remove_image(committed)

    with serve_image(engine, app.image) as (_, url):
        status, body = http_get(f"{url}/")
        assert status == 200 and body == "shop-v1 uid=1001", body

    # a view changed: the collected files are reused, no container runs collectstatic,
    # and their layer is named, not sent again
    write_django(app.root, message="shop-v2")
    lines.clear()
    second = image(app, engine, lines, no_index=True)
    text = "\n".join(lines)
    assert "reusing the collected static files" in text
    assert "manage.py collectstatic" not in text
    assert run(engine, second.image_id, "cat", css).strip() == "body { color: red }"
    assert "shop-v2" in run(engine, second.image_id, "cat", "shop/views.py")
    owner = run(engine, second.image_id, "stat", "-c", "%u:%g", "/opt/app-root/src").strip()
    assert owner == "1001:0"
    two = layers(engine, second.image_id)
    assert two[:-1] == one[:-1] and two[-1] != one[-1]
    assert run(engine, second.image_id, "sh", "-c", listing) == run(
        engine, first.image_id, "sh", "-c", listing
    )
    with serve_image(engine, app.image) as (_, url):
        status, body = http_get(f"{url}/")
        assert status == 200 and body == "shop-v2 uid=1001", body

    # a static file changed: only it is collected again (Django's default storage copies
    # each file as it is: test_static_incremental_engine.py)
    write_django(app.root, message="shop-v2", css="body { color: blue }\n")
    lines.clear()
    third = image(app, engine, lines, no_index=True)
    assert "re-collected only those" in "\n".join(lines)
    assert run(engine, third.image_id, "cat", css).strip() == "body { color: blue }"
    assert layers(engine, third.image_id)[-2] != one[-2]


def test_appended_layer_matches_a_committed_one(
    make_app: Any, engine: Engine, index_env: Index, tmp_path: Path
) -> None:
    """The container-free app layer gives the same files, owners and modes as run +
    commit would (put_archive into a container of the deps image)."""
    app: App = make_app(["wd-pure-demo"])
    (app.root / "pkg").mkdir()
    (app.root / "pkg" / "data.txt").write_text("data")
    (app.root / "run.sh").write_text("#!/bin/sh\n")
    (app.root / "run.sh").chmod(0o755)
    wheelhouse(app, engine)
    built = image(app, engine, no_index=True)
    script = "cd /opt/app-root && find src bin -printf '%p %u:%g %m %s\\n' | sort"
    appended = run(engine, built.image_id, "sh", "-c", script)
    cfg = load_config(app.root)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    labels = engine.image(built.image_id)
    assert labels is not None
    plan = plan_app(cfg, base, pkey, labels.labels["io.warpdrive.deps-key"], "x")
    deps_ref = next(
        t for img in engine.client.images.list(name=f"warpdrive-deps/{app.name}") for t in img.tags
    )
    step = plan.step(deps_ref)
    result = engine.run_checked(replace(step, command=None), lambda line: None)
    assert result.image_id is not None
    try:
        committed = run(engine, result.image_id, "sh", "-c", script)
    finally:
        engine.client.images.remove(result.image_id, force=True)
    assert appended == committed


def test_cold_image_installs_downloaded_wheels_while_the_sdist_compiles(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """`nox -s image` on an empty volume: the wheels that only need downloading become a
    deps layer while the builder still compiles the C extension; the compiled wheel then
    goes into a small layer on top (made beside the early image when the wheelhouse was
    done first: test_late_layer_engine.py), and the image works."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    lines: list[str] = []
    result = image(app, engine, lines)
    text = "\n".join(lines)
    assert "built while the wheelhouse finished" in text, text
    late = "1 wheels the builder made added as a layer of their own" in text
    assert late or "adding 1 wheels on top of the deps layer" in text, text
    assert "WHEELS-READY" not in text and "SUMMARY" not in text, "machine lines were shown"

    cfg = load_config(app.root)
    deps = engine.images_with_labels(
        {"io.warpdrive.kind": "deps", "io.warpdrive.deps-project": cfg.name}
    )
    by_depth = {d.labels["io.warpdrive.deps-depth"]: d for d in deps}
    assert set(by_depth) == {"0", "1"}, [d.labels for d in deps]
    early, final = by_depth["0"], by_depth["1"]
    early_wheels = json.loads(early.labels["io.warpdrive.deps-wheels"])
    final_wheels = json.loads(final.labels["io.warpdrive.deps-wheels"])
    assert not [w for w in early_wheels if w.startswith("wd_cext_demo-")], early_wheels
    assert [w for w in early_wheels if w.startswith("wd_pure_demo-")], early_wheels
    added = set(final_wheels) - set(early_wheels)
    assert [w.split("-")[0] for w in added] == ["wd_cext_demo"], added
    assert layers(engine, final.id)[:-1] == layers(engine, early.id)
    assert layers(engine, result.image_id)[:-1] == layers(engine, final.id)
    code = "import wd_cext_demo; print(wd_cext_demo.add(2, 40))"
    assert run(engine, app.image, "python3", "-c", code).strip() == "42"

    again = image(app, engine)
    assert again.up_to_date and again.image_id == result.image_id


def test_exported_deps_layer_matches_a_committed_one(
    make_app: Any, engine: Engine, index_env: Index
) -> None:
    """The deps layer built in memory and exported has the same files, owners, modes and
    sizes as run + commit gives, its bytecode is valid for its sources, and nothing of the
    build (helpers, unpacked wheels) is in it."""
    app: App = make_app(["wd-pure-demo", "wd-cext-demo"])
    wheelhouse(app, engine)
    cfg = load_config(app.root)
    base, pkey = probe_image(engine, cfg.base_image, "base-image", cfg)
    data = manifest_of(engine, app)
    resolved = resolved_set(data, requirements_for(cfg).digest)
    assert resolved is not None
    installer = choose_installer(cfg, data, pkey)
    assert installer.name == "uv"
    exported_plan = plan_deps(cfg, base, pkey, resolved, installer)
    committed_plan = plan_deps(cfg, base, pkey, resolved, installer, export=False)
    assert exported_plan.step.export and not committed_plan.step.export
    assert exported_plan.key == committed_plan.key
    ids = []
    try:
        for plan in (exported_plan, committed_plan):
            result = engine.run_checked(plan.step, lambda line: None)
            assert result.image_id is not None
            ids.append(result.image_id)
        script = "find /opt /etc/passwd /tmp -printf '%p %u:%g %m %y %s\\n' | sort"
        exported, committed = (run(engine, i, "sh", "-c", script) for i in ids)
        assert exported == committed
        assert "/tmp/warpdrive" not in exported
        history = engine.client.api.history(ids[0])
        assert history[0]["CreatedBy"] == "nox-warpdrive deps layer", history[0]
        check = (
            "import importlib.util, os, struct, wd_pure_demo\n"
            "src = wd_pure_demo.__file__\n"
            "head = open(importlib.util.cache_from_source(src), 'rb').read(16)\n"
            "flags, mtime, size = struct.unpack('<III', head[4:16])\n"
            "st = os.stat(src)\n"
            "print(flags == 0 and mtime == int(st.st_mtime) and size == st.st_size)\n"
        )
        assert run(engine, ids[0], "/opt/app-root/venv/bin/python", "-c", check).strip() == "True"
    finally:
        for image_id in ids:
            engine.client.images.remove(image_id, force=True)
