"""What build containers get from the host at build time, and only then.

The CA bundle and pip's index settings are what make builds work behind a TLS-inspecting
proxy or against a private index. They are handed over as files in a temporary volume
(see ``Engine.secrets_volume``): never as container env (``commit`` would copy it into the
image config), never in a layer, a label, the command line or the history.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

#: pip settings forwarded into build containers when set on the host
PIP_ENV_KEYS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
#: proxy settings forwarded the same way (they may carry credentials)
PROXY_ENV_KEYS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
#: where the CA bundle is looked for, in order, when no variable names one
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, BSDs
    "/etc/ssl/ca-bundle.pem",  # openSUSE
)
CA_ENV_KEYS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")


def find_ca_bundle(environ: Mapping[str, str]) -> Path | None:
    for key in CA_ENV_KEYS:
        value = environ.get(key)
        if value and Path(value).is_file():
            return Path(value)
    if environ.get("WARPDRIVE_NO_HOST_CA"):
        return None
    for candidate in SYSTEM_CA_BUNDLES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def pip_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: environ[k] for k in (*PIP_ENV_KEYS, *PROXY_ENV_KEYS) if environ.get(k)}


def build_secrets(environ: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """The files of the temporary secrets volume: ``ca.pem`` and ``pip-env.json``."""
    environ = os.environ if environ is None else environ
    files: dict[str, bytes] = {}
    ca = find_ca_bundle(environ)
    if ca is not None:
        files["ca.pem"] = ca.read_bytes()
    env = pip_env(environ)
    if env:
        files["pip-env.json"] = json.dumps(env, sort_keys=True).encode()
    return files


def redact(text: str, secrets: Mapping[str, bytes]) -> str:
    """Remove index URLs with credentials etc. from text we are about to show."""
    try:
        env = json.loads(secrets.get("pip-env.json", b"{}"))
    except ValueError:
        return text
    for value in env.values():
        if not isinstance(value, str):
            continue
        for part in value.split():
            if "@" in part and len(part) > 8:
                text = text.replace(part, "<redacted>")
    # and any other credentials in a URL, whatever printed them
    return re.sub(r"(?<=://)[^/\s:@]+:[^/\s@]+@", "<redacted>@", text)
