#!/bin/sh
# mkrootfs.sh UNPACKDIR OUT - build the reference guest's ext4 root disk
# without mounting anything (mke2fs -d): static busybox (init, shell, tools),
# dropbear with exactly the shared libraries its binaries need, the files under
# images/rootfs/ (inittab and the guest init, rcS) and a few kernel modules.
#
# Environment:
#   ROOTFS_SIZE       image size (mke2fs syntax, default 128M; the file is sparse)
#   ROOTFS_MODULES    kernel modules to ship (with their dependencies), for
#                     modprobe in the guest (rcS needs isofs to read a seed)
#   AUTHORIZED_KEYS   a file baked in as /etc/banger/authorized_keys (keys that
#                     may log in besides those banger passes at boot)
set -eu

unpack=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
size=${ROOTFS_SIZE:-128M}
modules=${ROOTFS_MODULES:-button evdev virtio_rng vmw_vsock_virtio_transport dm_mod dm_snapshot isofs}
release=$(cat "$unpack/kernel-release")
kmods=$unpack/kernel/lib/modules/$release
ul=$unpack/userland
multiarch=x86_64-linux-gnu

tree=$out.d
rm -rf "$tree"
mkdir -p "$tree"
for d in bin sbin usr/bin usr/sbin lib/$multiarch lib64 etc/dropbear etc/banger dev proc sys \
	run tmp root mnt/work home var/log; do
	mkdir -p "$tree/$d"
done
ln -s /run "$tree/var/run"
ln -s /tmp "$tree/var/tmp"

# busybox and its applets (busybox lists where each one lives).
cp "$ul/bin/busybox" "$tree/bin/busybox"
chmod 0755 "$tree/bin/busybox"
set -f
for applet in $("$tree/bin/busybox" --list-full); do
	[ -e "$tree/$applet" ] || ln -s /bin/busybox "$tree/$applet"
done
set +f

# dropbear, and the shared libraries its binaries need (DT_NEEDED, recursively).
cp "$ul/usr/sbin/dropbear" "$tree/usr/sbin/"
cp "$ul/usr/bin/dropbearkey" "$ul/usr/bin/dropbearconvert" "$ul/usr/bin/dbclient" "$tree/usr/bin/"
find_lib() {
	for d in lib/$multiarch usr/lib/$multiarch lib usr/lib; do
		if [ -e "$ul/$d/$1" ]; then
			echo "$ul/$d/$1"
			return 0
		fi
	done
	return 1
}
needed() {
	readelf -d "$1" | sed -n 's/.*(NEEDED).*Shared library: \[\(.*\)\]/\1/p'
}
queue="$tree/usr/sbin/dropbear $tree/usr/bin/dropbearkey $tree/usr/bin/dropbearconvert $tree/usr/bin/dbclient"
while [ -n "$queue" ]; do
	set -- $queue
	bin=$1
	shift
	queue="$*"
	for lib in $(needed "$bin"); do
		[ -e "$tree/lib/$multiarch/$lib" ] && continue
		src=$(find_lib "$lib") || {
			echo "mkrootfs: $(basename "$bin") needs $lib, which no fetched package has" >&2
			exit 1
		}
		cp -L "$src" "$tree/lib/$multiarch/$lib"
		queue="$queue $tree/lib/$multiarch/$lib"
	done
done
interp=$(readelf -l "$tree/usr/sbin/dropbear" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
src=$(find_lib "$(basename "$interp")") || {
	echo "mkrootfs: no dynamic loader $interp in the fetched packages" >&2
	exit 1
}
cp -L "$src" "$tree/lib/$multiarch/$(basename "$interp")"
if [ "$interp" != "/lib/$multiarch/$(basename "$interp")" ]; then
	ln -s "/lib/$multiarch/$(basename "$interp")" "$tree$interp"
fi

# Kernel modules for modprobe in the guest (the initrd has its own copies of
# the boot drivers), decompressed, with a modules.dep made by depmod.
if [ -n "$modules" ]; then
	dst=$tree/lib/modules/$release
	mkdir -p "$dst"
	cp "$kmods/modules.builtin" "$kmods/modules.order" "$dst/"
	[ -f "$kmods/modules.builtin.modinfo" ] && cp "$kmods/modules.builtin.modinfo" "$dst/"
	for p in $(mod_closure "$kmods" $modules); do
		plain=$(mod_plain "$p")
		mkdir -p "$dst/$(dirname "$plain")"
		mod_copy "$kmods/$p" "$dst/$plain"
	done
	depmod -b "$tree" "$release"
fi

# The guest's own files: inittab, the init scripts, passwd/shadow...
cp -R "$here/rootfs/." "$tree/"
chmod 0600 "$tree/etc/shadow"
chmod 0700 "$tree/root" "$tree/etc/dropbear"
chmod 1777 "$tree/tmp"
chmod 0755 "$tree/etc/init.d/"* "$tree/etc/acpi/PWRF/00000080"
if [ -n "${AUTHORIZED_KEYS:-}" ]; then
	cp "$AUTHORIZED_KEYS" "$tree/etc/banger/authorized_keys"
	chmod 0644 "$tree/etc/banger/authorized_keys"
fi

rm -f "$out.tmp"
truncate -s "$size" "$out.tmp"
mke2fs -q -t ext4 -L banger-root -E root_owner=0:0 -d "$tree" "$out.tmp" "$size"
# mke2fs -d copies owners from the tree: when not built as root, give
# everything to root with debugfs (still no mounting).
if [ "$(id -u)" -ne 0 ]; then
	(cd "$tree" && find . -mindepth 1) | sed 's|^\.||' | while read -r f; do
		echo "sif \"$f\" uid 0"
		echo "sif \"$f\" gid 0"
	done >"$out.debugfs"
	debugfs -w -f "$out.debugfs" "$out.tmp" >/dev/null 2>&1
	rm -f "$out.debugfs"
fi
e2fsck -fn "$out.tmp" >/dev/null 2>&1 || {
	echo "mkrootfs: e2fsck found errors in $out.tmp" >&2
	exit 1
}
rm -rf "$tree"
mv "$out.tmp" "$out"
