"""The app layer: the source (ignore rules, safe tar), the launcher and its config,
on top of the deps image; its plan and its key. A code change rebuilds only this layer."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import runtime
from .config import Config, start_config
from .context import (
    Entry,
    IgnoreRules,
    build_tar,
    collect,
    context_digest,
    large_files,
    load_ignore_rules,
    secret_files_left_out,
    source_date_epoch,
)
from .engine import ImageInfo
from .layout import (
    APP_ROOT,
    APP_SRC,
    APP_UID,
    LABEL_PREFIX,
    PORT,
    VENV,
    image_env,
    key_digest,
    skeleton_tar,
)
from .plan import HELPERS_DIR, CommitSpec, Step
from .platform import PlatformKey
from .runtime.start import App
from .static import (
    not_static_inputs,
    static_inputs,
)
from .tars import merge_tars, tar_files
from .wheelhouse import (
    detect_app,
)


def git_labels(project_dir: Path) -> dict[str, str]:
    """OCI source/revision labels when the app is in git. Credentials in a remote URL are
    stripped: labels are public."""
    labels: dict[str, str] = {}

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    rev = git("rev-parse", "HEAD")
    if rev:
        labels["org.opencontainers.image.revision"] = rev
    remote = git("remote", "get-url", "origin")
    if remote:
        labels["org.opencontainers.image.source"] = re.sub(r"//[^/@]*@", "//", remote)
    return labels


def created_timestamp() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
        if epoch and epoch.isdigit()
        else _dt.datetime.now(_dt.timezone.utc)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AppPlan:
    """The app layer: ``layer`` (source under APP_SRC and the launcher, as one tar whose
    names are relative to /) goes on the deps image either by appending it without a
    container, or, when the build must run something (collectstatic), by a step."""

    build_key: str
    app: App
    files: int
    layer: bytes
    commit: CommitSpec
    collectstatic: bool
    static_key: str
    helpers: bytes
    network: str | None
    server: str | None = None
    build_hook: bool = False
    #: lines to show the user about the source (files left out, very large files)
    notices: tuple[str, ...] = ()

    @property
    def runs_something(self) -> bool:
        """Whether the app layer needs a container (a build step), or can be appended."""
        return self.collectstatic or self.build_hook

    def step(self, deps_image: str, layer: bytes | None = None) -> Step:
        files: list[tuple[str, bytes]] = [("/", self.layer if layer is None else layer)]
        command: tuple[str, ...] | None = None
        if self.runs_something:
            files.append(("/tmp", self.helpers))
            command = (f"{VENV}/bin/python", f"{HELPERS_DIR}/assemble.py", "app")
        return Step(
            name="app",
            image=deps_image,
            command=command,
            files=tuple(files),
            user="0:0",
            network=self.network,
            commit=self.commit,
        )


#: warpdrive's build hook: run in the app layer at image build, as the app user
BUILD_HOOK = ".warpdrive/action_hooks/build"


def plan_app(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    deps_key: str,
    source_label: str,
    requirements_digest: str = "",
) -> AppPlan:
    app, server = detect_app(cfg)
    rules = load_ignore_rules(cfg.project_dir)
    entries = collect(cfg.project_dir, rules)
    notices = source_notices(cfg.project_dir, rules, entries)
    digest = context_digest(cfg.project_dir, entries)
    source_tar = build_tar(cfg.project_dir, entries, uid=APP_UID, gid=0, prefix=APP_SRC[1:])
    launcher = runtime.read("start.py")
    static_lib = runtime.read("warpdrive_static.py")
    assemble = runtime.read("assemble.py")
    start_json = json.dumps(start_config(cfg), sort_keys=True).encode()
    collectstatic = cfg.collectstatic and app.kind == "django"
    build_hook = any(
        e.relpath == BUILD_HOOK and e.kind == "file" and e.mode & 0o100 for e in entries
    )
    static_key = (
        key_digest(
            "static",
            base.id,
            assemble,
            context_digest(cfg.project_dir, static_inputs(entries, app, not_static_inputs(cfg))),
        )
        if collectstatic
        else ""
    )
    source_labels = git_labels(cfg.project_dir)
    build_key = key_digest(
        "app",
        deps_key,
        digest,
        str(source_date_epoch()),  # the files' mtime in the layer
        launcher,
        static_lib,
        start_json,
        assemble,
        str(collectstatic),
        cfg.image,
        json.dumps(image_env(base)),
        json.dumps(source_labels, sort_keys=True),
    )
    labels = {
        "org.opencontainers.image.created": created_timestamp(),
        "org.opencontainers.image.title": cfg.name,
        "org.opencontainers.image.base.name": cfg.base_image,
        **source_labels,
        f"{LABEL_PREFIX}.platform-key": pkey.slug,
        f"{LABEL_PREFIX}.base-image": cfg.base_image,
        f"{LABEL_PREFIX}.base-image-id": base.id,
        f"{LABEL_PREFIX}.deps-key": deps_key,
        f"{LABEL_PREFIX}.build-key": build_key,
        f"{LABEL_PREFIX}.static-key": static_key,
        f"{LABEL_PREFIX}.requirements": requirements_digest,
        f"{LABEL_PREFIX}.installer-setting": cfg.installer,
        f"{LABEL_PREFIX}.kind": "app",
        f"{LABEL_PREFIX}.app": f"{app.kind} {app.module}" + (f" ({server})" if server else ""),
    }
    layer = merge_tars(
        skeleton_tar(),
        source_tar,
        tar_files({APP_ROOT[1:] + "/bin/warpdrive-start": launcher}, mode=0o755),
        tar_files(
            {
                APP_ROOT[1:] + "/lib/warpdrive_static.py": static_lib,
                APP_ROOT[1:] + "/.warpdrive/start.json": start_json,
            }
        ),
    )
    plan = {
        "app_root": APP_ROOT,
        "venv": VENV,
        "uid": APP_UID,
        "collectstatic": collectstatic,
        "build_hook": build_hook,
        "settings": app.settings or "",
        "fallback_static_root": f"{APP_SRC}/staticfiles",
    }
    helpers = tar_files(
        {
            "warpdrive-build/plan.json": json.dumps(plan).encode(),
            "warpdrive-build/assemble.py": assemble,
            "warpdrive-build/start.py": launcher,  # assemble reads the environment with it
        }
    )
    commit = CommitSpec(
        env=image_env(base),
        cmd=("warpdrive-start",),
        user=str(APP_UID),
        workdir=APP_SRC,
        exposed_ports=(f"{PORT}/tcp",),
        labels=labels,
        message=f"nox-warpdrive app layer ({source_label})",
    )
    return AppPlan(
        build_key=build_key,
        app=app,
        files=len(entries),
        layer=layer,
        commit=commit,
        collectstatic=collectstatic,
        static_key=static_key,
        helpers=helpers,
        network=cfg.network,
        server=server,
        build_hook=build_hook,
        notices=notices,
    )


def source_notices(root: Path, rules: IgnoreRules, entries: list[Entry]) -> tuple[str, ...]:
    """Lines to show about the source: secrets-looking files left out, very large files
    put in."""
    lines = [
        f"warpdrive: left out {p} (a secrets-looking file; `!{p}` in .dockerignore puts it "
        "in the image)"
        for p in secret_files_left_out(root, rules, entries)
    ]
    lines += [
        f"warpdrive: warning: {e.relpath} is {e.size / 1e6:.0f} MB and goes into the image "
        f"(add '{e.relpath}' to .dockerignore if it should not)"
        for e in large_files(entries)
    ]
    return tuple(lines)
