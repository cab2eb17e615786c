#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine, run as root from a clean clone:
# apt packages, the kernel-header link bcc needs, and .venv with mantra6g installed
# in editable mode. Each step is skipped when it is already done, so `make demo` and
# `make test` can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    clang llvm libbpf-dev bpftool python3-bpfcc mininet bridge-utils ethtool iproute2 iperf3 tcpdump
    iputils-ping linux-headers-amd64 python3-venv python3-dev
    python3-thrift  # simple_switch_CLI's client library, where BMv2 is installed by hand
)

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# bcc compiles against /lib/modules/$(uname -r)/build. Our kernels ship no headers of
# their own, so point build/ and source/ at Debian's linux-headers-amd64.
kmod="/lib/modules/$(uname -r)"
if [ ! -e "$kmod/build" ]; then
    hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$hdr" ]; then
        log "linking kernel headers $hdr -> $kmod/build"
        as_root mkdir -p "$kmod"
        as_root ln -sfn "$hdr" "$kmod/build"
        as_root ln -sfn "${hdr%-amd64}-common" "$kmod/source"
    else
        log "warning: no linux-headers-*-amd64 under /usr/src; bcc will not compile"
    fi
fi

# The virtualenv: Debian's python3 with system site packages (bcc, mininet).
if [ ! -x .venv/bin/python ]; then
    log "creating .venv from /usr/bin/python3"
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.mantra-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing mantra6g and its pinned dependencies into .venv"
    .venv/bin/python -m pip install --quiet --quiet -e '.[dev]'  # -qq: errors only
    echo "$want" > "$stamp"
fi
