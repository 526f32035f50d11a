"""Runs INSIDE the builder container (stdlib only), shipped with build_wheels.py: the
package index as the builder reads it without pip: its pages (PEP 691 JSON or PEP 503
HTML), its credentials, downloads checked against their sha256, and whether it can be
reached at all."""

import hashlib
import json
import os
import sys
import threading

if __package__:
    from . import common
else:  # run as a script in the builder container: its modules are shipped beside it
    import common


def pip_config_index():
    """index-url as pip reads it from its configuration files: PIP_CONFIG_FILE=/dev/null
    turns them all off; then the site-wide files (XDG config dirs, /etc/pip.conf), the
    user's (~/.pip, then XDG config home; skipped when PIP_CONFIG_FILE names an existing
    file), the environment's (sys.prefix), PIP_CONFIG_FILE; later files win, and a
    [download] value in any file beats a [global] one."""
    import configparser

    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return None
    home = os.path.expanduser("~")
    dirs = (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep)
    files = [os.path.join(d, "pip", "pip.conf") for d in dirs if d] + ["/etc/pip.conf"]
    if not (env_file and os.path.exists(env_file)):
        config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files.append(os.path.join(home, ".pip", "pip.conf"))
        files.append(os.path.join(config_home, "pip", "pip.conf"))
    files.append(os.path.join(sys.prefix, "pip.conf"))
    if env_file:
        files.append(env_file)
    found = {}
    for path in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in ("global", "download"):
            for key in ("index-url", "index_url"):
                if parser.has_option(section, key):
                    found[section] = parser.get(section, key).strip()
    return found.get("download", found.get("global")) or None


class _Links:
    """PEP 503 HTML: the anchors' href, text and data-yanked."""

    def __init__(self, text):
        import html.parser

        self.links = []
        outer = self

        class P(html.parser.HTMLParser):
            def handle_starttag(self, tag, attrs):
                if tag == "a":
                    a = dict(attrs)
                    if a.get("href"):
                        outer.links.append((a["href"], "data-yanked" in a))

        P().feed(text)


def index_files(opener, page_url, headers):
    """[(filename, absolute url, sha256 or None, yanked)] of one project page of a simple
    index, PEP 691 JSON or PEP 503 HTML."""
    import urllib.parse
    import urllib.request

    req = urllib.request.Request(
        page_url,
        headers=dict(headers, Accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1"),
    )
    with opener.open(req, timeout=60) as resp:
        ctype = resp.headers.get("Content-Type", "")
        body = resp.read().decode("utf-8", "replace")
        page_url = resp.geturl()
    out = []
    if "json" in ctype:
        for f in json.loads(body).get("files", []):
            url = urllib.parse.urljoin(page_url, f["url"])
            sha = (f.get("hashes") or {}).get("sha256")
            out.append((f["filename"], url, sha, bool(f.get("yanked"))))
        return out
    for href, yanked in _Links(body).links:
        url = urllib.parse.urljoin(page_url, href)
        base, _, frag = url.partition("#")
        sha = frag[len("sha256=") :] if frag.startswith("sha256=") else None
        filename = urllib.parse.unquote(base.rsplit("/", 1)[-1].split("?", 1)[0])
        out.append((filename, base, sha, yanked))
    return out


#: the index pip uses when nothing names one
PYPI = "https://pypi.org/simple/"


def pip_index(env):
    """The index pip would use: PIP_INDEX_URL, else the index-url of pip's configuration
    files, else PyPI."""
    return env.get("PIP_INDEX_URL") or pip_config_index() or PYPI


def headers_for(url, index, headers):
    """``headers`` (an index's credentials) for a file at ``url`` on that index's host;
    none for another host (a CDN the page links to must not get them)."""
    import urllib.parse

    same = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(index).netloc
    return headers if same else {}


def index_auth(index):
    """(the index URL without credentials, the headers that carry them): urllib sends no
    credentials from a URL, and they must not reach another host."""
    import base64
    import urllib.parse

    parts = urllib.parse.urlsplit(index)
    headers = {}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        headers["Authorization"] = "Basic " + token
        host = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
        netloc = host + (":%d" % parts.port if parts.port else "")
        index = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return index, headers


def cache_dns():
    """Resolve each host once per run. Parallel downloads otherwise make concurrent DNS
    lookups, and with Docker's embedded/bridged DNS some of them are lost and retried
    after resolv.conf's 5 s timeout: measured here, 40 wheels took 5.4 s with 2 to 8
    threads and 0.3 s with this cache (1.2 s with one thread)."""
    import socket

    if getattr(socket.getaddrinfo, "warpdrive_cached", False):
        return
    original = socket.getaddrinfo
    lock = threading.Lock()
    answers = {}

    def getaddrinfo(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        with lock:  # one lookup at a time; later calls for the same host are free
            if key not in answers:
                answers[key] = original(*args, **kwargs)
            return answers[key]

    getaddrinfo.warpdrive_cached = True
    socket.getaddrinfo = getaddrinfo


#: the openers made, by CA bundle and proxy settings: loading a CA bundle takes 20 ms
_OPENERS = {}


def _opener(env):
    """An opener with ``env``'s CA bundle and proxies (set in os.environ, for urllib);
    made once per run for the same settings (the first call is before any thread)."""
    import ssl
    import urllib.request

    proxies = {k: v for k, v in env.items() if k.lower().endswith("_proxy")}
    key = (env.get("SSL_CERT_FILE") or "", tuple(sorted(proxies.items())))
    if key not in _OPENERS:
        ctx = ssl.create_default_context(cafile=key[0] or None)
        os.environ.update(proxies)
        _OPENERS[key] = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
    return _OPENERS[key]


def fetch(opener, url, sha, directory, headers=None, quiet=False):
    """Download one file, verifying its sha256; its path, or None (pip then tries)."""
    fn = common.url_filename(url)
    path, digest = download_checked(opener, url, directory, headers)
    if path is not None and sha and digest != sha:
        common.with_suppressed(os.unlink, path)
        path, digest = None, "sha256 mismatch"
    if path is None:
        common.log("download of %s failed (%s); pip will fetch it" % (fn, digest))
        return None
    if not quiet:
        print("Downloaded %s" % fn, flush=True)
    return path


def download_wheels(items, staging, env):
    """Fetch wheels in parallel threads, verifying sha256; returns the specs that failed
    (pip then fetches those, with whatever auth or proxy setup it knows)."""
    import concurrent.futures

    if not items:  # all taken from the early downloads, or none to fetch
        return []
    opener = _opener(env)

    def one(pin):
        ok = fetch(opener, pin.wheel_url, pin.wheel_sha, staging)
        return None if ok else common.spec_of(pin)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return [r for r in pool.map(one, items) if r]


def download_checked(opener, url, directory, headers, stopped=None):
    """(path, sha256) of one downloaded file, or (None, the error): the caller checks
    the hash against the lock. ``stopped``: when it says so between chunks, the
    download ends there (its part file removed)."""
    import urllib.request

    fn = common.url_filename(url)
    tmp = os.path.join(directory, "." + fn + ".part")
    try:
        h = hashlib.sha256()
        req = urllib.request.Request(url, headers=headers or {})
        with opener.open(req, timeout=120) as resp, open(tmp, "wb") as dst:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                if stopped is not None and stopped():
                    raise OSError("stopped")
                h.update(chunk)
                dst.write(chunk)
        dest = os.path.join(directory, fn)
        os.replace(tmp, dest)
        return dest, h.hexdigest()
    except Exception as exc:
        common.with_suppressed(os.unlink, tmp)
        return None, str(exc)


#: how long the index (or its proxy) may take to accept a connection before a run that
#: needs it gives up: pip and uv would otherwise retry for minutes
REACH_TIMEOUT = 10


def unreachable(env, timeout=REACH_TIMEOUT):
    """Why this container cannot open a connection to the package index (or to the proxy
    the environment names for it), in one line; None when it can. Without this, a build
    container with no route out (an engine's bridge with no way out, a firewall) spends
    minutes in pip's and uv's retries before saying anything."""
    import socket
    import urllib.parse
    import urllib.request

    if env.get("PIP_NO_INDEX", "").lower() in ("1", "true", "yes", "on"):
        return None  # pip is told to use no index: find-links only
    index = pip_index(env)
    parts = urllib.parse.urlsplit(index)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # a file:// index, or one this check cannot read: let pip say
    target = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    proxies = {k.lower()[:-6]: v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    proxy = proxies.get(parts.scheme)
    via = ""
    if proxy and not urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        found = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if found.hostname:
            target, via = (found.hostname, found.port or 80), " (its proxy)"
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        return "cannot connect to %s:%d%s from the build container: %s" % (
            target[0],
            target[1],
            via,
            exc.strerror or exc.__class__.__name__,
        )
    return None
