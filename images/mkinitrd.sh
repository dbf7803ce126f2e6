#!/bin/sh
# mkinitrd.sh UNPACKDIR OUT - build the initrd (gzip'ed newc cpio): static
# busybox, images/initrd-init as /init, and the kernel modules needed to reach
# the root disk, with their dependencies, in load order.
#
# With Debian's cloud kernel these are virtio_ring, virtio, virtio_mmio,
# failover, net_failover, virtio_net and virtio_blk; ext4 is built in, but if
# a kernel has it as a module it is added too. Compressed modules (.ko.xz,
# .ko.zst, .ko.gz) are decompressed here, so the initrd's insmod needs no
# decompressor.
set -eu

unpack=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
release=$(cat "$unpack/kernel-release")
kroot=$unpack/kernel
mods=$kroot/lib/modules/$release

# What the kernel must have to reach the root disk and the network; whatever
# of it is built in (modules.builtin) needs nothing here.
want=""
for m in virtio_mmio virtio_net virtio_blk ext4; do
	mod_is_builtin "$mods" "$m" || want="$want $m"
done

tmp=$out.d
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/lib/modules" "$tmp/dev" "$tmp/proc" "$tmp/sys" "$tmp/newroot"

order=$(mod_closure "$mods" $want)
: >"$tmp/etc/modules"
for p in $order; do
	name=$(basename "$(mod_plain "$p")" .ko)
	mod_copy "$mods/$p" "$tmp/lib/modules/$name.ko"
	echo "$name" >>"$tmp/etc/modules"
done
echo "mkinitrd: modules: $(tr "\n" " " <"$tmp/etc/modules")"

cp "$unpack/userland/bin/busybox" "$tmp/bin/busybox"
ln -s busybox "$tmp/bin/sh"
cp "$here/initrd-init" "$tmp/init"
chmod 0755 "$tmp/init" "$tmp/bin/busybox"

# Owner root whoever builds it; sorted and dated for a reproducible archive.
find "$tmp" -exec touch -h -d @0 {} +
(cd "$tmp" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$out.tmp"
rm -rf "$tmp"
mv "$out.tmp" "$out"
