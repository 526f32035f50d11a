#!/usr/bin/env bash
# Build the local base images the tests and the example use, from Debian's packages.
# There is no registry to pull from on these machines, so images come from debootstrap.
#
#   warpdrive/python:3.11-bookworm          runtime: python3 python3-venv libpq5 ca-certificates
#   warpdrive/python-builder:3.11-bookworm  the same plus build-essential python3-dev libpq-dev
#
# An image that already exists is skipped, so this is cheap to run again.
# Needs root (debootstrap) and a running engine (scripts/engine-up.sh).
set -euo pipefail

SUITE="${WARPDRIVE_SUITE:-bookworm}"
RUNTIME_IMAGE="${WARPDRIVE_BASE_IMAGE:-warpdrive/python:3.11-$SUITE}"
BUILDER_IMAGE="${WARPDRIVE_BUILDER_IMAGE:-warpdrive/python-builder:3.11-$SUITE}"
CACHE_DIR="${WARPDRIVE_DEB_CACHE:-/var/cache/warpdrive-debootstrap}"
RUNTIME_PKGS="python3,python3-venv,libpq5,ca-certificates"
BUILDER_PKGS="$RUNTIME_PKGS,build-essential,python3-dev,libpq-dev"

log() { printf 'base-images: %s\n' "$*" >&2; }

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mkdir -p "$CACHE_DIR"

build() {
    local tag="$1" pkgs="$2"
    if docker image inspect "$tag" >/dev/null 2>&1; then
        log "$tag exists, skipped"
        return 0
    fi
    local root
    root="$(mktemp -d /var/tmp/warpdrive-rootfs.XXXXXX)"
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    log "debootstrap $SUITE -> $tag ($pkgs)"
    local start=$SECONDS
    debootstrap --variant=minbase --include="$pkgs" --cache-dir="$CACHE_DIR" \
        "$SUITE" "$root" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
    rm -f "$root.log"
    # Nothing of the build host may stay in the image: apt lists, cached debs, logs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$tag" >/dev/null
    log "$tag built in $((SECONDS - start)) s"
}

build "$RUNTIME_IMAGE" "$RUNTIME_PKGS"
build "$BUILDER_IMAGE" "$BUILDER_PKGS"
