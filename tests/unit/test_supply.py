"""The SBOM (validated against CycloneDX 1.6 with the library's own JSON validator), the
purls, the provenance statement, the host records (gathered once, then only read), and
the artifacts put beside an image in a fake registry: through the referrers API where
it has one, else the ``sha256-<hex>`` tag's index, updated and never clobbered."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from fake_engine import FakeEngine
from test_registry_api import FakeRegistry
from test_registry_api import registry as registry
from unit_support import BASE, PKEY

from nox_warpdrive.config import Config
from nox_warpdrive.engine import ImageInfo
from nox_warpdrive.engine import registry_api as api
from nox_warpdrive.errors import RegistryError
from nox_warpdrive.labels import (
    BASE_IMAGE_ID_LABEL,
    DEPS_DEPTH_LABEL,
    LAYERS_LABEL,
    OCI_CREATED,
    OCI_REVISION,
    OCI_SOURCE,
)
from nox_warpdrive.supply import attach, gather, provenance, remote, sbom
from nox_warpdrive.tars import tar_files
from nox_warpdrive.wheelhouse.wheels import Wheel

DPKG = """\
Package: python3
Status: install ok installed
Architecture: amd64
Source: python3-defaults (3.11.2-1)
Version: 3.11.2-1+b1
Description: interactive high-level object-oriented language
 a continuation line: Version: 9.9

Package: tzdata
Status: deinstall ok config-files
Architecture: all
Version: 2024a-0+deb12u1

Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4

Package: perl-base
Status: install ok installed
Architecture: amd64
Version: 1:5.36.0-7+deb12u1
"""

METADATA = {
    "flask": b"Name: Flask\nVersion: 3.0.0\nLicense-Expression: BSD-3-Clause\n",
    "psycopg2": b"Name: psycopg2\nVersion: 2.9.9\nLicense: LGPL with exceptions\n",
    "zope.interface": (
        b"Metadata-Version: 2.1\nName: zope.interface\nVersion: 6.0\n"
        b"Classifier: License :: OSI Approved :: Zope Public License\n"
    ),
}

WHEELS = [
    Wheel("flask-3.0.0-py3-none-any.whl", "flask", "3.0.0", "a" * 64, 10),
    Wheel("psycopg2-2.9.9-cp312-cp312-linux_x86_64.whl", "psycopg2", "2.9.9", "b" * 64, 10),
    Wheel("zope.interface-6.0-py3-none-any.whl", "zope.interface", "6.0", "c" * 64, 10),
]
SITE = "/opt/app-root/venv/lib/python3.12/site-packages"


def tar_of(path: str, data: bytes) -> bytes:
    """What get_archive gives for one file: a tar of it under its base name."""
    return tar_files({path.rsplit("/", 1)[-1]: data})


def paths() -> dict[str, bytes]:
    found = {
        "/var/lib/dpkg/status": tar_of("status", DPKG.encode()),
        "/etc/os-release": tar_of("os-release", b'ID=debian\nVERSION_ID="12"\n'),
    }
    stems = {
        "flask": "flask-3.0.0",
        "psycopg2": "psycopg2-2.9.9",
        "zope.interface": "zope.interface-6.0",
    }
    for name, stem in stems.items():
        found[f"{SITE}/{stem}.dist-info/METADATA"] = tar_of("METADATA", METADATA[name])
    return found


def records(engine: FakeEngine) -> tuple[tuple[gather.Distribution, ...], gather.BaseRecord]:
    built_from = {WHEELS[1].filename: "d" * 64}
    gather.record_supply(
        engine, "python:3.12", BASE, "deps-key-1", "deps", WHEELS, built_from, PKEY
    )
    dists, base = gather.load_deps("deps-key-1"), gather.load_base(BASE.id)
    assert dists is not None and base is not None
    return dists, base


def test_parse_dpkg_status_lists_installed_packages_only() -> None:
    found = gather.parse_dpkg_status(DPKG)
    assert [(p.name, p.version, p.arch, p.source) for p in found] == [
        ("libc6", "2.36-9+deb12u4", "amd64", "glibc"),
        ("perl-base", "1:5.36.0-7+deb12u1", "amd64", ""),
        ("python3", "3.11.2-1+b1", "amd64", "python3-defaults"),
    ]


def test_license_from_metadata() -> None:
    assert gather.license_of(METADATA["flask"]) == "BSD-3-Clause"
    assert gather.license_of(METADATA["psycopg2"]) == "LGPL with exceptions"
    assert gather.license_of(METADATA["zope.interface"]) == "Zope Public License"
    assert gather.license_of(b"Name: x\nLicense: UNKNOWN\n") == ""


def test_records_are_gathered_once_then_only_read() -> None:
    engine = FakeEngine(images={"deps": BASE, BASE.id: BASE}, paths=paths())
    dists, base = records(engine)
    assert engine.readers == 2  # one created container per image: the deps and the base
    assert [(d.name, d.license) for d in dists] == [
        ("Flask", "BSD-3-Clause"),
        ("psycopg2", "LGPL with exceptions"),
        ("zope.interface", "Zope Public License"),
    ]
    assert dists[1].built_from == "d" * 64 and dists[1].compiled_here
    assert not dists[0].compiled_here
    assert base.distro_version == "12" and len(base.packages) == 3
    # the next build (a code change) reads no image at all
    gather.record_supply(engine, "python:3.12", BASE, "deps-key-1", "deps", WHEELS, {}, PKEY)
    gather.record_supply(engine, "python:3.12", BASE, "deps-key-1", "deps", None, {}, PKEY)
    assert engine.readers == 2


def test_the_sbom_is_valid_cyclonedx_1_6_with_purls_and_hashes() -> None:
    engine = FakeEngine(images={"deps": BASE, BASE.id: BASE}, paths=paths())
    dists, base = records(engine)
    image = sbom.ImageFacts("app:latest", "sha256:" + "e" * 64, "2026-12-06T10:00:00Z")
    text = sbom.to_json(sbom.make_bom(image, dists, base, "0.1.0"))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6" and doc["metadata"]["timestamp"].startswith("2026-12-06")
    by_purl = {c.get("purl"): c for c in doc["components"]}
    assert "pkg:pypi/zope-interface@6.0" in by_purl
    flask = by_purl["pkg:pypi/flask@3.0.0"]
    assert flask["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    assert flask["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    psycopg2 = by_purl["pkg:pypi/psycopg2@2.9.9"]
    (sdist,) = psycopg2["pedigree"]["ancestors"]
    assert sdist["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    assert "pkg:deb/debian/python3@3.11.2-1%2Bb1?arch=amd64&distro=debian-12" in by_purl
    assert "pkg:deb/debian/perl-base@1:5.36.0-7%2Bdeb12u1?arch=amd64&distro=debian-12" in by_purl
    # the same image gives the same document
    again = sbom.to_json(sbom.make_bom(image, dists, base, "0.1.0"))
    assert again == text
    assert sbom.summary(doc) == "3 Python distributions, 3 Debian packages"


def test_the_provenance_statement(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask\n")
    cfg = Config(
        project_dir=tmp_path,
        name="app",
        image="registry.example/app:1",
        base_image="python:3.12",
        builder_image="python-builder:3.12",
        requirement_files=(tmp_path / "requirements.txt",),
    )
    labels = {
        OCI_REVISION: "f" * 40,
        OCI_SOURCE: "https://example.org/app.git",
        OCI_CREATED: "2026-12-06T10:00:00Z",
        BASE_IMAGE_ID_LABEL: BASE.id,
    }
    facts = provenance.BuildFacts(
        image_ref=cfg.image,
        subject_digest="sha256:" + "1" * 64,
        labels=labels,
        base_id=BASE.id,
        builder_id="sha256:builder",
        tool_version="0.1.0",
        base_repo_digests=("python@sha256:" + "2" * 64,),
        inputs=provenance.input_digests(cfg),
    )
    st = provenance.statement(cfg, facts)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [{"name": "registry.example/app", "digest": {"sha256": "1" * 64}}]
    deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps[0] == {
        "uri": "git+https://example.org/app.git",
        "digest": {"gitCommit": "f" * 40},
    }
    assert deps[1]["digest"] == {"sha256": "2" * 64}  # the base's registry digest
    digest = hashlib.sha256(b"flask\n").hexdigest()
    assert {"uri": "requirements.txt", "digest": {"sha256": digest}} in [
        {k: d[k] for k in ("uri", "digest")} for d in deps
    ]
    run = st["predicate"]["runDetails"]
    assert run["builder"]["version"] == {"nox-warpdrive": "0.1.0"}
    config = st["predicate"]["buildDefinition"]["externalParameters"]["config"]
    assert config["base-image"] == "python:3.12" and config["installer"] == "auto"


def test_the_provenance_publishes_no_credentials(tmp_path: Path) -> None:
    """A direct reference in [project].dependencies, or a source label set by hand, may
    carry a token: the statement is pushed beside the image, so it says neither."""
    cfg = Config(
        project_dir=tmp_path,
        name="app",
        image="registry.example/app:1",
        base_image="python:3.12",
        builder_image="python-builder:3.12",
        requirement_files=(),
        dependencies=("private @ git+https://__token__:s3cr3t@git.example/private.git",),
    )
    facts = provenance.BuildFacts(
        image_ref=cfg.image,
        subject_digest="sha256:" + "1" * 64,
        labels={OCI_REVISION: "f" * 40, OCI_SOURCE: "https://ci:s3cr3t@example.org/app.git"},
        base_id=BASE.id,
        builder_id="sha256:builder",
        tool_version="0.1.0",
    )
    text = json.dumps(provenance.statement(cfg, facts))
    assert "s3cr3t" not in text
    assert "private @ git+https://git.example/private.git" in text
    assert "git+https://example.org/app.git" in text


def test_the_fallback_index_is_updated_not_clobbered() -> None:
    foreign = {"mediaType": api.OCI_MANIFEST, "digest": "sha256:other", "size": 1}
    foreign["artifactType"] = "application/vnd.dev.sigstore.bundle+json"
    mine = {
        "mediaType": api.OCI_MANIFEST,
        "digest": "sha256:old",
        "size": 2,
        "artifactType": sbom.MEDIA_TYPE,
        "annotations": {attach.TOOL_ANNOTATION: "sbom"},
    }
    new = {**mine, "digest": "sha256:new"}
    index = json.loads(attach.updated_index({"manifests": [foreign, mine]}, [new]))
    assert index["mediaType"] == api.OCI_INDEX
    assert [m["digest"] for m in index["manifests"]] == ["sha256:other", "sha256:new"]
    again = json.loads(attach.updated_index(index, [new]))
    assert again == index


@pytest.fixture
def pushed_image(registry: str) -> Iterator[tuple[api.Registry, api.Manifest]]:
    client = api.Registry(registry, None, timeout=5)
    body = json.dumps({"schemaVersion": 2, "mediaType": api.DOCKER_MANIFEST}).encode()
    digest = client.put_manifest("wd/app", "latest", body, api.DOCKER_MANIFEST)
    yield client, api.Manifest(digest, api.DOCKER_MANIFEST, body)


DOCS = [
    attach.Document(sbom.MEDIA_TYPE, b'{"bomFormat":"CycloneDX"}', "sbom"),
    attach.Document(provenance.MEDIA_TYPE, b'{"_type":"x"}', "provenance"),
]


def test_without_a_referrers_api_the_tag_holds_the_index(
    pushed_image: tuple[api.Registry, api.Manifest],
) -> None:
    client, image = pushed_image
    tag = attach.fallback_tag(image.digest)
    assert tag == "sha256-" + image.digest.split(":")[1]
    # another tool's referrer is there already
    other = json.dumps({"schemaVersion": 2, "mediaType": api.OCI_INDEX, "manifests": [
        {"mediaType": api.OCI_MANIFEST, "digest": "sha256:sig", "size": 3, "artifactType": "x"}
    ]}).encode()  # fmt: skip
    client.put_manifest("wd/app", tag, other, api.OCI_INDEX)
    done = attach.attach(client, "wd/app", image, DOCS, "2026-12-06T10:00:00Z")
    assert done.found_by == f"the tag {tag}"
    index = client.raw_manifest("wd/app", tag)
    assert index is not None and index.media_type == api.OCI_INDEX
    entries = index.data["manifests"]
    assert [e["artifactType"] for e in entries] == ["x", sbom.MEDIA_TYPE, provenance.MEDIA_TYPE]
    for entry, doc in zip(entries[1:], DOCS, strict=True):
        artifact = client.raw_manifest("wd/app", entry["digest"])
        assert artifact is not None
        data = artifact.data
        assert data["subject"] == {
            "mediaType": api.DOCKER_MANIFEST,
            "digest": image.digest,
            "size": len(image.body),
        }
        assert data["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        assert client.blob("wd/app", data["layers"][0]["digest"]) == doc.body
    # again (a push of the same image): the same index
    attach.attach(client, "wd/app", image, DOCS, "2026-12-06T10:00:00Z")
    again = client.raw_manifest("wd/app", tag)
    assert again is not None and again.data == index.data


class ReferrersRegistry(FakeRegistry):
    """The fake registry with the OCI 1.1 referrers API."""

    def handle_any(self) -> None:
        parts = self.path.split("/")
        if self.command == "GET" and "referrers" in parts:
            repo, digest = "/".join(parts[2 : parts.index("referrers")]), parts[-1]
            found = [
                {
                    **json.loads(body)["subject"],
                    "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                }
                for _, (_, body) in self.manifests.get(repo, {}).items()
                if json.loads(body).get("subject", {}).get("digest") == digest
            ]
            body = json.dumps({"schemaVersion": 2, "manifests": found}).encode()
            return self.reply(200, body, {"Content-Type": api.OCI_INDEX})
        return super().handle_any()

    do_GET = do_POST = do_PUT = do_HEAD = handle_any


def test_with_a_referrers_api_no_tag_is_written(
    pushed_image: tuple[api.Registry, api.Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, image = pushed_image
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ReferrersRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        other = api.Registry(f"127.0.0.1:{server.server_address[1]}", None, timeout=5)
        done = attach.attach(other, "wd/app", image, DOCS)
        assert done.found_by == "the referrers API"
        assert other.raw_manifest("wd/app", attach.fallback_tag(image.digest)) is None
        listed = other.referrers("wd/app", image.digest)
        assert listed is not None and len(listed) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert client.referrers("wd/app", image.digest) is None  # distribution 2.x: no API


def test_a_failure_after_the_push_is_a_warning(tmp_path: Path) -> None:
    cfg = Config(
        project_dir=tmp_path,
        name="app",
        image="127.0.0.1:9/app:1",
        base_image="python:3.12",
        builder_image="python:3.12",
        requirement_files=(),
    )
    lines: list[str] = []
    engine = FakeEngine(images={"app": ImageInfo("sha256:app", (), {}, 1, 1, "")})
    ok = attach.push_beside(engine, cfg, cfg.image, "sha256:" + "0" * 64, lines.append, "app")
    assert not ok
    assert lines[0].startswith(f"warpdrive: warning: the image {cfg.image} is pushed, but its")
    assert "cannot reach the registry 127.0.0.1:9" in lines[0]
    assert lines[1].startswith("  fix: ")


def test_the_base_image_purl_names_its_registry() -> None:
    digest = "sha256:" + "2" * 64
    base = gather.BaseRecord("python:3.12", "sha256:" + "3" * 64, (f"python@{digest}",), ())
    c = sbom.base_component(base)
    assert str(c.purl) == f"pkg:oci/python@{digest}?repository_url=docker.io/library/python"
    assert c.version == digest
    mine = dataclasses.replace(base, repo_digests=(f"ghcr.io/me/py@{digest}",))
    assert "repository_url=ghcr.io/me/py" in str(sbom.base_component(mine).purl)


def test_a_wheel_compiled_from_an_unrecorded_sdist_names_it_without_a_hash() -> None:
    d = gather.Distribution(
        "psycopg2", "2.9.9", "psycopg2-2.9.9-cp312-cp312-linux_x86_64.whl", "b" * 64
    )
    c = sbom.python_component(d)
    assert c.pedigree is not None
    (sdist,) = c.pedigree.ancestors
    assert str(sdist.purl) == "pkg:pypi/psycopg2@2.9.9?ext=sdist" and not sdist.hashes


# --------------------------------------------------------------------------- in the registry

SITE_IN_LAYER = SITE.lstrip("/")


def put_image(client: api.Registry, layers: list[bytes], labels: dict[str, str]) -> api.Manifest:
    """An image of gzipped ``layers`` in the fake registry's wd/app, labelled ``labels``."""
    descs = []
    for raw in layers:
        blob = gzip.compress(raw, mtime=0)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_bytes("wd/app", blob, digest)
        descs.append({"mediaType": api.DOCKER_LAYER, "digest": digest, "size": len(blob)})
    config = json.dumps({"config": {"Labels": labels}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_bytes("wd/app", config, config_digest)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": api.DOCKER_MANIFEST,
            "config": {"mediaType": api.DOCKER_CONFIG, "digest": config_digest},
            "layers": descs,
        }
    ).encode()
    digest = client.put_manifest("wd/app", "latest", body, api.DOCKER_MANIFEST)
    return api.Manifest(digest, api.DOCKER_MANIFEST, body)


def venv_layer() -> bytes:
    members = {
        f"{SITE_IN_LAYER}/{stem}.dist-info/METADATA": METADATA[name]
        for name, stem in (("flask", "flask-3.0.0"), ("zope.interface", "zope.interface-6.0"))
    }
    members[f"{SITE_IN_LAYER}/flask/__init__.py"] = b"x = 1\n"
    return tar_files(members)


def remote_of(client: api.Registry, image: api.Manifest, cache: str = "") -> remote.Remote:
    config = json.loads(client.blob("wd/app", image.data["config"]["digest"]))
    return remote.Remote(client, "wd/app", image.digest, config, cache)


IMAGE_LABELS = {LAYERS_LABEL: json.dumps([["source", "k", "sha256:x"]]), DEPS_DEPTH_LABEL: "0"}
IDS = [w.id for w in WHEELS]


def test_a_layer_is_streamed_keeping_only_the_wanted_files(registry: str) -> None:
    client = api.Registry(registry, None, timeout=5)
    image = put_image(client, [venv_layer()], {})
    digest = image.data["layers"][0]["digest"]
    found = client.layer_files("wd/app", digest, lambda name: name.endswith("/METADATA"))
    assert found == {
        f"{SITE_IN_LAYER}/flask-3.0.0.dist-info/METADATA": METADATA["flask"],
        f"{SITE_IN_LAYER}/zope.interface-6.0.dist-info/METADATA": METADATA["zope.interface"],
    }
    # a blob that is not what its digest says is refused
    FakeRegistry.blobs["wd/app"][digest] = gzip.compress(tar_files({"a": b"b"}))
    with pytest.raises(RegistryError, match="does not match its digest"):
        client.layer_files("wd/app", digest, lambda name: True)


def test_the_cache_sbom_gives_every_distribution(registry: str) -> None:
    """A fresh runner's push: the SBOM beside the cache lists the deps label's wheels
    (same file, same sha256 prefix): taken whole, no layer read."""
    client = api.Registry(registry, None, timeout=5)
    engine = FakeEngine(images={"deps": BASE, BASE.id: BASE}, paths=paths())
    dists, base = records(engine)
    cache = put_image(client, [b"not a tar"], IMAGE_LABELS)
    doc = sbom.make_bom(sbom.ImageFacts("app", "sha256:" + "e" * 64), dists, base, "0.1.0")
    body = sbom.to_json(doc).encode()
    attach.attach(client, "wd/app", cache, [attach.Document(sbom.MEDIA_TYPE, body, "sbom")])
    image = put_image(client, [b"also not a tar", b"app"], IMAGE_LABELS)
    where = remote_of(client, image, f"{registry}/wd/app@{cache.digest}")
    assert remote.distributions(where, IDS, {}, {}) == dists  # the layers were not read
    # a wheel the SBOM does not list: the rest from the layers (read, and failing here)
    with pytest.raises(RegistryError, match="is not a layer tar"):
        remote.distributions(where, [*IDS, "extra-1.0-py3-none-any.whl@" + "f" * 16], {}, {})


def test_without_an_sbom_the_deps_layer_metadata_is_read(registry: str) -> None:
    client = api.Registry(registry, None, timeout=5)
    base_layer = tar_files({"var/lib/dpkg/status": DPKG.encode()})
    image = put_image(client, [base_layer, venv_layer(), b"app"], IMAGE_LABELS)
    where = remote_of(client, image)
    assert remote.deps_layer_digests(where) == [image.data["layers"][1]["digest"]]
    sha = {WHEELS[0].filename: WHEELS[0].sha256}
    found = remote.distributions(where, IDS[:1] + IDS[2:], sha, {})
    assert [(d.name, d.version, d.sha256, d.license) for d in found] == [
        ("Flask", "3.0.0", "a" * 64, "BSD-3-Clause"),
        ("zope.interface", "6.0", "", "Zope Public License"),  # no full hash known here
    ]
    # which push_beside then names in a warning
    doc = sbom.make_bom(sbom.ImageFacts("app", "sha256:" + "e" * 64), found, None, "0.1.0")
    assert sbom.unhashed(json.loads(sbom.to_json(doc))) == "zope.interface 6.0"


def test_a_package_added_reads_only_its_own_metadata() -> None:
    """The deps key of a grown layer is new, but every wheel but the added one was read
    for the layer before it: only the new wheel's METADATA is read (a cold layer's are
    read once each), and a METADATA that could not be read is not remembered."""
    engine = FakeEngine(images={"deps": BASE, BASE.id: BASE}, paths=paths())
    gather.record_supply(engine, "python:3.12", BASE, "deps-key-1", "deps", WHEELS[:2], {}, PKEY)
    first = [p for _, p in engine.reads if p.endswith("/METADATA")]
    assert sorted(first) == sorted(
        f"{SITE}/{stem}.dist-info/METADATA" for stem in ("flask-3.0.0", "psycopg2-2.9.9")
    )
    engine.reads.clear()
    gather.record_supply(engine, "python:3.12", BASE, "deps-key-2", "deps", WHEELS, {}, PKEY)
    assert [p for _, p in engine.reads] == [f"{SITE}/zope.interface-6.0.dist-info/METADATA"]
    dists = gather.load_deps("deps-key-2")
    assert dists is not None
    assert [(d.name, d.license) for d in dists] == [
        ("Flask", "BSD-3-Clause"),
        ("psycopg2", "LGPL with exceptions"),
        ("zope.interface", "Zope Public License"),
    ]
    # a METADATA the image lacks: the name from the wheel, and read again next time
    unread = Wheel("unread-1.0-py3-none-any.whl", "unread", "1.0", "e" * 64, 10)
    engine.reads.clear()
    gather.record_supply(
        engine, "python:3.12", BASE, "deps-key-3", "deps", [*WHEELS, unread], {}, PKEY
    )
    gather.record_supply(
        engine, "python:3.12", BASE, "deps-key-4", "deps", [*WHEELS, unread], {}, PKEY
    )
    assert [p for _, p in engine.reads] == [f"{SITE}/unread-1.0.dist-info/METADATA"] * 2
    dists = gather.load_deps("deps-key-4")
    assert dists is not None
    assert [(d.name, d.license) for d in dists if d.sha256 == "e" * 64] == [("unread", "")]
