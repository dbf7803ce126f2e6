#!/bin/sh
# build.sh OUTDIR - build the Debian 12 (bookworm) guest from Debian packages
# into OUTDIR: vmlinux (the uncompressed ELF kernel), initrd.gz (the chroot's
# initramfs-tools initramfs with the virtio-mmio drivers) and rootfs.ext4 (a
# bare ext4, no partition table, made without mounting), plus kernel-release
# and packages.txt (the installed package versions). Needs root, mmdebstrap
# and the host's apt sources (the chroot uses the same ones).
#
# Environment:
#   DEBIAN_ROOTFS_HEADROOM  MiB added to the used size of the tree (default 64)
set -eu

out=$1
here=$(cd "$(dirname "$0")" && pwd)
headroom=${DEBIAN_ROOTFS_HEADROOM:-64}

if [ "$(id -u)" -ne 0 ]; then
	echo "image-debian: building needs root (mmdebstrap --mode=root)" >&2
	exit 1
fi

# The host's apt sources, as they are (mmdebstrap pastes a file given as a
# mirror into the chroot's sources.list): no mirror is named here.
set --
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -s "$f" ] && set -- "$@" "$f"
done
if [ $# -eq 0 ]; then
	echo "image-debian: the host has no apt sources" >&2
	exit 1
fi
mirrors="$*"

pkgs=$(sed -e 's/#.*//' "$here/packages" | tr -s ' \n' ',' | sed -e 's/^,//' -e 's/,$//')

work=$out.work
rm -rf "$work"
mkdir -p "$work"
tree=$work/tree

# Docs, man pages and translations are not installed (copyright files are).
# shellcheck disable=SC2086
mmdebstrap --mode=root --variant=minbase --include="$pkgs" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--customize-hook="\"$here/customize.sh\" \"\$1\" \"$here/overlay\"" \
	bookworm "$tree" $mirrors

release=$(cat "$tree/etc/banger-kernel-release")
rm "$tree/etc/banger-kernel-release"
"$here/../extract-vmlinux.sh" "$tree/boot/vmlinuz-$release" "$work/vmlinux"
# The initramfs is shipped next to the disk, not inside it.
mv "$tree/boot/initrd.img-$release" "$work/initrd.gz"
echo "$release" >"$work/kernel-release"
# shellcheck disable=SC2016 # dpkg-query expands these
chroot "$tree" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages.txt"

# A bare ext4 with the tree, sized to what it holds plus some headroom (the
# host or cloud-init's resize_rootfs grows it later).
used=$(du -s -m -x "$tree" | cut -f1)
size=$((used + used / 4 + headroom))
mke2fs -q -t ext4 -L rootfs -E root_owner=0:0 -d "$tree" "$work/rootfs.ext4" "${size}M"
rm -rf "$tree"

echo "image-debian: kernel $release, tree ${used} MiB, rootfs.ext4 ${size} MiB"
rm -rf "$out"
mv "$work" "$out"
