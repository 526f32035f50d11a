"""The image's CycloneDX 1.6 SBOM, made with the CycloneDX project's own library
(cyclonedx-python-lib): the image, every distribution of its virtualenv (``pkg:pypi``
purls, the installed wheel's sha256, the license its metadata declares, the sdist a wheel
compiled here came from), the base image and its Debian packages (``pkg:deb`` purls).

The document is a function of the image: its serial number is derived from the image id
and its timestamp is the image's created label (SOURCE_DATE_EPOCH), so the same image
gives the same bytes."""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.license import License
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from ..refs import named_registry
from .gather import BaseRecord, DebPackage, Distribution

#: the SBOM's media type (an OCI artifact's artifactType and layer type)
MEDIA_TYPE = "application/vnd.cyclonedx+json"
#: the namespace the serial number is derived in (uuid5 of the image id)
SERIAL_NAMESPACE = uuid.UUID("6f1d3c2e-7b0a-5d4e-9c1f-2a3b4c5d6e7f")
PROP = "nox-warpdrive"


@dataclass(frozen=True)
class ImageFacts:
    """The image an SBOM describes."""

    ref: str
    image_id: str
    #: RFC 3339 (its created label), or "" (then the epoch)
    created: str = ""
    #: the manifest digest in a registry, once pushed ("" before)
    digest: str = ""


def make_bom(
    image: ImageFacts,
    dists: Iterable[Distribution],
    base: BaseRecord | None,
    tool_version: str,
) -> Bom:
    """The SBOM: the image is the described component; it depends on each distribution
    and on the base image, which depends on each of its Debian packages."""
    root = Component(
        type=ComponentType.CONTAINER,
        name=image.ref,
        version=image.digest or image.image_id,
        bom_ref="image",
        hashes=_sha256(image.image_id),
        properties=[Property(name=f"{PROP}:image-id", value=image.image_id)],
    )
    bom = Bom(
        serial_number=uuid.uuid5(SERIAL_NAMESPACE, image.image_id),
        metadata=BomMetaData(component=root, timestamp=_when(image.created)),
    )
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="nox-warpdrive", version=tool_version)
    )
    python = [python_component(d) for d in sorted(dists, key=lambda d: d.name.lower())]
    for c in python:
        bom.components.add(c)
    needs = list(python)
    if base is not None:
        base_c = base_component(base)
        debs = [deb_component(p, base.distro_version) for p in base.packages]
        for c in (base_c, *debs):
            bom.components.add(c)
        bom.register_dependency(base_c, debs)
        needs.append(base_c)
    bom.register_dependency(root, needs)
    return bom


def to_json(bom: Bom) -> str:
    """The document as CycloneDX 1.6 JSON."""
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def pypi_purl(name: str, version: str) -> PackageURL:
    """``pkg:pypi/<normalized name>@<version>`` (PEP 503 names, as the purl spec asks:
    lowercase, dashes)."""
    return PackageURL(type="pypi", name=canonicalize_name(name), version=version)


def deb_purl(pkg: DebPackage, distro_version: str = "") -> PackageURL:
    qualifiers: dict[str, str] = {"arch": pkg.arch} if pkg.arch else {}
    if distro_version:
        qualifiers["distro"] = f"debian-{distro_version}"
    return PackageURL(
        type="deb", namespace="debian", name=pkg.name, version=pkg.version, qualifiers=qualifiers
    )


def python_component(d: Distribution) -> Component:
    purl = pypi_purl(d.name, d.version)
    props = [Property(name=f"{PROP}:wheel", value=d.wheel)]
    pedigree = None
    if d.compiled_here:
        props.append(Property(name=f"{PROP}:compiled-in-builder", value="true"))
        if not d.built_from.startswith("project:"):
            pedigree = Pedigree(ancestors=[_sdist(purl.name, d.version, d.built_from)])
    return Component(
        type=ComponentType.LIBRARY,
        name=d.name,
        version=d.version,
        bom_ref=str(purl),
        purl=purl,
        hashes=_sha256(d.sha256),
        licenses=_licenses(d.license),
        properties=props,
        pedigree=pedigree,
    )


def _sdist(name: str, version: str, sha256: str) -> Component:
    """The source distribution a wheel compiled here came from (its sha256 when the
    wheelhouse recorded it: a locked sdist)."""
    return Component(
        type=ComponentType.LIBRARY,
        name=name,
        version=version,
        bom_ref=f"sdist:{name}@{version}",
        purl=PackageURL(type="pypi", name=name, version=version, qualifiers={"ext": "sdist"}),
        hashes=_sha256(sha256),
        description="the source distribution this wheel was compiled from",
    )


def base_component(base: BaseRecord) -> Component:
    props = [Property(name=f"{PROP}:image-id", value=base.image_id)]
    props += [Property(name=f"{PROP}:repo-digest", value=d) for d in base.repo_digests]
    purl = None
    if base.repo_digests:
        repo, _, digest = base.repo_digests[0].partition("@")
        if named_registry(repo) is None:  # Docker Hub, as Docker names it
            repo = "docker.io/" + (repo if "/" in repo else f"library/{repo}")
        purl = PackageURL(
            type="oci",
            name=repo.rsplit("/", 1)[-1],
            version=digest,
            qualifiers={"repository_url": repo},
        )
    return Component(
        type=ComponentType.CONTAINER,
        name=base.ref,
        version=base.repo_digests[0].partition("@")[2] if base.repo_digests else base.image_id,
        bom_ref="base-image",
        purl=purl,
        hashes=_sha256(base.image_id),
        properties=props,
    )


def deb_component(pkg: DebPackage, distro_version: str = "") -> Component:
    purl = deb_purl(pkg, distro_version)
    props = [Property(name=f"{PROP}:deb-source", value=pkg.source)] if pkg.source else []
    return Component(
        type=ComponentType.LIBRARY if pkg.name.startswith("lib") else ComponentType.APPLICATION,
        name=pkg.name,
        version=pkg.version,
        bom_ref=str(purl),
        purl=purl,
        properties=props,
    )


def _licenses(text: str) -> list[License]:
    if not text:
        return []
    return [LicenseFactory().make_from_string(text)]


def _sha256(digest: str) -> list[HashType]:
    """The SHA-256 hash entry of a digest (``sha256:<hex>`` or hex); none when it is not
    one (the schema takes only well-formed hashes)."""
    content = digest.split(":")[-1].lower()
    if not re.fullmatch(r"[0-9a-f]{64}", content):
        return []
    return [HashType(alg=HashAlgorithm.SHA_256, content=content)]


def _when(created: str) -> _dt.datetime:
    try:
        return _dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
    except ValueError:
        return _dt.datetime.fromtimestamp(0, _dt.UTC)


def summary(doc: Mapping[str, object]) -> str:
    """One line: how many components of each kind the document lists."""
    comps = doc.get("components")
    items = comps if isinstance(comps, list) else []
    pypi = sum(1 for c in items if str(c.get("purl", "")).startswith("pkg:pypi/"))
    deb = sum(1 for c in items if str(c.get("purl", "")).startswith("pkg:deb/"))
    return f"{pypi} Python distributions, {deb} Debian packages"


def unhashed(doc: Mapping[str, object]) -> str:
    """The Python distributions a document lists without a SHA-256 hash, named ("" none)."""
    comps = doc.get("components")
    items = comps if isinstance(comps, list) else []
    names = [
        f"{c.get('name')} {c.get('version')}"
        for c in items
        if str(c.get("purl", "")).startswith("pkg:pypi/") and not c.get("hashes")
    ]
    return ", ".join(names)
