"""SBOM and provenance, for real: an app with a C extension compiled from the local
index's sdist is built, `nox -s sbom` names every distribution of the image's virtualenv
(as Python inside the image lists them) and python3 among the base image's Debian
packages; after `--push` to a loopback registry (Debian's docker-registry: no referrers
API), the image's SBOM and provenance are found beside it through the fallback tag; and
a fresh runner (no host cache, an empty volume, no image of the app) building with
`--cache-from REF --push-only` pushes them too, read from the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import App, cleanup, output
from pkgindex import Index
from test_registry import nox_on

from nox_warpdrive.engine import Engine
from nox_warpdrive.engine import registry_api as api
from nox_warpdrive.labels import DEPS_WHEELS_LABEL
from nox_warpdrive.supply import remote

#: what Python inside the image says its virtualenv holds
LIST_VENV = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted([d.metadata['Name'].lower(), d.version] for d in m.distributions())))"
)


def venv_of(engine: Engine, ref: str) -> list[list[str]]:
    client = engine.client  # type: ignore[attr-defined]
    out = output(client, ref, ["python", "-c", LIST_VENV], entrypoint=[], network_mode="none")
    return [list(x) for x in json.loads(out)]


def registry_json(client: api.Registry, repo: str, digest: str) -> dict[str, Any]:
    found = client.raw_manifest(repo, digest)
    assert found is not None, digest
    return found.data


def test_the_sbom_and_provenance_of_a_pushed_image(
    make_app: Any, engine: Engine, index: Index, registry: str, tmp_path: Path
) -> None:
    app: App = make_app()
    app.image = f"{registry}/{app.name}:latest"
    app.write()
    code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
    assert code == 0 and f"pushed {app.image}" in text, text
    assert "SBOM and provenance pushed beside" in text and "sha256-" in text, text
    assert "Traceback" not in text, text

    out = tmp_path / "sbom.json"
    prov = tmp_path / "provenance.json"
    args = ("--output", str(out), "--provenance", str(prov))
    code, text = nox_on(app, None, index, "-s", "sbom", "--", *args)
    assert code == 0 and "Python distributions" in text, text
    local = json.loads(prov.read_text())
    assert local["predicateType"] == "https://slsa.dev/provenance/v1"
    doc = json.loads(out.read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    pypi = {c["purl"]: c for c in doc["components"] if c.get("purl", "").startswith("pkg:pypi/")}
    listed = sorted([c["name"].lower(), c["version"]] for c in pypi.values())
    assert listed == venv_of(engine, app.image), text
    assert "py_serializable" not in text, text
    info = engine.image(app.image)
    assert info is not None
    assert local["subject"][0]["digest"]["sha256"] == info.id.split(":")[1]
    # the server's license, as its installed metadata declares it
    gunicorn = next(c for c in pypi.values() if c["name"].lower() == "gunicorn")
    assert gunicorn.get("licenses"), gunicorn
    prefixes = {w.split("@")[1] for w in json.loads(info.labels[DEPS_WHEELS_LABEL])}
    for purl, c in pypi.items():
        assert purl == f"pkg:pypi/{c['name'].lower().replace('_', '-')}@{c['version']}"
        (sha,) = [h["content"] for h in c["hashes"] if h["alg"] == "SHA-256"]
        assert len(sha) == 64 and sha[:16] in prefixes, c
    cext = next(c for c in pypi.values() if c["name"].lower().replace("_", "-") == "wd-cext-demo")
    props = {p["name"]: p["value"] for p in cext.get("properties", [])}
    assert props.get("nox-warpdrive:compiled-in-builder") == "true", cext
    debs = [c for c in doc["components"] if c.get("purl", "").startswith("pkg:deb/debian/python3@")]
    assert debs and "arch=" in debs[0]["purl"], doc["components"][:3]

    # in the registry: the image, and its SBOM and provenance through the fallback tag
    parsed = api.parse_ref(app.image)
    client = api.Registry(parsed.registry, None, timeout=10)
    image = client.raw_manifest(parsed.repository, "latest")
    assert image is not None
    tag = "sha256-" + image.digest.split(":")[1]
    index_doc = registry_json(client, parsed.repository, tag)
    kinds = {m["artifactType"]: m for m in index_doc["manifests"]}
    assert set(kinds) == {"application/vnd.cyclonedx+json", "application/vnd.in-toto+json"}
    bodies = {}
    for kind, entry in kinds.items():
        artifact = registry_json(client, parsed.repository, entry["digest"])
        assert artifact["subject"]["digest"] == image.digest
        assert artifact["artifactType"] == kind
        bodies[kind] = json.loads(
            client.blob(parsed.repository, artifact["layers"][0]["digest"], limit=64 << 20)
        )
    assert bodies["application/vnd.cyclonedx+json"]["bomFormat"] == "CycloneDX"
    statement = bodies["application/vnd.in-toto+json"]
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["digest"]["sha256"] == image.digest.split(":")[1]

    # pushed again: the fallback tag is updated, not added to (the same two artifacts)
    code, text = nox_on(app, None, index, "-s", "image", "--", "--push")
    assert code == 0 and "SBOM and provenance pushed beside" in text, text
    again = registry_json(client, parsed.repository, tag)
    assert sorted(m["digest"] for m in again["manifests"]) == sorted(
        m["digest"] for m in index_doc["manifests"]
    )

    # built in the registry (--push-only, a code change): its labels are read there
    app.write("hello-v2")
    code, text = nox_on(app, None, index, "-s", "image", "--", "--push-only")
    assert code == 0 and "built in the registry" in text, text
    assert "SBOM and provenance pushed beside" in text and "Traceback" not in text, text
    moved = client.raw_manifest(parsed.repository, "latest")
    assert moved is not None and moved.digest != image.digest
    found = registry_json(client, parsed.repository, "sha256-" + moved.digest.split(":")[1])
    assert {m["artifactType"] for m in found["manifests"]} == set(kinds)
    for entry in found["manifests"]:
        artifact = registry_json(client, parsed.repository, entry["digest"])
        assert artifact["subject"]["digest"] == moved.digest

    # a fresh CI runner: no host cache, a new volume, no image of the app on the engine
    cleanup(engine, app)
    app.volume += "-runner"
    app.write("hello-v3")
    fresh = {"XDG_CACHE_HOME": str(tmp_path / "runner-cache")}
    args = ("--cache-from", app.image, "--push-only")
    code, text = nox_on(app, None, index, "-s", "image", "--", *args, env_extra=fresh)
    assert code == 0 and "built in the registry" in text and "nothing pulled" in text, text
    assert "SBOM and provenance pushed beside" in text and "warning" not in text, text
    assert engine.image(app.image) is None and not engine.volume_exists(app.volume)
    latest = client.raw_manifest(parsed.repository, "latest")
    assert latest is not None and latest.digest != moved.digest
    entries = registry_json(client, parsed.repository, "sha256-" + latest.digest.split(":")[1])
    docs = {}
    for entry in entries["manifests"]:
        artifact = registry_json(client, parsed.repository, entry["digest"])
        assert artifact["subject"]["digest"] == latest.digest
        blob = client.blob(parsed.repository, artifact["layers"][0]["digest"], limit=64 << 20)
        docs[artifact["artifactType"]] = json.loads(blob)
    assert set(docs) == set(kinds)
    runner = {
        c["purl"]: c
        for c in docs["application/vnd.cyclonedx+json"]["components"]
        if c.get("purl", "").startswith("pkg:pypi/")
    }
    assert sorted([c["name"].lower(), c["version"]] for c in runner.values()) == listed
    for purl, c in runner.items():
        (sha,) = [h["content"] for h in c["hashes"] if h["alg"] == "SHA-256"]
        assert sha == pypi[purl]["hashes"][0]["content"] and sha[:16] in prefixes, c
    runner_debs = docs["application/vnd.cyclonedx+json"]["components"]
    assert any(c.get("purl", "").startswith("pkg:deb/debian/python3@") for c in runner_debs)
    statement = docs["application/vnd.in-toto+json"]
    assert statement["subject"][0]["digest"]["sha256"] == latest.digest.split(":")[1]

    # the deps layers' installed metadata, streamed from their blobs (the other source,
    # for a cache with no SBOM beside it): every distribution of the virtualenv
    config = json.loads(client.blob(parsed.repository, latest.data["config"]["digest"]))
    where = remote.Remote(client, parsed.repository, latest.digest, config)
    meta = remote.installed_metadata(where)
    assert sorted(n.lower() for n, _ in meta.values()) == [n for n, _ in listed]
    assert any(lic for _, lic in meta.values())
