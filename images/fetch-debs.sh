#!/bin/sh
# fetch-debs.sh DIR - download the Debian packages the reference guest image is
# built from into DIR (apt-get download: no root needed, nothing installed).
#
# The kernel is the version the linux-image-cloud-amd64 metapackage currently
# depends on. DIR/packages lists "package file" pairs for the other scripts and
# DIR/kernel-package names the kernel package.
# Override with KERNEL_META=<metapackage> or KERNEL_PKG=<linux-image-...>.
set -eu

dir=$1
meta=${KERNEL_META:-linux-image-cloud-amd64}

if [ -z "${KERNEL_PKG:-}" ]; then
	KERNEL_PKG=$(apt-cache depends "$meta" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
	if [ -z "$KERNEL_PKG" ]; then
		echo "fetch-debs: cannot resolve the kernel behind '$meta'" \
			"(run 'apt-get update' first?)" >&2
		exit 1
	fi
fi

# busybox-static: the initrd and the whole userland. dropbear-bin: the SSH
# server; the libraries below are what its binaries link against (mkrootfs.sh
# checks every DT_NEEDED entry is satisfied, so a missing one fails the build).
pkgs="$KERNEL_PKG busybox-static dropbear-bin libtomcrypt1 libtommath1 libgmp10 zlib1g libcrypt1 libc6"

tmp=$dir.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
echo "fetch-debs: $pkgs"
# apt-get download writes into the current directory.
# As root, apt would try to drop to its _apt user, which cannot write here.
sandbox=
[ "$(id -u)" -eq 0 ] && sandbox="-o APT::Sandbox::User=root"
(cd "$tmp" && apt-get download -q $sandbox $pkgs)

: >"$tmp/packages"
for p in $pkgs; do
	set -- "$tmp/${p}"_*.deb
	if [ $# -ne 1 ] || [ ! -f "$1" ]; then
		echo "fetch-debs: expected one .deb for $p in $tmp" >&2
		exit 1
	fi
	echo "$p $(basename "$1")" >>"$tmp/packages"
done
echo "$KERNEL_PKG" >"$tmp/kernel-package"

rm -rf "$dir"
mv "$tmp" "$dir"
