"""Runs INSIDE the builder container (stdlib only): build the wheelhouse for one platform
key in the mounted volume.

Layout of the volume (mounted at /warpdrive):

    /warpdrive/<platform-key>/wheels/*.whl     published wheels (only complete files)
    /warpdrive/<platform-key>/cache/           pip's cache (HTTP + locally built wheels)
    /warpdrive/<platform-key>/manifest.json    requirement sets -> resolved wheels, sha256s
    /warpdrive/<platform-key>/staging-*/       pip's output for one run, removed after

pip writes into a private staging directory; each new wheel is then copied next to the
published ones under a temporary name and renamed into place, so a reader never sees a
half-written wheel, and a failed or interrupted run publishes nothing.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

PLAN = "/tmp/warpdrive-build/plan.json"
SECRETS = "/run/warpdrive-secrets"


def log(msg):
    print("warpdrive: " + msg, flush=True)


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


def find_pip(python):
    """A pip to run: the image's own, else a throwaway venv (never in the volume)."""
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [python, "-m", "pip"]
    venv = "/tmp/warpdrive-pip"
    log("no pip in the image; creating a private venv for it")
    subprocess.run([python, "-m", "venv", venv], check=True)
    return [venv + "/bin/python", "-m", "pip"]


def load_manifest(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return {}


def write_json_atomic(path, data):
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def wheel_name_version(filename):
    parts = filename[:-4].split("-")
    return parts[0], parts[1] if len(parts) > 1 else ""


def main():
    with open(PLAN) as fh:
        plan = json.load(fh)
    root = os.path.join(plan["volume_dir"], plan["key"])
    wheels = os.path.join(root, "wheels")
    cache = os.path.join(root, "cache")
    os.makedirs(wheels, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    manifest_path = os.path.join(root, "manifest.json")
    staging = os.path.join(root, "staging-%d-%d" % (os.getpid(), int(time.time())))
    os.makedirs(staging)
    started = time.time()
    try:
        pip = find_pip(plan["python"])
        cmd = pip + [
            "wheel",
            "--wheel-dir", staging,
            "--find-links", wheels,
            "--cache-dir", cache,
            "--progress-bar", "off",
            "--disable-pip-version-check",
        ]
        if plan.get("no_index"):
            cmd.append("--no-index")
        for name in plan["top"]:
            cmd += ["-r", os.path.join(plan["req_dir"], name)]
        cmd += plan.get("extra", [])
        env = dict(os.environ)
        env.update(secret_env())
        env["PIP_NO_INPUT"] = "1"
        log("pip wheel for " + plan["key"])
        proc = subprocess.run(cmd, env=env, cwd=plan["req_dir"])
        if proc.returncode != 0:
            log("pip wheel failed (exit %d); nothing was published" % proc.returncode)
            return proc.returncode

        lock = open(os.path.join(root, ".lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        resolved, new, reused = [], [], []
        for fn in sorted(os.listdir(staging)):
            if not fn.endswith(".whl"):
                continue
            src = os.path.join(staging, fn)
            dest = os.path.join(wheels, fn)
            if os.path.exists(dest):
                reused.append(fn)
            else:
                tmp = os.path.join(wheels, ".%s.tmp-%d" % (fn, os.getpid()))
                shutil.copyfile(src, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
                new.append(fn)
            name, version = wheel_name_version(fn)
            resolved.append({"file": fn, "name": name, "version": version, "sha256": sha256(dest)})

        manifest = load_manifest(manifest_path)
        known = manifest.get("wheels", {})
        all_wheels = {}
        for fn in sorted(os.listdir(wheels)):
            if fn.endswith(".whl") and not fn.startswith("."):
                all_wheels[fn] = known.get(fn) or sha256(os.path.join(wheels, fn))
        sets = manifest.get("sets", {})
        sets[plan["requirements_hash"]] = {
            "resolved": resolved,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # keep the 20 most recent requirement sets (switching branches back is free)
        if len(sets) > 20:
            for old in sorted(sets, key=lambda k: sets[k]["built_at"])[: len(sets) - 20]:
                del sets[old]
        manifest.update(
            format=1,
            platform_key=plan["platform_key"],
            requirements_hash=plan["requirements_hash"],
            resolved=resolved,
            wheels=all_wheels,
            sets=sets,
        )
        write_json_atomic(manifest_path, manifest)
        fcntl.flock(lock, fcntl.LOCK_UN)
        log(
            "SUMMARY %s"
            % json.dumps(
                {"new": new, "reused": len(reused), "resolved": len(resolved),
                 "seconds": round(time.time() - started, 1)}
            )
        )
        return 0
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree("/tmp/warpdrive-build", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
