#!/usr/bin/env bash
# Prepare a Debian/Ubuntu host to build, test, demo and benchmark rootless.
#
#   sudo bash scripts/setup-host.sh [--no-apt] [--no-users] [--no-install]
#
# Idempotent: every step checks before it changes anything, so running it
# again is cheap. Steps:
#   1. apt packages (the project's helpers, the peers we test against, build deps)
#   2. /dev/fuse usable by unprivileged users (fuse-overlayfs)
#   3. test users: rltest-sub (with subordinate id ranges), rltest-nosub (none)
#   4. a world-readable venv ($ROOTLESS_VENV, default /opt/rootless-venv) with
#      rootless installed from this checkout (regular, non-editable install)
#      plus the test dependencies
#   5. (Ubuntu >= 23.10 only) an AppArmor profile that lets the venv's python
#      create user namespaces
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOTLESS_VENV:-/opt/rootless-venv}"
SUB_USER=rltest-sub
NOSUB_USER=rltest-nosub
SUB_COUNT=65536

APT_PACKAGES=(
    # build
    gcc python3-dev python3-venv ca-certificates git tar
    # what rootless itself uses at run time
    uidmap fuse-overlayfs fuse3 util-linux procps squashfuse
    # test fixtures and peers we cross-check against
    busybox-static docker-registry skopeo umoci podman crun runc conmon
    bubblewrap charliecloud-runtime catatonit slirp4netns containernetworking-plugins
    debootstrap pigz zstd squashfs-tools apache2-utils openssl iproute2
    # HPC tests: Slurm, MPI (tests/integration/test_hpc.py)
    slurm-wlm munge openmpi-bin libopenmpi-dev
    # benchmarks
    hyperfine
)
TEST_PIP_PACKAGES=(pytest pytest-timeout pytest-benchmark atheris mypy==2.4.1)

do_apt=1 do_users=1 do_install=1
for arg in "$@"; do
    case "$arg" in
        --no-apt) do_apt=0 ;;
        --no-users) do_users=0 ;;
        --no-install) do_install=0 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "setup-host: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '\033[1msetup-host:\033[0m %s\n' "$*" >&2; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root: sudo bash $0 $*"
umask 022
CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT

install_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "apt: all ${#APT_PACKAGES[@]} packages present"
        return
    fi
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Services that packages start on install (docker-registry) are not wanted:
    # tests start their own registry on a free port.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || { ((created_policy)) && rm -f "$policy"; die "apt-get install failed"; }
    ((created_policy)) && rm -f "$policy"
    return 0
}

setup_fuse() {
    if [[ -c /dev/fuse ]]; then
        chmod 666 /dev/fuse
        log "/dev/fuse: mode 666"
    else
        log "warning: /dev/fuse missing; fuse-overlayfs tests will fail (modprobe fuse?)"
    fi
}

ensure_user() {
    local user=$1
    if ! getent passwd "$user" >/dev/null; then
        useradd --create-home --user-group --shell /bin/bash "$user"
        log "user $user created"
    fi
    local home
    home=$(getent passwd "$user" | cut -d: -f6)
    if [[ ! -d $home ]]; then
        install -d -m 0755 -o "$user" -g "$(id -gn "$user")" "$home"
    fi
}

# Print the first start >= 200000 that no existing range in $1 overlaps.
free_range_start() {
    awk -F: -v count="$SUB_COUNT" '
        NF >= 3 { end = $2 + $3; if (end > max) max = end }
        END { start = 200000; if (max > start) start = max; print start }' "$1"
}

ensure_subids() {
    local file
    for file in /etc/subuid /etc/subgid; do
        touch "$file"
        # useradd may have allocated ranges for the no-subid user: remove them.
        sed -i "/^${NOSUB_USER}:/d" "$file"
        if ! grep -q "^${SUB_USER}:" "$file"; then
            echo "${SUB_USER}:$(free_range_start "$file"):${SUB_COUNT}" >>"$file"
        fi
        log "$file: $(grep "^${SUB_USER}:" "$file" | head -1)"
    done
}

setup_users() {
    ensure_user "$SUB_USER"
    ensure_user "$NOSUB_USER"
    ensure_subids
}

# pip, without the noise of index locations this machine's pip.conf names but lacks.
pip() {
    "$VENV/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

venv_ok() {
    [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null
}

setup_venv() {
    if ! venv_ok; then
        log "venv: creating $VENV"
        rm -rf "$VENV"
        /usr/bin/python3 -m venv --copies "$VENV"
    fi
    # Build from a copy: a root-owned build/ or *.egg-info must not land in a
    # user's checkout, and stale in-place builds must not leak into the wheel.
    local src wheel
    src=$(mktemp -d /tmp/rootless-build.XXXXXX)
    CLEANUP+=("$src")
    mkdir "$src/tree"
    tar -C "$REPO" --exclude=./.git --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude='__pycache__' --exclude='*.so' \
        --exclude=./venv --exclude=./.pytest_cache -cf - . | tar -C "$src/tree" -xf -
    log "venv: building rootless from $REPO"
    pip wheel -q --no-deps -w "$src/wheel" "$src/tree"
    wheel=$(echo "$src"/wheel/rootless-*.whl)
    [[ -f $wheel ]] || die "no wheel built in $src/wheel"
    # Non-editable, always reinstalled so tests see the tree as it is now.
    pip install -q --force-reinstall --no-deps "$wheel"
    pip install -q "$wheel[test,fast]" "${TEST_PIP_PACKAGES[@]}"
    chmod -R a+rX "$VENV"
    log "venv: $(cd / && "$VENV/bin/python" -P -c 'import rootless; print("rootless", rootless.__version__, "at", rootless.__file__)')"
}

# Ubuntu 23.10+ restricts unprivileged user namespaces to binaries an AppArmor
# profile allows. The venv's python is a copy (--copies), so a profile can name
# exactly it without unlocking every python on the machine.
setup_apparmor() {
    local knob=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
    [[ -r $knob && $(cat "$knob") == 1 ]] || return 0
    if ! command -v apparmor_parser >/dev/null; then
        log "warning: $knob=1 and no apparmor_parser; see docs/rootless-setup.md"
        return 0
    fi
    local profile=/etc/apparmor.d/rootless-venv
    cat >"$profile" <<EOF
# Installed by rootless scripts/setup-host.sh: allow the rootless venv's
# python and its rootless launcher to create user namespaces (kernel.apparmor_restrict_unprivileged_userns=1).
abi <abi/4.0>,
include <tunables/global>

profile rootless-venv $VENV/bin/{python3*,rootless} flags=(unconfined) {
  userns,
  include if exists <local/rootless-venv>
}
EOF
    apparmor_parser -r "$profile"
    log "apparmor: loaded $profile"
}

report_kernel() {
    local max
    max=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo '?')
    log "kernel $(uname -r); user.max_user_namespaces=$max"
    if ! setpriv --reuid "$NOSUB_USER" --regid "$NOSUB_USER" --init-groups \
        unshare --user --map-root-user true 2>/dev/null; then
        log "warning: unprivileged user namespaces do not work here; see docs/rootless-setup.md"
    fi
}

main() {
    ((do_apt)) && install_apt_packages
    setup_fuse
    ((do_users)) && setup_users
    ((do_install)) && setup_venv
    ((do_install)) && setup_apparmor
    ((do_users)) && report_kernel
    log "done"
}

main
