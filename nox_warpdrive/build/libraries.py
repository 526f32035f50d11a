"""Shared libraries a deps layer needs and its base image lacks: what the deps step
found (runtime/assemble.py, `ldd` in the base image), told as the error a user can act
on: the library, the packages whose files need it, the Debian package that provides it,
and the fix. A wheel compiled in the builder (uwsgi, linking libpython3.X.so) fits the
platform key but not the base image: without this, the image fails only when it starts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BuildError
from ..layout import VENV

#: Debian's package of a few libraries wheels compiled in a builder often link (names as
#: in bookworm; a later release may add a suffix such as t64): used when the builder
#: cannot say (dpkg -S)
_DEBIAN = (
    (re.compile(r"libpython(\d+\.\d+t?)\.so\.1(\.0)?$"), r"libpython\1"),
    (re.compile(r"libpq\.so\.5$"), "libpq5"),
    (re.compile(r"libmariadb\.so\.3$"), "libmariadb3"),
    (re.compile(r"libmysqlclient\.so\.(\d+)$"), r"libmysqlclient\1"),
    (re.compile(r"libjpeg\.so\.62$"), "libjpeg62-turbo"),
    (re.compile(r"libxml2\.so\.2$"), "libxml2"),
    (re.compile(r"lib(?:e)?xslt\.so\.[01]$"), "libxslt1.1"),
    (re.compile(r"libyaml-0\.so\.2$"), "libyaml-0-2"),
    (re.compile(r"libgeos_c\.so\.1$"), "libgeos-c1v5"),
    (re.compile(r"libmagic\.so\.1$"), "libmagic1"),
    (re.compile(r"libGL\.so\.1$"), "libgl1"),
    (re.compile(r"libglib-2\.0\.so\.0$"), "libglib2.0-0"),
    (re.compile(r"libgomp\.so\.1$"), "libgomp1"),
    (re.compile(r"libjansson\.so\.4$"), "libjansson4"),
    (re.compile(r"libpcre2-8\.so\.0$"), "libpcre2-8-0"),
    (re.compile(r"libzmq\.so\.5$"), "libzmq5"),
    (re.compile(r"libsqlite3\.so\.0$"), "libsqlite3-0"),
    (re.compile(r"libz\.so\.1$"), "zlib1g"),
    (re.compile(r"libuuid\.so\.1$"), "libuuid1"),
    (re.compile(r"libcap\.so\.2$"), "libcap2"),
)


def debian_package(library: str) -> str | None:
    """The Debian package that provides ``library`` (a soname), when the table knows."""
    for pattern, package in _DEBIAN:
        if pattern.match(library):
            return pattern.sub(package, library)
    return None


def parse_dpkg_search(output: str, libraries: Sequence[str]) -> dict[str, str]:
    """{library: package} from `dpkg -S LIB...` (``pkg:arch: /path/LIB``), matching a
    library only by the file's own name (dpkg matches any path containing it)."""
    found: dict[str, str] = {}
    wanted = set(libraries)
    for line in output.splitlines():
        owner, sep, path = line.partition(": /")
        name = path.rsplit("/", 1)[-1]
        if sep and name in wanted and name not in found and " " not in owner:
            found[name] = owner.split(",")[0].split(":")[0]
    return found


def dpkg_command(libraries: Sequence[str]) -> list[str]:
    """What lists the packages owning these files in the builder image (it has the -dev
    packages, so the libraries too): run only when a library is missing."""
    return [
        "sh",
        "-c",
        'command -v dpkg >/dev/null && dpkg -S "$@" 2>/dev/null; true',
        "-",
        *libraries,
    ]


def parse_report(data: Any) -> dict[str, list[dict[str, str]]]:
    """The deps step's report ({library: [{file, package}]}) from its line's data
    (protocol.parse); {} when it is not one."""
    if not isinstance(data, dict):
        return {}
    report: dict[str, list[dict[str, str]]] = {}
    for lib, needs in data.items():
        if isinstance(lib, str) and isinstance(needs, list):
            report[lib] = [
                {"file": str(n.get("file", "")), "package": str(n.get("package") or "")}
                for n in needs
                if isinstance(n, dict)
            ]
    return report


def _short(path: str) -> str:
    """A file of the virtualenv as the user knows it: bin/uwsgi, site-packages/x/y.so."""
    rel = path[len(VENV) + 1 :] if path.startswith(VENV + "/") else path
    return re.sub(r"^lib/python[^/]+/site-packages/", "site-packages/", rel)


class MissingLibraries(BuildError):
    """Files of the deps layer need shared libraries the base image lacks."""

    def __init__(
        self,
        report: Mapping[str, Sequence[Mapping[str, str]]],
        base_image: str = "",
        packages: Mapping[str, str] | None = None,
    ) -> None:
        self.report = {lib: [dict(n) for n in needs] for lib, needs in report.items()}
        self.base_image = base_image
        self.packages = dict(packages or {})
        message, fix = missing_message(self.report, base_image, self.packages)
        super().__init__(message, fix=fix)

    def named(self, base_image: str, packages: Mapping[str, str]) -> MissingLibraries:
        """The same error, naming the base image and the Debian packages found."""
        return MissingLibraries(self.report, base_image, {**self.packages, **packages})


def missing_message(
    report: Mapping[str, Sequence[Mapping[str, str]]],
    base_image: str,
    packages: Mapping[str, str],
) -> tuple[str, str]:
    """(message, fix): each library, its Debian package when known, the packages and
    files that need it; then what to do."""
    where = f"the base image {base_image}" if base_image else "the base image"
    lines = [
        f"the virtualenv needs shared libraries that {where} lacks: an image built on it "
        "would fail when it starts"
    ]
    debs: list[str] = []
    users: list[str] = []
    for lib, needs in sorted(report.items()):
        deb = packages.get(lib) or debian_package(lib)
        if deb and deb not in debs:
            debs.append(deb)
        dists = sorted({n["package"] for n in needs if n.get("package")})
        users += [d for d in dists if d not in users]
        files = [_short(n["file"]) for n in needs][:3]
        more = f" and {len(needs) - 3} more" if len(needs) > 3 else ""
        lines.append(
            f"  {lib}"
            + (f" (Debian package {deb})" if deb else "")
            + f": needed by {', '.join(dists) or 'files'} ({', '.join(files)}{more})"
        )
    install = (
        f"`RUN apt-get install -y --no-install-recommends {' '.join(debs)}`"
        if debs
        else "the packages that provide them"
    )
    server = any(u.lower() in ("uwsgi", "mod-wsgi", "mod_wsgi") for u in users)
    fix = (
        f"add them to the base image ({install} in its Dockerfile) and set `base-image` to "
        f"it, or do without {', '.join(users) or 'the packages that need them'}"
        + (" (another `server`, and that server out of the requirements)" if server else "")
        + "; nothing was tagged"
    )
    return "\n".join(lines), fix
