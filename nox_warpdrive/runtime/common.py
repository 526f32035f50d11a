"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: what
every part of the builder shares: its log line, hashing, the manifest's file, the run's
state, the secrets' environment. Imports no other module of the builder, so any may use
it."""

import collections
import hashlib
import json
import os
import re
import tempfile
import time

PLAN = "/tmp/warpdrive-build/plan.json"
SECRETS = "/run/warpdrive-secrets"


T0 = time.time()


def log(msg):
    print("warpdrive: [%5.1fs] %s" % (time.time() - T0, msg), flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def secret_env():
    """Index settings and the CA bundle, from the temporary secrets volume only."""
    env = {}
    ca = os.path.join(SECRETS, "ca.pem")
    if os.path.isfile(ca):
        env.update(PIP_CERT=ca, SSL_CERT_FILE=ca, REQUESTS_CA_BUNDLE=ca)
    try:
        with open(os.path.join(SECRETS, "pip-env.json")) as fh:
            env.update(json.load(fh))
    except FileNotFoundError:
        pass
    return env


def load_manifest(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return {}


def write_json_atomic(path, data, scratch):
    """Write through a unique temporary file in ``scratch`` (this run's staging dir, on
    the same filesystem), then rename: readers see the old or the new file, whole."""
    fd, tmp = tempfile.mkstemp(dir=scratch, prefix=".manifest-")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def wheel_name_version(filename):
    parts = filename[:-4].split("-")
    return parts[0], parts[1] if len(parts) > 1 else ""


#: one resolved requirement: a wheel to download (url, sha256), else an sdist to build
Pin = collections.namedtuple("Pin", "name version wheel_url wheel_sha sdist_url sdist_sha")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def spec_of(pin):
    return "%s==%s" % (pin.name, pin.version)


def url_filename(url):
    import urllib.parse

    return urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0])


def file_stat(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def with_suppressed(fn, *args):
    try:
        fn(*args)
    except OSError:
        pass


class RunState:
    """One run of the builder, as its stages share it: the plan, where its platform key's
    part of the volume is, this run's staging directory, and what the run did so far."""

    def __init__(self, plan, root, staging):
        self.plan = plan
        self.root = root
        self.wheels = os.path.join(root, "wheels")
        self.staging = staging
        self.manifest_path = os.path.join(root, "manifest.json")
        self.started = time.time()
        #: wheels this run published
        self.new = []
        #: wheel -> sha256 of the sdist (or "project:<key>") it was built from
        self.built_from = {}
        #: published wheels a locked plan replaces (another file of the same name)
        self.replace = set()
