#!/usr/bin/env bash
# The rootless demo, end to end, on a fresh Debian/Ubuntu machine:
#
#   sudo bash scripts/demo.sh
#
# Installs everything (scripts/setup-host.sh), then runs each step as an
# unprivileged user: the one who called sudo ($SUDO_USER), or rltest-sub when
# run as root without sudo (DEMO_USER=name picks another). Every command is
# printed before it runs. The demo uses its own store in a temporary directory,
# removed at the end (KEEP=1 keeps it).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOTLESS_VENV:-/opt/rootless-venv}"
ROOTLESS="$VENV/bin/rootless"

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: run it with sudo (it installs packages, then drops to you): sudo bash $0" >&2
    exit 1
fi

DEMO_USER="${DEMO_USER:-${SUDO_USER:-}}"
[[ -z $DEMO_USER || $DEMO_USER == root ]] && DEMO_USER=rltest-sub

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ------------------------------------------------------------------ setup
bold "Installing (scripts/setup-host.sh)"
bash "$REPO/scripts/setup-host.sh"

getent passwd "$DEMO_USER" >/dev/null || { echo "demo.sh: no user $DEMO_USER" >&2; exit 1; }
DEMO_UID=$(id -u "$DEMO_USER")
DEMO_GID=$(id -g "$DEMO_USER")
DEMO_HOME=$(getent passwd "$DEMO_USER" | cut -d: -f6)

DEMO_DIR=$(mktemp -d /tmp/rootless-demo.XXXXXX)
chmod 755 "$DEMO_DIR"
cleanup() {
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "demo: kept $DEMO_DIR"
    else
        rm -rf "$DEMO_DIR"
    fi
}
trap cleanup EXIT

ROOTFS="$DEMO_DIR/busybox"
STORE="$DEMO_DIR/store"
install -d -m 0700 -o "$DEMO_UID" -g "$DEMO_GID" "$STORE"

# Run a command as the demo user, with a login-like environment.
as_user() {
    setpriv --reuid "$DEMO_UID" --regid "$DEMO_GID" --init-groups -- \
        env -i HOME="$DEMO_HOME" USER="$DEMO_USER" LOGNAME="$DEMO_USER" \
        PATH="$VENV/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 \
        ROOTLESS_ROOT="$STORE" "$@"
}

FAILED=()
# step "shell command line": print it as the user would type it, run it as them.
step() {
    printf '\n\033[36m%s$\033[0m %s\n' "$DEMO_USER" "$1"
    if ! (cd "$DEMO_DIR" && as_user bash -c "set -o pipefail; $1"); then
        printf '\033[31m   -> failed\033[0m\n'
        FAILED+=("$1")
    fi
}

# ------------------------------------------------------------------ 1. a root filesystem
bold "1. A busybox root filesystem (from Debian's busybox-static)"
/usr/bin/python3 "$REPO/tests/helpers/rootfs.py" "$ROOTFS" "$DEMO_UID" "$DEMO_GID" >/dev/null
echo "made $ROOTFS, owned by $DEMO_USER"

# ------------------------------------------------------------------ 2. what this host allows
bold "2. What this host allows (no root, no daemon)"
step "id; grep \"^$DEMO_USER:\" /etc/subuid || echo '(no subordinate ids: single-id mapping)'"
step "rootless info"

# ------------------------------------------------------------------ 3. run from a rootfs
bold "3. Run a container from the rootfs"
step "rootless run --rm --rootfs busybox sh -c 'id; hostname; xargs -0 </proc/1/cmdline'"
step "echo hi | rootless run --rm -i --rootfs busybox cat"
step "rootless run --rm --rootfs busybox sh -c 'exit 3'; echo \"exit status: \$?\""

# ------------------------------------------------------------------ 4. a local registry
bold "4. A local registry serving an image (Debian's docker-registry on 127.0.0.1)"
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG="127.0.0.1:$PORT"
mkdir -p "$DEMO_DIR/registry"
cat > "$DEMO_DIR/registry/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $DEMO_DIR/registry/data
http:
  addr: $REG
YAML
/usr/bin/docker-registry serve "$DEMO_DIR/registry/config.yml" >"$DEMO_DIR/registry/log" 2>&1 &
REGISTRY_PID=$!
trap 'kill $REGISTRY_PID 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
# The image: the busybox tree as one layer, plus a second layer, pushed with skopeo.
(cd "$REPO/tests/helpers" && /usr/bin/python3 -c "
import sys
from images import Layout, TarEntry, gnu_tar_layer, layer_tar
layout = Layout('$DEMO_DIR/oci')
top = layer_tar([TarEntry('etc/motd', data=b'Hello from a rootless container!\\n')])
img = layout.image([(gnu_tar_layer('$ROOTFS'), 'gzip'), (top, 'gzip')], cmd=['sh'])
layout.tag('latest', img.manifest)
")
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$DEMO_DIR/oci:latest" "docker://$REG/demo/busybox:latest"
echo "serving $REG/demo/busybox:latest"

# ------------------------------------------------------------------ 5. pull, run, ps, diff, commit
bold "5. Pull it, run it, and look at what changed"
IMG="$REG/demo/busybox"
step "rootless pull $IMG"
step "rootless images"
step "rootless run --name demo $IMG sh -c 'cat /etc/motd; echo hello > /greeting; rm /etc/motd'"
step "rootless ps -a"
step "rootless diff demo"
step "rootless commit -m 'add a greeting' demo demo/greeting:v1"
step "rootless images"
step "rootless run --rm demo/greeting:v1 cat /greeting"
step "rootless run -d --name web $IMG sh -c 'while :; do date; sleep 1; done'"
step "sleep 1.5; rootless logs web; rootless stop -t 1 web; rootless ps -a"
step "rootless rm web demo && rootless rmi demo/greeting:v1"

# ------------------------------------------------------------------ summary
if ((${#FAILED[@]})); then
    bold "demo: ${#FAILED[@]} step(s) failed"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
bold "demo: all steps passed"
