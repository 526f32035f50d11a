"""What git says of the app's checkout, for what is published about the image: the OCI
source/revision labels and date (build/app_layer.py) and the provenance's source
(supply/provenance.py). One place, so both say the same and strip credentials the same."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

#: a URL's userinfo (``user:token@``): never published
_USERINFO = re.compile(r"//[^/@]*@")


def git(project_dir: Path, *args: str) -> str | None:
    """``git -C project_dir args``'s output, stripped; None when git is missing, slow,
    fails, or says nothing (the app not in git is not an error)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def without_credentials(url: str) -> str:
    """``url`` without its ``user:token@``: what labels and provenance may publish."""
    return _USERINFO.sub("//", url)


def origin(project_dir: Path) -> str | None:
    """The ``origin`` remote's URL, credentials stripped; None when there is none."""
    remote = git(project_dir, "remote", "get-url", "origin")
    return without_credentials(remote) if remote else None
