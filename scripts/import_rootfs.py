"""Load a root filesystem tar into the engine as an image of a given platform.

``docker import --platform`` of Docker 20.10 records the engine's own architecture in the
image config whatever the flag says, so an arm64 root filesystem imported on an amd64
engine claims to be amd64 (and ``docker run --platform linux/arm64`` then refuses it).
This writes the image config itself (os, architecture, variant, env, cmd, the layer's
diff id) and hands the engine a ``docker load`` archive. Standard library only: it runs
before the project's virtualenv exists.

    python3 scripts/import_rootfs.py ROOTFS.tar TAG linux/arm64 [ENV=VALUE ...] -- CMD...
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    """Parse the arguments, hash the layer, write the archive to ``docker load``."""
    if "--" not in argv or len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    rootfs, tag, platform, env = argv[0], argv[1], argv[2], argv[3:split]
    cmd = argv[split + 1 :]
    parts = platform.split("/")
    digest = hashlib.sha256()
    with open(rootfs, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    diff_id = "sha256:" + digest.hexdigest()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config: dict[str, object] = {
        "architecture": parts[1],
        "os": parts[0],
        "created": created,
        "config": {"Env": env, "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"debootstrap rootfs for {platform}"}],
    }
    if len(parts) > 2:
        config["variant"] = parts[2]
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]
    load = subprocess.Popen(["docker", "load", "-q"], stdin=subprocess.PIPE)
    assert load.stdin is not None
    with tarfile.open(fileobj=load.stdin, mode="w|") as archive:
        _add(archive, config_name, config_bytes)
        _add(archive, "manifest.json", json.dumps(manifest).encode())
        info = tarfile.TarInfo("layer/layer.tar")
        info.size = os.path.getsize(rootfs)
        with open(rootfs, "rb") as fh:
            archive.addfile(info, fh)
    load.stdin.close()
    return load.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
