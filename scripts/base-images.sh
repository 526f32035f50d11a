#!/usr/bin/env bash
# Build the local base images the tests and the example use, from Debian's packages.
# There is no registry to pull from on these machines, so images come from debootstrap.
#
#   warpdrive/python:3.11-bookworm          runtime: python3 python3-venv libpq5 ca-certificates
#   warpdrive/python-builder:3.11-bookworm  the same plus build-essential python3-dev libpq-dev
#
# An image that already exists is skipped, so this is cheap to run again.
# Needs root (debootstrap) and a running engine (scripts/engine-up.sh).
#
# WARPDRIVE_ARCH=arm64 (a Debian/Docker architecture other than the engine's) makes the
# images of that CPU instead, tagged with the architecture as a suffix
# (warpdrive/python:3.11-bookworm-arm64): debootstrap's second stage runs under QEMU
# (scripts/emulation.sh), and the image config is written by scripts/import_rootfs.py, since
# `docker import --platform` of Docker 20.10 keeps the engine's architecture in it.
set -euo pipefail

SUITE="${WARPDRIVE_SUITE:-bookworm}"
ENGINE_ARCH="$(docker version --format '{{.Server.Arch}}')"
ARCH="${WARPDRIVE_ARCH:-$ENGINE_ARCH}"
SUFFIX=""
[ "$ARCH" = "$ENGINE_ARCH" ] || SUFFIX="-$ARCH"
RUNTIME_IMAGE="${WARPDRIVE_BASE_IMAGE:-warpdrive/python:3.11-$SUITE$SUFFIX}"
BUILDER_IMAGE="${WARPDRIVE_BUILDER_IMAGE:-warpdrive/python-builder:3.11-$SUITE$SUFFIX}"
CACHE_DIR="${WARPDRIVE_DEB_CACHE:-/var/cache/warpdrive-debootstrap}"
RUNTIME_PKGS="python3,python3-venv,libpq5,ca-certificates"
BUILDER_PKGS="$RUNTIME_PKGS,build-essential,python3-dev,libpq-dev"

log() { printf 'base-images: %s\n' "$*" >&2; }

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
if [ -n "$SUFFIX" ]; then
    bash "$(dirname "$0")/emulation.sh" "linux/$ARCH"
    CACHE_DIR="$CACHE_DIR-$ARCH"
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
    debootstrap --arch="$ARCH" --variant=minbase --include="$pkgs" --cache-dir="$CACHE_DIR" \
        "$SUITE" "$root" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; return 1; }
    rm -f "$root.log"
    # Nothing of the build host may stay in the image: apt lists, cached debs, logs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    if [ -n "$SUFFIX" ]; then
        tar --numeric-owner -C "$root" -cf "$root.tar" .
        python3 "$(dirname "$0")/import_rootfs.py" "$root.tar" "$tag" "linux/$ARCH" \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
            -- python3 >/dev/null || { rm -f "$root.tar"; return 1; }
        rm -f "$root.tar"
    else
        tar --numeric-owner -C "$root" -c . | docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            - "$tag" >/dev/null
    fi
    log "$tag built in $((SECONDS - start)) s"
}

build "$RUNTIME_IMAGE" "$RUNTIME_PKGS"
build "$BUILDER_IMAGE" "$BUILDER_PKGS"
