#!/usr/bin/env bash
# Set up and run Bulwark on a Debian 12 machine (as root).
#
#   ./dev.sh up      install what is needed, initialize on the embedded defaults if needed, run the appliance
#   ./dev.sh test    install what is needed (test tools too) and run lint, type checks and every test tier
#   ./dev.sh test-openzfs      only the tests against real OpenZFS, in the test machine
#   ./dev.sh build-openzfs-vm  build the OpenZFS test machine (or find it in the cache) and print where it is
#   ./dev.sh setup   install only
#
# Environment: BULWARK_DATA_DIR (default /var/lib/bulwark), BULWARK_PORT (default 8443),
# PYTEST_ARGS (extra arguments for pytest), BULWARK_VM_CACHE (default /var/cache/bulwark/openzfs-vm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"
python=/usr/bin/python3

# Debian packages: what the appliance runs, and what the tests start for real.
run_packages=(python3 python3-venv python3-dev build-essential libffi-dev zfs-fuse samba smbclient
              samba-vfs-modules smartmontools util-linux ca-certificates openssh-client e2fsprogs)
# What the tests start: the OpenZFS test machine (a Debian chroot run under QEMU), Chromium, a jump host and
# SFTP server (sshd); the peers the benchmarks compare with (rsync, restic, zstd).
test_packages=(chromium systemd debootstrap qemu-system-x86 busybox-static
               openssh-server rsync restic zstd)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "dev.sh: run this as root (it installs packages and manages ZFS pools)" >&2
    exit 1
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Package scripts must not start services (smbd, zfs-fuse) system-wide: Bulwark and its tests
    # start their own with their own configuration.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
  fi
}

python_env() {
  if [ ! -x "$venv/bin/python" ]; then
    say "creating the virtualenv"
    "$python" -m venv "$venv"
  fi
  local stamp="$venv/.installed"
  if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing Python packages (pinned in requirements.lock)"
    "$venv/bin/pip" install -q --upgrade 'pip==25.3'
    "$venv/bin/pip" install -q --require-hashes -r requirements.lock
    "$venv/bin/pip" install -q --no-deps -e .
    touch "$stamp"
  fi
}

web_assets() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing front-end assets (pinned in package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  mkdir -p webui/static/vendor
  cp node_modules/htmx.org/dist/htmx.min.js webui/static/vendor/htmx.min.js
  cp node_modules/@picocss/pico/css/pico.min.css webui/static/vendor/pico.min.css
}

setup() {
  need_root
  apt_install "${run_packages[@]}" "$@"
  python_env
  web_assets
}

# Build the OpenZFS test machine, or find it in the cache (~8 minutes the first time, seconds after that),
# and have the tests use it: they fail rather than skip when it is missing.
openzfs_vm() {
  say "OpenZFS test machine (image/openzfs-vm; the first build takes ~8 minutes)"
  local dir
  dir="$("$venv/bin/python" image/openzfs-vm/build.py | tail -n 1)"
  export BULWARK_OPENZFS_VM="$dir" BULWARK_REQUIRE_OPENZFS=1
}

cmd="${1:-}"
case "$cmd" in
  up)
    setup
    data_dir="${BULWARK_DATA_DIR:-/var/lib/bulwark}"
    if [ ! -f "$data_dir/bulwark.db" ]; then
      say "initializing the appliance in $data_dir (file-backed pool on zfs-fuse)"
      "$venv/bin/bulwark" --data-dir "$data_dir" init --port "${BULWARK_PORT:-8443}"
    fi
    say "starting Bulwark (Ctrl-C stops it)"
    exec "$venv/bin/bulwark" --data-dir "$data_dir" run ${BULWARK_PORT:+--port "$BULWARK_PORT"}
    ;;
  test)
    setup "${test_packages[@]}"
    openzfs_vm
    say "lint (ruff)"
    "$venv/bin/ruff" check .
    "$venv/bin/ruff" format --check .
    say "type checks (mypy, strict on appliance/)"
    "$venv/bin/mypy"
    say "tests: unit, integration, e2e"
    # shellcheck disable=SC2086
    exec "$venv/bin/pytest" tests ${PYTEST_ARGS:-}
    ;;
  test-openzfs)
    setup "${test_packages[@]}"
    openzfs_vm
    say "tests against OpenZFS in the test machine (marker: openzfs)"
    # shellcheck disable=SC2086
    exec "$venv/bin/pytest" -m openzfs tests ${PYTEST_ARGS:-}
    ;;
  build-openzfs-vm)
    setup "${test_packages[@]}"
    exec "$venv/bin/python" image/openzfs-vm/build.py
    ;;
  setup)
    setup "${test_packages[@]}"
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
