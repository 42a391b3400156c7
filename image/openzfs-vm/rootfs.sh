#!/usr/bin/env bash
# Build the OpenZFS build root: a Debian 12 minbase chroot with one kernel, its headers and OpenZFS from
# bookworm-backports, whose zfs-dkms has compiled spl.ko/zfs.ko for that kernel.
#
#   rootfs.sh ROOT MIRROR SECURITY_MIRROR KERNEL_ABI KERNEL_VERSION ZFS_VERSION
#
# Every version is exact (build.py resolves them from the mirror first, and its cache key is made of them
# and of this file): a mirror that has moved on makes apt fail here instead of building something else.
# Run by build.py as root; ROOT must not exist yet. Fails on the first error and leaves nothing mounted.
set -euo pipefail

if [ $# -ne 6 ]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
root=$1 mirror=$2 security=$3 abi=$4 kernel_version=$5 zfs_version=$6
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

if [ -e "$root" ]; then
  echo "rootfs.sh: $root already exists" >&2
  exit 1
fi

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount --lazy "${mounted[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT

step() { printf '==> rootfs: %s (%s)\n' "$*" "$(date +%T)"; }

step "debootstrap --variant=minbase bookworm"
debootstrap --variant=minbase --keyring="$keyring" bookworm "$root" "$mirror"

step "apt sources with bookworm-backports"
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main contrib
deb $mirror bookworm-updates main contrib
deb $mirror bookworm-backports main contrib
deb $security bookworm-security main contrib
EOF
# Package scripts must not start services in the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mounted+=("$root/proc")

# (INITRD=No: the kernel's postinst hook skips making an initramfs for the chroot's own boot, unused here)
in_root() {
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LC_ALL=C.UTF-8 HOME=/root INITRD=No "$@"
}
apt_opts=(-y -q -o Dpkg::Use-Pty=0 -o Acquire::Languages=none --no-install-recommends)

in_root apt-get -q update
step "kernel $abi ($kernel_version) and its headers"
in_root apt-get install "${apt_opts[@]}" kmod "linux-image-$abi=$kernel_version" "linux-headers-$abi=$kernel_version"

step "OpenZFS $zfs_version from bookworm-backports (zfs-dkms compiles the modules)"
in_root apt-get install "${apt_opts[@]}" -t bookworm-backports \
  "zfs-dkms=$zfs_version" "zfsutils-linux=$zfs_version"

module_dir="/lib/modules/$abi/updates/dkms"
if ! [ -e "$root$module_dir/zfs.ko" ] && ! [ -e "$root$module_dir/zfs.ko.xz" ]; then
  step "the zfs-dkms postinst built no module for $abi: dkms install"
  upstream=${zfs_version#*:}
  upstream=${upstream%%-*}
  in_root dkms install "zfs/$upstream" -k "$abi"
fi
ls -l "$root$module_dir"
in_root apt-get clean
step "done"
