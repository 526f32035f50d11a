"""The libraries an ELF file needs, and those another CPU's image has, read as data.

A foreign deps layer is installed natively, in the engine's own image of the base (see
build/foreign_deps.py); `ldd` there cannot load the target's files, and running it in the
target image means a container under emulation. But what `ldd` reports missing is
decided by data: each file's DT_NEEDED sonames, its DT_RPATH/DT_RUNPATH directories, and
the target's loader cache (/etc/ld.so.cache, read out of the target image on the host).
This module reads both (standard library only: it runs beside assemble.py in the twin,
and the host imports it) so the check needs no emulated container where that data says
all is there. What it cannot tell (no loader cache, a file it cannot read, a library it
does not find) is checked in the target image as before.
"""

import os
import struct
from typing import List, Optional, Sequence, Set, Tuple

#: the ELF dynamic tags read here
DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29
PT_LOAD, PT_DYNAMIC = 1, 2
#: e_machine of the CPUs the loader cache is filtered for, and the cache's flag for them
#: (glibc's FLAG_X8664_LIB64, FLAG_AARCH64_LIB64)
CACHE_ARCH = {"x86_64": 0x0300, "aarch64": 0x0A00}
_FLAG_REQUIRED_MASK = 0xFF00
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"


class ElfError(ValueError):
    """A file that says it is ELF but cannot be read as one (truncated, odd layout)."""


class ElfInfo:
    """What the loader reads of one file to find its libraries."""

    def __init__(
        self, machine: int, needed: List[str], rpath: List[str], runpath: List[str]
    ) -> None:
        self.machine = machine  # e_machine (62 x86-64, 183 AArch64)
        self.needed = needed  # [soname] in DT_NEEDED order
        self.rpath = rpath  # [dir] of DT_RPATH, as written ($ORIGIN unexpanded)
        self.runpath = runpath  # [dir] of DT_RUNPATH


def read_elf(path: str) -> ElfInfo:
    """The ElfInfo of one ELF file, from its program headers (what the loader uses:
    section headers may be stripped). ElfError when it cannot be read."""
    with open(path, "rb") as fh:
        data = fh.read()
    return parse_elf(data)


def parse_elf(data: bytes) -> ElfInfo:
    """The ElfInfo of an ELF file's bytes."""
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise ElfError("not an ELF file")
    cls, order = data[4], data[5]
    if cls not in (1, 2) or order not in (1, 2):
        raise ElfError("unknown ELF class %d or byte order %d" % (cls, order))
    e = "<" if order == 1 else ">"
    wide = cls == 2
    try:
        (machine,) = struct.unpack_from(e + "H", data, 18)
        if wide:
            (phoff,) = struct.unpack_from(e + "Q", data, 32)
            phentsize, phnum = struct.unpack_from(e + "HH", data, 54)
        else:
            (phoff,) = struct.unpack_from(e + "I", data, 28)
            phentsize, phnum = struct.unpack_from(e + "HH", data, 42)
        loads = []  # type: List[Tuple[int, int, int]]
        dynamic = None  # type: Optional[Tuple[int, int]]
        for i in range(phnum):
            at = phoff + i * phentsize
            if wide:
                p_type, _, off, vaddr, _, filesz = struct.unpack_from(e + "IIQQQQ", data, at)
            else:
                p_type, off, vaddr, _, filesz = struct.unpack_from(e + "IIIII", data, at)
            if p_type == PT_LOAD:
                loads.append((vaddr, off, filesz))
            elif p_type == PT_DYNAMIC:
                dynamic = (off, filesz)
        if dynamic is None:  # linked statically: it needs nothing
            return ElfInfo(machine, [], [], [])
        entries = _dynamic(data, e, wide, dynamic)
    except struct.error as exc:
        raise ElfError("truncated ELF file: %s" % exc) from exc
    strtab = [v for tag, v in entries if tag == DT_STRTAB]
    if not strtab:
        raise ElfError("a dynamic section without a string table")
    base = _file_offset(loads, strtab[0])

    def strings(tag: int) -> List[str]:
        found = []  # type: List[str]
        for t, v in entries:
            if t == tag:
                end = data.find(b"\0", base + v)
                if end < 0:
                    raise ElfError("a string past the end of the file")
                found.append(data[base + v : end].decode("utf-8", "surrogateescape"))
        return found

    def dirs(tag: int) -> List[str]:
        return [d for s in strings(tag) for d in s.split(":") if d]

    return ElfInfo(machine, strings(DT_NEEDED), dirs(DT_RPATH), dirs(DT_RUNPATH))


def _dynamic(data: bytes, e: str, wide: bool, dynamic: Tuple[int, int]) -> List[Tuple[int, int]]:
    """The (tag, value) entries of the dynamic section, up to DT_NULL."""
    off, size = dynamic
    fmt, step = (e + "qQ", 16) if wide else (e + "iI", 8)
    entries = []  # type: List[Tuple[int, int]]
    for at in range(off, off + size - step + 1, step):
        tag, value = struct.unpack_from(fmt, data, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    return entries


def _file_offset(loads: Sequence[Tuple[int, int, int]], vaddr: int) -> int:
    """The file offset of a virtual address, through the PT_LOAD segment holding it."""
    for start, off, size in loads:
        if start <= vaddr < start + size:
            return vaddr - start + off
    raise ElfError("address 0x%x is in no loaded segment" % vaddr)


def cache_sonames(data: bytes, arch: str = "") -> List[str]:
    """The sonames a glibc loader cache (/etc/ld.so.cache, "glibc-ld.so.cache1.1",
    perhaps after the old "ld.so-1.7.0" table) lists, those for ``arch`` (a CPU of
    CACHE_ARCH) only when it is given. ValueError when it is not such a cache."""
    at = 0
    if data.startswith(_OLD_MAGIC) and len(data) >= 16:  # the new one follows, aligned
        (old,) = struct.unpack_from("<I", data, 12)
        if 16 + old * 12 > len(data):
            (old,) = struct.unpack_from(">I", data, 12)
        at = (16 + old * 12 + 7) & ~7
    if data[at : at + len(_NEW_MAGIC)] != _NEW_MAGIC or len(data) < at + 48:
        raise ValueError("not a glibc loader cache of the new format")
    order = "<"
    nlibs, _ = struct.unpack_from(order + "II", data, at + 20)
    if 48 + nlibs * 24 > len(data) - at:  # written on a big-endian CPU
        order = ">"
        nlibs, _ = struct.unpack_from(order + "II", data, at + 20)
    if 48 + nlibs * 24 > len(data) - at:
        raise ValueError("a loader cache longer than its file")
    want = CACHE_ARCH.get(arch)
    found = []
    for i in range(nlibs):
        flags, key, _ = struct.unpack_from(order + "iII", data, at + 48 + i * 24)
        if want is not None and flags & _FLAG_REQUIRED_MASK != want:
            continue
        end = data.find(b"\0", at + key)
        if end < 0:
            raise ValueError("a loader cache name past the end of its file")
        found.append(data[at + key : end].decode("utf-8", "surrogateescape"))
    return sorted(set(found))


def elf_files(top: str, only: Optional[List[str]] = None) -> List[str]:
    """The ELF files below ``top`` that the loader opens: extension modules and shared
    libraries (``*.so``, ``*.so.N``) and executables; symbolic links left out (the
    virtualenv's python is the base image's own). ``only``: the paths to look at (what
    an install on top of a checked layer added) instead of all below ``top``."""
    if only is None:
        only = [os.path.join(root, n) for root, _, names in os.walk(top) for n in names]
    found = []
    for path in only:
        name = os.path.basename(path)
        if not (name.endswith(".so") or ".so." in name) and not os.access(path, os.X_OK):
            continue
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(path)
        except OSError:
            continue
    return sorted(found)


def expand(directory: str, origin: str) -> Optional[str]:
    """An RPATH/RUNPATH directory with $ORIGIN (the file's own directory) put in; None
    when it names what is not known here ($LIB, $PLATFORM)."""
    for token in ("$ORIGIN", "${ORIGIN}"):
        directory = directory.replace(token, origin)
    if "$" in directory:
        return None
    return os.path.normpath(directory)


def unresolved(path: str, info: ElfInfo, sonames: Set[str]) -> List[str]:
    """The sonames ``path`` (read as ``info``) needs that the loader would not find:
    not in ``sonames`` (the target's loader cache), nor in one of its RPATH/RUNPATH
    directories, nor beside it in a repaired wheel's ``<package>.libs`` directory (as
    assemble.bundled: the module that loads such a bundle finds it through its RPATH)."""
    here = os.path.dirname(path)
    dirs = [expand(d, here) for d in info.rpath + info.runpath]
    if here.endswith(".libs"):
        dirs.append(here)
    missing = []  # type: List[str]
    for lib in info.needed:
        if lib in sonames or "/" in lib:
            continue
        if any(d is not None and os.path.isfile(os.path.join(d, lib)) for d in dirs):
            continue
        missing.append(lib)
    return missing
