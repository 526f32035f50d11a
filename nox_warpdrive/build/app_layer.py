"""The app layer: the source (ignore rules, safe tar), the launcher and its config,
on top of the deps image; its plan and its key. A code change rebuilds only this layer."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import assembly, runtime
from ..assembly import FIXED_EPOCH
from ..config import Config, start_config
from ..engine import ImageInfo
from ..labels import OCI_REVISION, OCI_SOURCE, AppLabels
from ..layout import APP_ROOT, APP_SRC, APP_UID, PORT, VENV, image_env, key_digest
from ..plan import CommitSpec, Step, assemble
from ..platform import PlatformKey
from ..runtime.start import App, django_settings_source, read_environment
from ..source import index as source_index
from ..source import steady
from ..source.archive import source_date_epoch
from ..source.context import (
    Entry,
    IgnoreRules,
    large_files,
    load_ignore_rules,
    paused_gc,
    secret_files_left_out,
    walk_tree,
)
from ..source.git import git, origin
from ..source.image_layers import app_tree_of, layer_bytes
from ..source.index import SourceTree
from ..source.layers import AppTree
from ..tars import tar_files
from ..wheelhouse.build import BuildInputs, detect_app
from .static import not_static_inputs, remember_inputs
from .static_inputs import StaticInputs, choose


def source_facts(project_dir: Path) -> tuple[dict[str, str], str]:
    """The OCI source/revision labels (git_labels) and the image's date
    (created_timestamp) from one look at git: HEAD's hash and commit time together."""
    head = git(project_dir, "log", "-1", "--format=%H %ct", "HEAD")
    rev, _, when = (head or "").partition(" ")
    labels: dict[str, str] = {OCI_REVISION: rev} if rev else {}
    remote = origin(project_dir)
    if remote:
        labels[OCI_SOURCE] = remote
    return labels, created_timestamp(int(when) if when.isdigit() else None)


def git_labels(project_dir: Path) -> dict[str, str]:
    """OCI source/revision labels when the app is in git. Credentials in a remote URL are
    stripped: labels are public."""
    return source_facts(project_dir)[0]


def created_timestamp(commit_time: int | None = None) -> str:
    """The image's date (its config's ``created``, its app history rows', the OCI created
    label): ``$SOURCE_DATE_EPOCH`` when set, else the commit time of HEAD when the app is
    in git (``commit_time``), else the fixed 1970-01-01T00:00:01Z. Never the clock: two
    builds of one commit, anywhere, at any time, get the same image ID."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        return assembly.timestamp(source_date_epoch())  # refuses a malformed value
    return assembly.timestamp(commit_time if commit_time is not None else FIXED_EPOCH)


#: the app step's command (assemble.py app, run by the virtualenv's Python)
APP_STEP = assemble(f"{VENV}/bin/python", "app")


@dataclass(frozen=True)
class AppPlan:
    """The app layers: ``tree`` (the source under APP_SRC, the launcher and its config)
    goes on the deps image either as layers appended without a container (split by how
    often they change, source_layers.append_app), or, when the build must run something
    (collectstatic), as one tar (``layer``) put into a step's container."""

    build_key: str
    app: App
    files: int
    commit: CommitSpec
    collectstatic: bool
    static_key: str
    helpers: bytes
    network: str | None
    server: str | None = None
    build_hook: bool = False
    #: lines to show the user about the source (files left out, very large files)
    notices: tuple[str, ...] = ()
    #: lines to show when the app layer is built: the settings collectstatic uses,
    #: where they come from, what its inputs are
    static_notes: tuple[str, ...] = ()
    #: makes the tree (see ``tree``)
    make_tree: Callable[[], AppTree] | None = field(default=None, repr=False, compare=False)
    #: the static key but the base image and packages (the CPU's parts; "": nothing
    #: collected): another platform's image of the build with it may lend its files
    static_source: str = ""
    #: the build hook step's inputs but the CPU's parts ("": no hook, or it runs on
    #: every platform): another platform's image with it may lend the layer it made
    hook_source: str = ""

    @functools.cached_property
    def tree(self) -> AppTree:
        """The files of the app layers (names relative to /), made at first use: an
        up-to-date image never needs them."""
        assert self.make_tree is not None
        with paused_gc():
            return self.make_tree()

    @functools.cached_property
    def layer(self) -> bytes:
        """The whole tree as one tar, for a build step's container."""
        return layer_bytes(self.tree)

    def made(self, image: ImageInfo) -> bool:
        """Whether ``image`` (here, or a cache in a registry) is exactly what this plan
        builds: an app image with its build key."""
        labels = AppLabels.from_labels(image.labels)
        return labels is not None and bool(self.build_key) and labels.build_key == self.build_key

    def grown_notices(self) -> list[str]:
        """What to tell of the source files that grew after they were read, found so
        by the layers made (none before): the image holds them as read."""
        tree = self.__dict__.get("tree")  # made, or nothing was read again
        grown = dict.fromkeys(tree.grown) if isinstance(tree, AppTree) else {}
        return [
            f"warpdrive: warning: {relpath} grew while the app layers were made (a log "
            "being written?); the image holds it as it was when read. "
            f"fix: add '{relpath}' to .dockerignore to leave it out"
            for relpath in grown
            if not any(f" {relpath} " in line for line in self.notices)  # said already
        ]

    @property
    def runs_something(self) -> bool:
        """Whether the app layer needs a container (a build step), or can be appended."""
        return self.collectstatic or self.build_hook

    def build_step(self, image: str) -> Step:
        """The build step (the hook, collectstatic) run on ``image``, which already has
        the app layers: only the helper scripts are put into its container."""
        return Step(
            name="app",
            image=image,
            command=APP_STEP,
            files=(("/tmp", self.helpers),),
            user="0:0",
            network=self.network,
            commit=self.commit,
        )

    def step(self, deps_image: str, layer: bytes | None = None) -> Step:
        files: list[tuple[str, bytes]] = [("/", self.layer if layer is None else layer)]
        command: tuple[str, ...] | None = None
        if self.runs_something:
            files.append(("/tmp", self.helpers))
            command = APP_STEP
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


@dataclass(frozen=True)
class Source:
    """The app source as it will be archived: its members in the app layers, its digest
    (the build key's: contents, kinds, modes, links; not mtimes) and what to tell the
    user."""

    root: Path
    digest: str
    notices: tuple[str, ...]
    members: SourceTree = field(default_factory=lambda: SourceTree({}, [], 0, ""))
    #: relpath -> the bytes of files that changed while read, as the layers hold them
    held: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def files(self) -> int:
        """How many paths are archived (directories and links too)."""
        return len(self.members.tree)

    def entries(self) -> list[Entry]:
        """Every archived path, in tree order, as its member says (a mode made from
        the executable bit): the walk made entries only for the directories that
        changed since the last build."""
        cut = len(APP_SRC)
        found = [_entry_of(name[cut:], line) for name, line in self.members.tree.items()]
        return sorted(found, key=lambda e: e.relpath.split("/"))


def _entry_of(relpath: str, line: str) -> Entry:
    kind, mode, _, _, _, digest, size = line.split("\0")
    if kind == "file":
        return Entry(relpath, "file", 0o755 if mode == "775" else 0o644, int(size))
    if kind == "dir":
        return Entry(relpath, "dir", 0o755, 0)
    return Entry(relpath, "symlink", 0o777, 0, digest)


def _large_files(members: SourceTree) -> list[Entry]:
    """The files too big to go into an image unremarked (context.large_files)."""
    cut = len(APP_SRC)
    return [_entry_of(name[cut:], members.tree[name]) for name in members.large]


def read_source(root: Path, save_index: bool = True) -> Source:
    """One stat pass over the tree; only the directories that changed since the last
    build (source/index.py) are looked at file by file, and only their files that
    changed are read, to hash them. A file that changes while it is read (the build's
    own log) is read again, or held as read once (steady.py): never a failed build.
    ``save_index``: write the index back (not for a plan, which changes nothing)."""
    rules = load_ignore_rules(root)
    where = (APP_SRC[1:], source_date_epoch())
    reads = steady.Reads(root)
    with paused_gc():  # a few objects per file, none in a cycle
        old = source_index.load(root, where, rules)
        walked = walk_tree(root, rules, {name: d.signature for name, d in old.items()})
        members = source_index.source_tree(
            root,
            walked,
            where,
            lambda entry: reads.hash_file(entry.relpath, entry.size),
            rules,
            old,
            save_index,
        )
        notices = source_notices(root, rules, _large_files(members), walked.dotenv)
        notices += special_notice(walked.special)
    return Source(root, members.digest, (*notices, *_changing(reads, members)), members, reads.held)


def _changing(reads: steady.Reads, members: SourceTree) -> list[str]:
    """What to say of the files that changed while read, and of the one this build's
    output goes to (a log in the project: in the image unless left out)."""
    said = list(reads.notices)
    for relpath in steady.own_output(reads.root):
        if f"{APP_SRC[1:]}/{relpath}" in members.tree and not any(
            f" {relpath} " in n for n in said
        ):
            said.append(
                f"warpdrive: warning: {relpath} is where this build's output goes; the image "
                f"holds it as it was when read. fix: add '{relpath}' to .dockerignore"
            )
    return said


def source_tree(
    source: Source, launcher: bytes, lib: Mapping[str, bytes], start_json: bytes
) -> AppTree:
    """The files of the app layers: the directory skeleton, the source under APP_SRC,
    the launcher, its ``lib`` (name -> bytes: runtime.LAUNCHER_LIB) and its config. Made
    only once the build key says the image is not up to date."""
    runtime = {
        "bin/warpdrive-start": launcher,
        **{f"lib/{name}": data for name, data in sorted(lib.items())},
        ".warpdrive/start.json": start_json,
    }
    return app_tree_of(source.root, source.members, runtime, source.held)


def helpers_tar(cfg: Config, app: App, build_hook: bool, collectstatic: bool) -> bytes:
    """The build step's plan and scripts (put in /tmp, removed before the commit)."""
    plan = {
        "app_root": APP_ROOT,
        "venv": VENV,
        "uid": APP_UID,
        "collectstatic": collectstatic,
        "build_hook": build_hook,
        "settings": app.settings or "",
        "fallback_static_root": f"{APP_SRC}/staticfiles",
    }
    return tar_files(
        {
            "warpdrive-build/plan.json": json.dumps(plan).encode(),
            **runtime.files(runtime.ASSEMBLER, "warpdrive-build/"),
            # assemble reads the environment with the launcher's own code
            **runtime.files(("start.py", "warpdrive_init.py"), "warpdrive-build/"),
        }
    )


def plan_app(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    deps_key: str,
    source_label: str,
    requirements_digest: str = "",
    *,
    source_labels: Mapping[str, str] | None = None,
    created: str = "",
    save_index: bool = True,
    inputs: BuildInputs | None = None,
) -> AppPlan:
    """The app layer's plan, from the source on disk and the given facts: no git and
    no clock here (``source_labels``: git_labels(); ``created``: created_timestamp()).
    Reading the source costs one hash of every file; the layer's tar is made only when
    asked for (``AppPlan.layer``), after the build key has said it is needed.
    ``save_index``: keep the source index for the next build (not for a plan);
    ``inputs``: what the build read once (BuildInputs), else read here."""
    app, server = (inputs.app, inputs.server) if inputs else detect_app(cfg)
    source = read_source(cfg.project_dir, save_index)
    launcher, lib = runtime.read("start.py"), runtime.files(runtime.LAUNCHER_LIB)
    start_json = json.dumps(start_config(cfg), sort_keys=True).encode()
    # a Django project started by a command (a Procfile's web: line) has settings too
    collectstatic = cfg.collectstatic and (app.kind == "django" or bool(app.settings))
    hook = source.members.tree.get(f"{APP_SRC[1:]}/{BUILD_HOOK}", "")
    build_hook = hook.startswith("file\x00775\x00")  # a file, executable
    static_key, static_notes, static_source = (
        static_key_for(cfg, base, source, deps_key, inputs, pkey) if collectstatic else ("", (), "")
    )
    labels_in = dict(source_labels or {})
    build_key = key_digest(
        "app",
        deps_key,
        source.digest,
        str(source_date_epoch()),  # the files' mtime in the layer
        launcher,
        *(lib[name] for name in runtime.LAUNCHER_LIB),
        start_json,
        runtime.read("assemble.py"),
        str(collectstatic),
        cfg.image,
        json.dumps(image_env(base)),
        json.dumps(labels_in, sort_keys=True),
    )
    facts = AppFacts(
        build_key,
        deps_key,
        static_key,
        requirements_digest,
        created,
        labels_in,
        server,
        static_source,
        hook_source_for(cfg, base, pkey, app, source) if build_hook else "",
    )
    return AppPlan(
        build_key=build_key,
        app=app,
        files=source.files,
        commit=app_commit(cfg, base, pkey, app, facts, source_label),
        collectstatic=collectstatic,
        static_key=static_key,
        helpers=helpers_tar(cfg, app, build_hook, collectstatic),
        network=cfg.network,
        server=server,
        build_hook=build_hook,
        notices=source.notices + name_notice(cfg),
        static_notes=static_notes,
        make_tree=functools.partial(source_tree, source, launcher, lib, start_json),
        static_source=static_source,
        hook_source=facts.hook_source,
    )


def hook_source_for(
    cfg: Config, base: ImageInfo, pkey: PlatformKey, app: App, source: Source
) -> str:
    """What the build step with a hook reads but the CPU's parts: the source, the step's
    plan and script, the base image's environment, the interpreter and OS release ("":
    the hook runs on every platform, `build-hook-per-platform`). Packages are compared
    by their releases when the layer is lent (static_sibling.sibling_hook)."""
    if cfg.hook_per_platform:
        return ""
    collectstatic = cfg.collectstatic and (app.kind == "django" or bool(app.settings))
    return key_digest(
        "hook-source 1",
        source.digest,
        str(source_date_epoch()),
        runtime.read("assemble.py"),
        helpers_tar(cfg, app, True, collectstatic),
        json.dumps(image_env(base)),
        *_neutral(pkey),
    )


def _neutral(pkey: PlatformKey) -> tuple[str, ...]:
    """The platform key's interpreter and OS release, not its CPU: what a step's output
    may depend on and another platform's image of the build shares."""
    return (
        pkey.interpreter,
        pkey.abi,
        pkey.libc,
        pkey.libc_version,
        pkey.distro,
        pkey.distro_version,
    )


def django_settings(cfg: Config, base: ImageInfo) -> tuple[str | None, str]:
    """The DJANGO_SETTINGS_MODULE collectstatic runs with and where it comes from, in
    the order the build container applies them: the base image's environment, then
    .warpdrive/environment, then manage.py's default."""
    env = dict(e.split("=", 1) for e in base.env if "=" in e)
    if env.get("DJANGO_SETTINGS_MODULE"):
        return env["DJANGO_SETTINGS_MODULE"], "the base image's environment"
    env = read_environment(str(cfg.project_dir))
    settings, where = django_settings_source(str(cfg.project_dir), env)
    return settings, ".warpdrive/environment" if where == "the environment" else where


def static_key_for(
    cfg: Config,
    base: ImageInfo,
    source: Source,
    deps_key: str = "",
    build: BuildInputs | None = None,
    pkey: PlatformKey | None = None,
) -> tuple[str, tuple[str, ...], str]:
    """(what collectstatic's output depends on, lines saying what that is): the base
    image, the build script, the settings module and the source files its settings make
    inputs (static_inputs.py), each by its member line in the app layers (kind, mode,
    owner, mtime, sha256, size, link target): known from the source index, so nothing
    is hashed again. Packages are compared by their wheels when the files are reused
    (static.same_packages_or_more), here only when the settings import packages that
    may be absent: then an added one can change the output. ``build``: the build's
    inputs, read once: the requirement files they name are never static inputs. Third:
    the same without the base image and packages (AppPlan.static_source)."""
    settings, where = django_settings(cfg, base)
    tree, src = source.members.tree, APP_SRC[1:] + "/"
    kinds = MemberKinds(tree, src)
    inputs, chosen = choose(
        cfg.project_dir,
        settings,
        source.entries(),
        kinds,
        not_static_inputs(cfg, build.requirement_names if build else None),
    )
    records = "".join([f"{e.relpath}\0{tree[src + e.relpath]}\n" for e in chosen])
    packages = deps_key if inputs.packages_exact else ""
    assemble = runtime.read("assemble.py")
    key = key_digest("static 3", base.id, assemble, str(settings), packages)
    static_key = key_digest(key, records)
    remember_inputs(static_key, key, inputs, records)  # for re-collecting what changed
    # the interpreter and OS release, not the CPU
    neutral = (pkey.interpreter, pkey.abi, pkey.libc, pkey.libc_version) if pkey else ()
    os_release = (pkey.distro, pkey.distro_version) if pkey else ()
    source_key = key_digest("static-source 1", assemble, str(settings), *neutral, *os_release)
    source_key = key_digest(source_key, records)
    return static_key, static_notes(settings, where, inputs), source_key


class MemberKinds(Mapping[str, str]):
    """The source index's members as relpath -> kind, read through, not copied."""

    def __init__(self, tree: Mapping[str, str], prefix: str) -> None:
        self.tree, self.prefix = tree, prefix

    def __getitem__(self, relpath: str) -> str:
        return self.tree[self.prefix + relpath].split("\0", 1)[0]

    def __contains__(self, relpath: object) -> bool:
        return isinstance(relpath, str) and self.prefix + relpath in self.tree

    def __iter__(self) -> Iterator[str]:
        cut = len(self.prefix)
        return (name[cut:] for name in self.tree if name.startswith(self.prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def static_notes(settings: str | None, where: str, inputs: StaticInputs) -> tuple[str, ...]:
    """What the build says about collectstatic: which settings, from where, and what
    reruns it."""
    name = settings or "(none found)"
    lines = [f"warpdrive: collectstatic uses DJANGO_SETTINGS_MODULE={name} (from {where})"]
    shell = os.environ.get("DJANGO_SETTINGS_MODULE")
    if shell and shell != settings:
        lines.append(
            f"warpdrive: DJANGO_SETTINGS_MODULE={shell} of this shell does not reach the "
            "build; name it in .warpdrive/environment to use it"
        )
    if inputs.everything:
        lines.append(
            f"warpdrive: collectstatic reruns on any change to the source: {inputs.why} "
            "(nox-warpdrive cannot tell its inputs from the settings)"
        )
    else:
        modules, dirs = len(inputs.modules), len(inputs.dirs)
        lines.append(
            f"warpdrive: collectstatic inputs: {modules} settings module{'s'[: modules != 1]}, "
            f"{dirs} static director{'ies' if dirs != 1 else 'y'}"
            + (
                ", the installed packages (the settings import optional ones)"
                * inputs.packages_exact
            )
        )
    return tuple(lines)


@dataclass(frozen=True)
class AppFacts:
    """The keys and facts an app image records in its labels."""

    build_key: str
    deps_key: str
    static_key: str
    requirements_digest: str
    created: str
    source_labels: Mapping[str, str]
    server: str | None
    static_source: str = ""
    hook_source: str = ""


def app_commit(
    cfg: Config,
    base: ImageInfo,
    pkey: PlatformKey,
    app: App,
    facts: AppFacts,
    source_label: str,
) -> CommitSpec:
    """The app image's config: how it starts, as whom, and its labels."""
    labels = AppLabels(
        title=cfg.name,
        base_image=cfg.base_image,
        base_image_id=base.id,
        platform_key=pkey.slug,
        deps_key=facts.deps_key,
        build_key=facts.build_key,
        static_key=facts.static_key,
        requirements=facts.requirements_digest,
        installer_setting=cfg.installer,
        app=f"{app.kind} {app.module}" + (f" ({facts.server})" if facts.server else ""),
        created=facts.created,
        source=facts.source_labels,
        static_source=facts.static_source,
        hook_source=facts.hook_source,
    ).to_labels()
    return CommitSpec(
        created=facts.created,
        env=image_env(base),
        cmd=("warpdrive-start",),
        user=str(APP_UID),
        workdir=APP_SRC,
        exposed_ports=(f"{PORT}/tcp",),
        labels=labels,
        message=f"nox-warpdrive app layer ({source_label})",
    )


def name_notice(cfg: Config) -> tuple[str, ...]:
    """A line when the app's name (its image's, its volume's) is the folder's."""
    if cfg.name_source != "folder":
        return ()
    return (
        f"warpdrive: no [project].name: the image and volume are named after the folder "
        f"({cfg.name}); set [project].name, or `image` in [tool.warpdrive]",
    )


def special_notice(paths: list[str]) -> tuple[str, ...]:
    """One line naming the FIFOs, sockets and devices of the tree: they are left out
    (an archive cannot hold what they are), and a user looking for one in the image
    knows why it is not there."""
    if not paths:
        return ()
    named = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (
        f"warpdrive: left out {named} (FIFOs, sockets or devices are no app source; "
        "add them to .dockerignore to say nothing)",
    )


def source_notices(
    root: Path, rules: IgnoreRules, entries: list[Entry], dotenv: list[str] | None = None
) -> tuple[str, ...]:
    """Lines to show about the source: secrets-looking files left out, very large files
    put in (``entries``: the archived files, or any that include the large ones;
    ``dotenv``: the dotenv files the walk saw)."""
    lines = [
        f"warpdrive: left out {p} (a secrets-looking file; `!{p}` in .dockerignore puts it "
        "in the image)"
        for p in secret_files_left_out(root, rules, entries, dotenv)
    ]
    lines += [
        f"warpdrive: warning: {e.relpath} is {e.size / 1e6:.0f} MB and goes into the image "
        f"(add '{e.relpath}' to .dockerignore if it should not)"
        for e in large_files(entries)
    ]
    return tuple(lines)
