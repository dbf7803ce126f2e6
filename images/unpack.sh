#!/bin/sh
# unpack.sh DEBDIR OUTDIR - extract the packages fetched by fetch-debs.sh.
#
#   OUTDIR/kernel/          the kernel package (boot/vmlinuz-*, lib/modules/<release>/)
#                           plus the modules.dep that depmod generates for it
#   OUTDIR/userland/        every other package, in one tree
#   OUTDIR/kernel-release   the kernel release (what 'uname -r' prints in the guest)
set -eu

debs=$1
out=$2
kpkg=$(cat "$debs/kernel-package")

rm -rf "$out"
mkdir -p "$out/kernel" "$out/userland"
while read -r pkg file; do
	if [ "$pkg" = "$kpkg" ]; then
		dpkg-deb -x "$debs/$file" "$out/kernel"
	else
		dpkg-deb -x "$debs/$file" "$out/userland"
	fi
done <"$debs/packages"

set -- "$out"/kernel/lib/modules/*/
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "unpack: expected exactly one lib/modules/<release> in $kpkg" >&2
	exit 1
fi
release=$(basename "$1")
# The package ships no modules.dep (its postinst runs depmod on the target).
depmod -b "$out/kernel" "$release"
echo "$release" >"$out/kernel-release"
