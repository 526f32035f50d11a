"""Platform keys: what a wheel is valid for, probed by running Python inside an image.

A wheel built in the builder image may only be installed in the base image when both
agree on interpreter, ABI, platform tag, libc (and its version: a wheel linked against
a newer glibc fails to import on an older one) and distro (system libraries such as
libpq differ between distros even when the tags agree). The key is computed *inside*
the image, never guessed from its name.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields

from .errors import PlatformMismatchError, WarpdriveError
from .refs import split_ref

#: Runs inside the image with its own ``python3``: stdlib only, prints one JSON line.
PROBE_SCRIPT = r"""
import json, os, platform, sys, sysconfig
impl = sys.implementation.name
short = {"cpython": "cp", "pypy": "pp"}.get(impl, impl)
ver = "%d%d" % sys.version_info[:2]
soabi = sysconfig.get_config_var("SOABI") or ""
if impl == "cpython":
    abi = "cp" + ver + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
else:
    abi = soabi.replace("-", "_").replace(".", "_") or "none"
plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
libc, libc_ver = platform.libc_ver()
if not libc:
    try:
        import subprocess
        out = subprocess.run(["ldd", "--version"], capture_output=True, text=True).stderr
        if "musl" in out.lower():
            libc = "musl"
            libc_ver = out.split("Version", 1)[1].split()[0] if "Version" in out else ""
    except Exception:
        pass
osr = {}
for path in ("/etc/os-release", "/usr/lib/os-release"):
    try:
        with open(path) as fh:
            for line in fh:
                k, sep, v = line.strip().partition("=")
                if sep:
                    osr[k] = v.strip().strip('"')
        break
    except OSError:
        pass
iv = sys.implementation.version
iver = "%d.%d.%d" % iv[:3]
if iv.releaselevel != "final":
    iver += iv.releaselevel[0] + str(iv.serial)
markers = {
    "implementation_name": impl,
    "implementation_version": iver,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
print("WARPDRIVE-PROBE " + json.dumps({
    "interpreter": short + ver,
    "abi": abi,
    "platform": plat,
    "libc": libc or "unknown",
    "libc_version": libc_ver or "",
    "distro": osr.get("ID", "unknown"),
    "distro_version": osr.get("VERSION_ID", osr.get("VERSION_CODENAME", "")),
    "python_version": platform.python_version(),
    "executable": sys.executable,
    "markers": markers,
}))
"""

PROBE_MARKER = "WARPDRIVE-PROBE "


#: the PEP 508 environment markers the probe reports (computed inside the image)
MARKER_NAMES = (
    "implementation_name",
    "implementation_version",
    "os_name",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_full_version",
    "python_version",
    "sys_platform",
)


@dataclass(frozen=True)
class PlatformKey:
    """Everything a built wheel depends on. ``python_version`` and ``executable`` are
    informational: patch releases share an ABI, so they are not part of the key's
    identity. ``markers`` are the image's PEP 508 marker values (lock files are read for
    the image, not for the host); the kernel's release and version are among them and
    differ between engines, so they are not part of equality either."""

    interpreter: str
    abi: str
    platform: str
    libc: str
    libc_version: str
    distro: str
    distro_version: str
    python_version: str = ""
    executable: str = "python3"
    markers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def marker_environment(self) -> dict[str, str]:
        """The probed marker values, as ``packaging.markers`` takes them (empty when the
        key came from an older probe)."""
        return dict(self.markers)

    @property
    def identity(self) -> tuple[str, ...]:
        return (
            self.interpreter,
            self.abi,
            self.platform,
            self.libc,
            self.libc_version,
            self.distro,
            self.distro_version,
        )

    @property
    def slug(self) -> str:
        """A directory name for this key inside the wheelhouse volume."""
        raw = (
            f"{self.interpreter}-{self.abi}-{self.platform}-"
            f"{self.libc}{self.libc_version}-{self.distro}{self.distro_version}"
        )
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)

    def describe(self) -> str:
        return (
            f"{self.interpreter}/{self.abi} {self.platform} {self.libc} {self.libc_version} "
            f"{self.distro} {self.distro_version} (Python {self.python_version})"
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["markers"] = dict(self.markers)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PlatformKey:
        names = {f.name for f in fields(cls)} - {"markers"}
        raw = data.get("markers")
        markers = (
            tuple(sorted((str(k), str(v)) for k, v in raw.items() if k in MARKER_NAMES))
            if isinstance(raw, dict)
            else ()
        )
        return cls(**{k: str(v) for k, v in data.items() if k in names}, markers=markers)


def parse_probe_output(output: str, image: str) -> PlatformKey:
    """Find the probe's line in a container's output (the image may print banners)."""
    for line in output.splitlines():
        if line.startswith(PROBE_MARKER):
            try:
                return PlatformKey.from_dict(json.loads(line[len(PROBE_MARKER) :]))
            except (ValueError, TypeError, AttributeError):
                break
    raise WarpdriveError(
        f"could not probe the Python platform of image {image!r}; its output was:\n"
        + output.strip()[-2000:],
        fix="the image needs a working `python3` on PATH (or set `python` in [tool.warpdrive])",
    )


def mismatches(builder: PlatformKey, base: PlatformKey) -> list[str]:
    """Names of the key fields in which two images differ."""
    names = ("interpreter", "abi", "platform", "libc", "libc_version", "distro", "distro_version")
    return [n for n in names if getattr(builder, n) != getattr(base, n)]


def check_compatible(
    builder_image: str, builder: PlatformKey, base_image: str, base: PlatformKey
) -> None:
    """Refuse a builder whose wheels would not fit the base image."""
    diff = mismatches(builder, base)
    if diff:
        raise PlatformMismatchError(
            "the builder image and the base image have different platform keys "
            f"(they differ in {', '.join(diff)}):\n"
            f"  builder-image {builder_image}: {builder.describe()}\n"
            f"  base-image    {base_image}: {base.describe()}",
            fix="use a builder image made from the same base (same distro release and Python "
            "build), e.g. the base image plus compilers; or drop `builder-image` to build in "
            "the base image itself",
        )


# --------------------------------------------------------------------------- target platforms

#: what `uname -m` / Python's platform.machine() and other tools say, in the OCI names
#: Docker uses for an image's architecture
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}


@dataclass(frozen=True, order=True)
class Platform:
    """An image platform as OCI image indexes and ``docker --platform`` name it:
    ``os/architecture[/variant]`` (``linux/amd64``, ``linux/arm64``, ``linux/arm/v7``).
    Not a PlatformKey: this says which CPU the image's binaries are for, the key what a
    wheel needs (probed inside that image)."""

    os: str
    arch: str
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")

    @property
    def slug(self) -> str:
        """For names (tags, directories): ``linux-arm64``, ``linux-arm-v7``."""
        return str(self).replace("/", "-")

    def matches(self, other: Platform) -> bool:
        """The same platform; an empty variant (on either side) matches any (an arm64
        image says "v8" or nothing)."""
        same = self.os == other.os and self.arch == other.arch
        return same and (not self.variant or not other.variant or self.variant == other.variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` (``linux/arm64``); ``x86_64``/``aarch64`` are taken for their
    OCI names. A ConfigError names what is wrong and shows the syntax."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(re.fullmatch(r"[a-z0-9_.-]+", p) for p in parts):
        raise WarpdriveError(
            f"{text!r} is not a platform",
            fix='write it as OS/ARCH[/VARIANT], e.g. "linux/amd64", "linux/arm64", '
            '"linux/arm/v7"; several: a comma list (--platform linux/amd64,linux/arm64)',
        )
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else "")


def parse_platforms(values: list[str] | tuple[str, ...] | str) -> tuple[Platform, ...]:
    """Platforms from a list or a comma list, in the order given, each once."""
    items = values.split(",") if isinstance(values, str) else list(values)
    found = [parse_platform(v) for item in items for v in str(item).split(",") if v.strip()]
    return tuple(dict.fromkeys(found))


def platform_of(os_: str, arch: str, variant: str = "") -> Platform:
    """An image's or engine's platform from what ``docker inspect``/``docker version``
    say (the engine's ``x86_64`` and the like taken for their OCI names)."""
    return Platform(os_.lower() or "linux", _ARCH_ALIASES.get(arch.lower(), arch.lower()), variant)


def platform_ref(ref: str, platform: Platform) -> str:
    """The local tag of ``ref``'s image for one platform, ``repo:tag-linux-arm64``: a
    build of several platforms tags the ones not the engine's own so (and pushes each
    under it before the index); a base image pulled for another platform is kept so."""
    repo, tag = split_ref(ref)
    return f"{repo}:{tag}-{platform.slug}"
