#!/usr/bin/env bash
# Rootless Podman serving the Docker API for a plain user, as on a Fedora/RHEL laptop or a
# CI runner without root: that user's `podman system service` on
# $XDG_RUNTIME_DIR/podman/podman.sock. Run as root (it sets the machine up for the user);
# idempotent; prints the DOCKER_HOST on stdout.
#
#   WARPDRIVE_PODMAN_USER  the user (default wdpodman; made, with a home, when missing)
#   WARPDRIVE_PODMAN_LOG   the service's log (default /var/log/warpdrive-podman-rootless.log)
#   $@                     images of the Docker engine to copy into the user's store
#                          (default: the test base images)
#
# What rootless Podman needs here, and what this script sets up:
# - uidmap (newuidmap/newgidmap) and /etc/subuid, /etc/subgid ranges for the user (65536
#   ids: the image's uid 1001 and gid 0 map into them);
# - slirp4netns for its network, which opens /dev/net/tun: on a machine where that is
#   root-only (crw-------) its mode is set to 0666 and the old mode kept in
#   /run/warpdrive-podman-rootless/tun.mode, restored by `--stop`;
# - overlay storage in the user's storage.conf (native overlay in a user namespace,
#   kernel 5.13 and later), default_ulimits at or under the hard limits in a
#   containers.conf named by CONTAINERS_CONF (as podman-up.sh does for rootful).
#
# `podman-rootless-up.sh --prepare` installs the packages, makes the user, its ranges and
# its config, and stops there (what scripts/test.sh does on a fresh machine: the test
# session starts the service and stops it, so /dev/net/tun is opened only while it runs).
# `podman-rootless-up.sh --stop` stops the service (and the user's pause process) and
# restores /dev/net/tun's mode.
set -euo pipefail

USER_NAME="${WARPDRIVE_PODMAN_USER:-wdpodman}"
LOG="${WARPDRIVE_PODMAN_LOG:-/var/log/warpdrive-podman-rootless.log}"
STATE=/run/warpdrive-podman-rootless
log() { printf 'podman-rootless-up: %s\n' "$*" >&2; }

if [ "${1:-}" = "--stop" ]; then
    if id "$USER_NAME" >/dev/null 2>&1; then
        sock="/run/user/$(id -u "$USER_NAME")/podman/podman.sock"
        bash "$(dirname "$0")/stop-daemon.sh" "$STATE/podman-$USER_NAME.pid" "$sock" "rootless podman on $sock"
        # and the pause process rootless Podman keeps for the user's namespace (any podman
        # command of the user leaves it; the next one makes it again)
        bash "$(dirname "$0")/stop-daemon.sh" "/run/user/$(id -u "$USER_NAME")/libpod/tmp/pause.pid" \
            podman "rootless podman's pause process"
    fi
    if [ -s "$STATE/tun.mode" ]; then
        chmod "$(cat "$STATE/tun.mode")" /dev/net/tun
        rm -f "$STATE/tun.mode"
    fi
    exit 0
fi

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (Debian's)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! id "$USER_NAME" >/dev/null 2>&1; then
    log "making user $USER_NAME"
    useradd --create-home --shell /bin/bash "$USER_NAME"
fi
uid="$(id -u "$USER_NAME")"
home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
for file in /etc/subuid /etc/subgid; do
    touch "$file"
    if ! grep -q "^$USER_NAME:" "$file"; then
        # a range above every one the file names already
        start="$(awk -F: 'BEGIN {m = 100000} {e = $2 + $3; if (e > m) m = e} END {print m}' "$file")"
        echo "$USER_NAME:$start:65536" >> "$file"
    fi
done

if [ "${1:-}" = "--prepare" ]; then
    prepare_only=1
    shift
else
    prepare_only=0
fi
mkdir -p "$STATE"

run_dir="/run/user/$uid"
mkdir -p "$run_dir"
chown "$USER_NAME:" "$run_dir"
chmod 700 "$run_dir"
sock="$run_dir/podman/podman.sock"
conf_dir="$home/.config/containers"
runuser -u "$USER_NAME" -- mkdir -p "$conf_dir"
nofile="$(ulimit -Hn)"; [ "$nofile" = unlimited ] || [ "$nofile" -gt 20000 ] && nofile=20000
nproc="$(ulimit -Hu)"; [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
printf '[containers]\ndefault_ulimits = [\n  "nofile=%s:%s",\n  "nproc=%s:%s",\n]\n' \
    "$nofile" "$nofile" "$nproc" "$nproc" > "$conf_dir/containers.conf"
# runroot and graphroot named: podman 4.3's compat commit (POST /commit) reads the storage
# config again without the rootless defaults and fails with "runroot must be set" when the
# user's storage.conf leaves them out
printf '[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n' \
    "$run_dir/containers" "$home/.local/share/containers/storage" > "$conf_dir/storage.conf"
chown "$USER_NAME:" "$conf_dir/containers.conf" "$conf_dir/storage.conf"
if [ "$prepare_only" = 1 ]; then
    exit 0
fi
if [ -c /dev/net/tun ] && ! runuser -u "$USER_NAME" -- test -r /dev/net/tun -a -w /dev/net/tun; then
    [ -s "$STATE/tun.mode" ] || stat -c %a /dev/net/tun > "$STATE/tun.mode"
    chmod 0666 /dev/net/tun
fi

as_user() {
    runuser -u "$USER_NAME" -- env -i HOME="$home" USER="$USER_NAME" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        XDG_RUNTIME_DIR="$run_dir" CONTAINERS_CONF="$conf_dir/containers.conf" "$@"
}
answers() { curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }

if ! answers; then
    log "starting rootless podman system service for $USER_NAME on unix://$sock (log: $LOG)"
    touch "$LOG"
    chown "$USER_NAME:" "$LOG"
    as_user mkdir -p "$run_dir/podman"
    # from / (as podman-up.sh): conmon needs the working directory to last, and to be readable
    # (the redirections on the subshell: it must hold no descriptor of the caller's, or a
    # caller reading this script's output to its end waits for the service to end)
    (cd / && as_user setsid podman system service --time=0 "unix://$sock") >"$LOG" 2>&1 < /dev/null &
    for _ in $(seq 1 120); do
        if answers; then break; fi
        sleep 0.5
    done
fi
# the service itself (rootless podman re-executes itself in the user namespace: the pid
# of the command started above is not the one that serves)
pgrep -n -u "$USER_NAME" -f "podman system service --time=0 unix://$sock" > "$STATE/podman-$USER_NAME.pid" || true
if ! answers; then
    log "the rootless podman service did not answer within 60 s; see $LOG"
    tail -n 20 "$LOG" >&2 || true
    exit 1
fi

if [ "$#" -eq 0 ]; then
    set -- warpdrive/python:3.11-bookworm warpdrive/python-builder:3.11-bookworm
fi
for image in "$@"; do
    if as_user podman image exists "$image" 2>/dev/null; then
        continue
    fi
    log "copying $image into $USER_NAME's store"
    docker save "$image" | as_user podman load -q >/dev/null
done
echo "unix://$sock"
