#!/usr/bin/env bash
# Make sure this machine's engine can run containers of other CPUs (linux/arm64 on an amd64
# engine, and the reverse), idempotently: QEMU user emulation from Debian's
# `qemu-user-static`, registered in binfmt_misc with the fix-binary (F) flag so that a
# container needs no QEMU of its own.
#
#   bash scripts/emulation.sh [PLATFORM...]    default: linux/arm64 and linux/amd64
#
# Checks at the end that a container of each PLATFORM that is not the engine's own runs
# (an image of that platform is needed for it: warpdrive/python:3.11-bookworm-<arch>, made by
# scripts/base-images.sh, when it exists; otherwise the check is the handler's registration).
# Needs root (apt-get, mount).
set -euo pipefail

log() { printf 'emulation: %s\n' "$*" >&2; }
BINFMT=/proc/sys/fs/binfmt_misc

if ! mountpoint -q "$BINFMT" 2>/dev/null && [ ! -e "$BINFMT/register" ]; then
    log "mounting binfmt_misc on $BINFMT"
    mount -t binfmt_misc binfmt_misc "$BINFMT"
fi

qemu_for() {  # Debian's handler name for a docker architecture
    case "$1" in
        arm64) echo aarch64 ;;
        amd64) echo x86_64 ;;
        arm) echo arm ;;
        *) echo "$1" ;;
    esac
}

if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
    log "installing Debian's qemu-user-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq qemu-user-static >/dev/null
fi

engine_arch="$(docker version --format '{{.Server.Arch}}')"
platforms=("$@")
[ "${#platforms[@]}" -gt 0 ] || platforms=(linux/arm64 linux/amd64)
for platform in "${platforms[@]}"; do
    arch="${platform#*/}"; arch="${arch%%/*}"
    [ "$arch" = "$engine_arch" ] && continue
    handler="$BINFMT/qemu-$(qemu_for "$arch")"
    if [ ! -e "$handler" ]; then
        # the package's postinst registers its handlers only where binfmt_misc was mounted
        # (and systemd runs): register the one we need from the package's own binfmt.d line
        conf="/usr/lib/binfmt.d/qemu-$(qemu_for "$arch").conf"
        log "registering $conf in $BINFMT"
        cat "$conf" > "$BINFMT/register"
    fi
    if [ ! -e "$handler" ] || ! grep -q '^enabled' "$handler"; then
        log "no enabled binfmt_misc handler $handler for $platform"
        exit 1
    fi
    if ! grep -q '^flags: .*F' "$handler"; then
        log "$handler lacks the fix-binary (F) flag: containers would need QEMU inside"
        exit 1
    fi
    image="warpdrive/python:3.11-bookworm-$arch"
    if docker image inspect "$image" >/dev/null 2>&1; then
        out="$(docker run --rm --platform "$platform" "$image" python3 -c 'import platform; print(platform.machine())')"
        log "$platform runs under emulation ($image: machine $out)"
    else
        log "$platform handler registered ($handler); no $image yet to try"
    fi
done
