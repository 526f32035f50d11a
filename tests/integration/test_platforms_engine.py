"""Multi-platform images (issue 22) on the real engine, under real QEMU user emulation
(Debian's qemu-user-static in binfmt_misc: scripts/emulation.sh), with arm64 base and
builder images debootstrapped from Debian's packages (WARPDRIVE_ARCH=arm64
scripts/base-images.sh) and pushed with the amd64 ones as image indexes to a loopback
registry of this session, as `python:3.12-slim` is an index on Docker Hub. The packages
come from the real local index (pkgindex.py): wd-cext-demo is an sdist with a C
extension, compiled in the arm64 builder under emulation."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import daemons
import pytest
from conftest import BASE_IMAGE, BUILDER_IMAGE, App, serve_image, write_django
from pkgindex import Index
from test_build import http_get, nox

from nox_warpdrive.engine import Engine
from nox_warpdrive.engine import registry_api as api
from nox_warpdrive.platform import Platform, platform_ref
from nox_warpdrive.registry.index import push_index
from nox_warpdrive.tars import tar_files

ARM_BASE = f"{BASE_IMAGE}-arm64"
ARM_BUILDER = f"{BUILDER_IMAGE}-arm64"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def wait_for_background_images(timeout: float = 40 * 60) -> None:
    """scripts/test.sh makes the arm64 images in the background (minutes under QEMU) and
    names a file that gets the job's exit status: wait for it, and fail with its log's
    end when the job failed."""
    status = os.environ.get("WARPDRIVE_ARM64_IMAGES")
    if not status:
        return
    deadline = time.monotonic() + timeout
    while not Path(status).exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the arm64 images were not made in {timeout:.0f} s", pytrace=False)
        time.sleep(2)
    if Path(status).read_text().strip() != "0":
        log = Path(status).with_suffix(".log")
        tail = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(f"making the arm64 images failed:\n{tail}", pytrace=False)


@pytest.fixture(scope="module")
def arm64_ready(engine: Engine) -> None:
    """An amd64 engine that runs arm64 containers, and the arm64 test images: a FAIL
    naming the command that sets them up (never a skip)."""
    if platform.machine() not in ("x86_64", "amd64"):
        pytest.fail("these tests emulate arm64 on an amd64 engine", pytrace=False)
    if not BINFMT.exists():
        pytest.fail("no QEMU handler for arm64: run `bash scripts/emulation.sh`", pytrace=False)
    wait_for_background_images()
    for ref in (ARM_BASE, ARM_BUILDER):
        if engine.image(ref) is None:
            pytest.fail(
                f"test image {ref} is missing: run `WARPDRIVE_ARCH=arm64 bash "
                "scripts/base-images.sh`",
                pytrace=False,
            )


@pytest.fixture(scope="module")
def indexes(engine: Engine, registry: str, arm64_ready: None) -> Iterator[tuple[str, str]]:
    """(base, builder): image indexes with both platforms in the session's registry,
    pushed by the project's own index code; no local tag of them is left to start with
    (a build pulls them per platform), and none afterwards."""
    base = f"{registry}/warpdrive/python:3.11-bookworm"
    builder = f"{registry}/warpdrive/python-builder:3.11-bookworm"
    made = [base, builder]
    try:
        for ref, amd, arm in ((base, BASE_IMAGE, ARM_BASE), (builder, BUILDER_IMAGE, ARM_BUILDER)):
            push_index(engine, ref, [(AMD64, amd), (ARM64, arm)], lambda line: None)
            made += [f"{ref}-linux-amd64", f"{ref}-linux-arm64"]
            for tag in made[-2:]:
                engine.client.images.remove(tag)  # a tag: the image has its own
        yield base, builder
    finally:
        for tag in made:
            with contextlib.suppress(Exception):
                engine.client.images.remove(tag)


@pytest.fixture(scope="module")
def volume(engine: Engine) -> Iterator[str]:
    """One wheelhouse volume for the emulated tests of this module: the aarch64 wheels
    compiled (under emulation) by the first are reused by the next, as by any app."""
    name = f"wdtest-platforms-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        engine.remove_volume(name)


def use(app: App, base: str, builder: str, volume: str = "", **extra: str) -> None:
    """Point the app at the registry's indexes (and more [tool.warpdrive] lines)."""
    path = app.root / "pyproject.toml"
    text = path.read_text()
    if volume:
        text = text.replace(f'volume = "{app.volume}"', f'volume = "{volume}"')
    text = text.replace(f'base-image = "{BASE_IMAGE}"', f'base-image = "{base}"')
    text = text.replace(f'builder-image = "{BUILDER_IMAGE}"', f'builder-image = "{builder}"')
    text = text.replace(f'image = "{app.image}"', f'image = "{extra.pop("image", app.image)}"')
    path.write_text(text + "".join(f"{k} = {v}\n" for k, v in extra.items()))


def arch_of(engine: Engine, ref: str) -> str:
    return str(engine.inspect_raw(ref).get("Architecture"))


def test_an_arm64_image_on_an_amd64_engine_answers_as_uid_1001(
    make_app: object, engine: Engine, index_env: Index, indexes: tuple[str, str], volume: str
) -> None:
    """`--platform linux/arm64` alone: the builder and the deps layer run under
    emulation, the sdist is compiled for aarch64 once (a second wheelhouse run for the
    platform compiles nothing), the image is arm64, tagged as `image`, and answers."""
    app: App = make_app()  # type: ignore[operator]
    use(app, *indexes, volume=volume)
    first = nox(app, "-s", "image", "--", "--platform", "linux/arm64")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout + first.stderr
    assert "linux/arm64 (what must run on its CPU runs under emulation)" in out
    assert "cp311-cp311-linux_aarch64" in out
    assert "wd_cext_demo" in out
    assert arch_of(engine, app.image) == "arm64"
    # the pulled base is kept as REF-linux-arm64; the tag REF, which named nothing, is
    # left naming nothing (a build without platforms never builds on an arm64 base);
    # the engine's own CPU's image of it, pulled to make the deps layer in without
    # emulation, is kept as REF-linux-amd64
    assert engine.image(indexes[0]) is None
    assert arch_of(engine, platform_ref(indexes[0], ARM64)) == "arm64"
    assert arch_of(engine, platform_ref(indexes[0], AMD64)) == "amd64"
    with serve_image(engine, app.image) as (_, url):
        status, body = http_get(url + "/", timeout=90)
    assert status == 200 and "add=42 uid=1001" in body, body
    again = nox(app, "-s", "wheelhouse", "--", "--platform", "linux/arm64")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up to date for cp311-cp311-linux_aarch64" in again.stdout + again.stderr
    # `run --platform` finds the arm64 image and waits for it to answer
    port = daemons.free_port()
    name = f"{app.name}-run"
    ran = nox(app, "-s", "run", "--", "--platform", "linux/arm64", "--detach", "--port", str(port))
    try:
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "answers at" in ran.stdout + ran.stderr
    finally:
        with contextlib.suppress(Exception):
            engine.client.containers.get(name).remove(force=True)


def test_a_local_image_of_another_cpu_is_an_error_naming_both_and_the_fix(
    make_app: object, index_env: Index, arm64_ready: None
) -> None:
    app: App = make_app(["wd-pure-demo"])  # type: ignore[operator]
    use(app, ARM_BASE, ARM_BUILDER)
    done = nox(app, "-s", "image", "--", "--platform", "linux/amd64")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"base-image {ARM_BASE} is an image for linux/arm64, not linux/amd64" in out
    assert "fix: name a base-image that is an image index" in out
    assert "Traceback" not in out


def upload_count(registry: str, digest: str) -> int:
    """How many times the session's registry took an upload of blob ``digest`` (its
    access log: the final PUT of an upload names the digest)."""
    port = registry.rsplit(":", 1)[1]
    for start in daemons.STATE.glob("*-registry-*/start.json"):
        env = json.loads(start.read_text())["env"]
        if env.get("WARPDRIVE_REGISTRY_PORT") == port and "WARPDRIVE_REGISTRY_HTPASSWD" not in env:
            log = Path(env["WARPDRIVE_REGISTRY_LOG"]).read_text()
            quoted = digest.replace(":", "%3A")
            return len(re.findall(rf'"PUT [^"]*/blobs/uploads/[^"]*digest={quoted}', log))
    raise AssertionError(f"no log of the registry at {registry}")


def manifests(registry: str, repo: str, tag: str) -> dict[str, dict[str, object]]:
    """The index at ``repo:tag``: platform -> that image's manifest."""
    client = api.Registry(registry)
    index = client._manifest(repo, tag)
    assert index is not None and index.media_type in api.INDEXES, index
    found = {}
    for entry in index.data["manifests"]:
        p = entry["platform"]
        manifest = client._manifest(repo, entry["digest"])
        assert manifest is not None
        found[f"{p['os']}/{p['architecture']}"] = manifest.data
    return found


def assert_sboms(registry: str, repo: str, out: str) -> None:
    """Each platform's image in the index has its own SBOM and provenance beside it
    (the loopback registry has no referrers API: the `sha256-<hex>` fallback tag),
    whose subject is that platform's manifest, and whose SBOM lists the wheels of
    that platform (the C extension compiled for its CPU)."""
    assert out.count("SBOM and provenance pushed beside") == 2, out
    client = api.Registry(registry, None, timeout=10)
    index = client.raw_manifest(repo, "latest")
    assert index is not None
    arches = set()
    for entry in index.data["manifests"]:
        beside = client.raw_manifest(repo, "sha256-" + entry["digest"].split(":")[1])
        assert beside is not None, entry
        kinds = {m["artifactType"]: m["digest"] for m in beside.data["manifests"]}
        sbom = client.raw_manifest(repo, kinds["application/vnd.cyclonedx+json"])
        assert sbom is not None and sbom.data["subject"]["digest"] == entry["digest"]
        doc = json.loads(client.blob(repo, sbom.data["layers"][0]["digest"], limit=64 << 20))
        purls = [str(c.get("purl", "")) for c in doc["components"]]
        assert any(p.startswith("pkg:pypi/django@") for p in purls), purls
        arches.add(entry["platform"]["architecture"])
    assert arches == {"amd64", "arm64"}


def forget(engine: Engine, name: str) -> None:
    """Remove every image of the app here (its images and deps images): a fresh runner."""
    for image in engine.client.images.list():
        title = (image.labels or {}).get("org.opencontainers.image.title")
        if title == name or any(f"/{name}:" in t for t in image.tags):
            with contextlib.suppress(Exception):
                engine.client.images.remove(image.id, force=True)


def test_both_platforms_are_pushed_as_one_index_sharing_the_app_layers(
    make_app: object,
    engine: Engine,
    index_env: Index,
    indexes: tuple[str, str],
    registry: str,
    volume: str,
) -> None:
    """A Django app, `platforms` with both, `--push`: one index lists linux/amd64 and
    linux/arm64; the collected static files and the app source are the same blobs in
    both. After a code change nothing is compiled, installed or collected again, and the
    new app layer is uploaded once for both platforms; a fresh runner with --cache-from
    compiles and installs nothing for either, and with --push-only builds both in the
    registry, pulling nothing; the index's arm64 image answers."""
    app: App = make_app(["django"])  # type: ignore[operator]
    (app.root / "wsgi.py").unlink()
    write_django(app.root, "shop-v1")
    ref = f"{registry}/{app.name}:latest"  # the cleanup finds its deps images by the name
    use(app, indexes[0], indexes[0], volume, image=ref, platforms='["linux/amd64", "linux/arm64"]')
    first = nox(app, "-s", "image", "--", "--push")
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout + first.stderr
    assert "as an image index (linux/amd64, linux/arm64)" in out
    # collectstatic ran once, natively; the arm64 image took the amd64 image's files
    assert out.count("collectstatic --noinput") == 1, out
    assert "the collected static files of the first platform's image reused" in out, out
    images = manifests(registry, app.name, "latest")
    assert sorted(images) == ["linux/amd64", "linux/arm64"]
    layers = {p: [d["digest"] for d in m["layers"]] for p, m in images.items()}  # type: ignore[attr-defined]
    static, top = layers["linux/amd64"][-2:]
    assert layers["linux/arm64"][-2:] == [static, top]  # collected files, then the source
    assert layers["linux/arm64"][0] != layers["linux/amd64"][0]  # each CPU's base
    assert arch_of(engine, ref) == "amd64" and arch_of(engine, f"{ref}-linux-arm64") == "arm64"
    assert_sboms(registry, app.name, first.stdout + first.stderr)

    write_django(app.root, "shop-v2")
    second = nox(app, "-s", "image", "--", "--push")
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert out.count("deps layer reused, app layer built") == 2, out
    assert out.count("reusing the collected static files") == 2, out
    assert "collectstatic --noinput" not in out and "pip " not in out, out
    images = manifests(registry, app.name, "latest")
    for manifest in images.values():
        digests = [d["digest"] for d in manifest["layers"]]  # type: ignore[attr-defined]
        assert digests[-2] == static and digests[-1] != top
    new_top = images["linux/arm64"]["layers"][-1]["digest"]  # type: ignore[index]
    assert images["linux/amd64"]["layers"][-1]["digest"] == new_top  # type: ignore[index]
    assert upload_count(registry, str(new_top)) == 1

    # a fresh runner (no image, deps image or volume of the app) with --cache-from the
    # push: each platform reuses its own image there, nothing is compiled or installed
    forget(engine, app.name)
    engine.remove_volume(volume)
    write_django(app.root, "shop-v3")
    third = nox(app, "-s", "image", "--", "--cache-from", ref, "--push")
    out = third.stdout + third.stderr
    assert third.returncode == 0, out
    assert out.count("warpdrive: using the cache") == 2, out
    assert f"{ref}-linux-arm64" in out
    assert "pip " not in out and "collectstatic --noinput" not in out, out

    # a fresh runner again, `--push-only`: each platform's image is built in the registry
    # on its own earlier push; nothing is pulled, built or left here, one new app layer
    # is uploaded (once: both platforms share it), then the index moves
    forget(engine, app.name)
    engine.remove_volume(volume)
    write_django(app.root, "shop-v4")
    before = manifests(registry, app.name, "latest")
    fourth = nox(app, "-s", "image", "--", "--push-only")
    out = fourth.stdout + fourth.stderr
    assert fourth.returncode == 0, out
    assert out.count("built in the registry") == 2, out
    assert "as an image index (linux/amd64, linux/arm64)" in out, out
    assert "pip " not in out and "collectstatic --noinput" not in out, out
    assert engine.image(ref) is None and engine.image(f"{ref}-linux-arm64") is None
    assert_sboms(registry, app.name, out)
    images = manifests(registry, app.name, "latest")
    tops = {p: m["layers"][-1]["digest"] for p, m in images.items()}  # type: ignore[index]
    assert len(set(tops.values())) == 1, tops
    assert tops["linux/arm64"] != before["linux/arm64"]["layers"][-1]["digest"]  # type: ignore[index]
    for p, m in images.items():  # the rest: each platform's own earlier layers, by digest
        earlier = [d["digest"] for d in before[p]["layers"]][:-1]  # type: ignore[index]
        assert [d["digest"] for d in m["layers"]][:-1] == earlier  # type: ignore[attr-defined]

    # the arm64 image of the index, as a cluster node of that CPU pulls it, answers
    with contextlib.suppress(Exception):
        engine.client.images.remove(f"{ref}-linux-arm64")
    pulled = engine.pull(ref, platform="linux/arm64")
    assert pulled is not None and pulled.platform.startswith("linux/arm64")
    with serve_image(engine, pulled.id) as (_, url):
        status, body = http_get(url + "/", timeout=90)
        css, _ = http_get(url + "/static/shop/site.css")
    assert status == 200 and "shop-v4 uid=1001" in body, body
    assert css == 200


@pytest.fixture
def foreign_binary_image(engine: Engine) -> Iterator[str]:
    """The base image with /usr/local/bin/foreign: this host's `true` marked as a program
    for s390 (its ELF e_machine), a CPU no binfmt_misc handler here runs, so the kernel
    answers `exec format error` as it does for an arm64 image without QEMU."""
    data = bytearray(Path("/bin/true").read_bytes())
    data[18:20] = (22).to_bytes(2, "little")  # EM_S390
    container = engine.client.containers.create(BASE_IMAGE, command=["true"])
    tag = f"wdtest-foreign-{uuid.uuid4().hex[:8]}:1"
    try:
        container.put_archive("/usr/local/bin", tar_files({"foreign": bytes(data)}, mode=0o755))
        container.commit(*tag.split(":"))
    finally:
        container.remove(force=True)
    try:
        yield tag
    finally:
        engine.client.images.remove(tag, force=True)


def test_exec_format_error_names_qemu_and_an_engine_of_that_cpu(
    make_app: object, index_env: Index, foreign_binary_image: str
) -> None:
    app: App = make_app(["wd-pure-demo"])  # type: ignore[operator]
    use(app, foreign_binary_image, foreign_binary_image, python='"/usr/local/bin/foreign"')
    done = nox(app, "-s", "wheelhouse")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "`exec format error`, the engine cannot run programs of that image's CPU" in out, out
    assert "qemu-user-static" in out and "DOCKER_HOST=ssh://" in out
    assert "Traceback" not in out
