#!/bin/bash
# dm-in-guest.sh - run tests/integration/test_host_dm (dm-snapshot root disks
# for real) inside a QEMU guest whose kernel has device-mapper, for hosts
# whose own kernel lacks it (/dev/mapper/control missing).
#
#   tests/integration/dm-in-guest.sh [BUILD_DIR]      (make host-dm-guest)
#
# The guest: Debian's cloud kernel (dm-mod, dm-snapshot, dm-zero and loop as
# modules, fetched with apt-get download), an initramfs with busybox, the
# test binary with the shared libraries ldd lists, and dmsetup. Its init
# loads the modules, runs the test and powers off; this script prints the
# guest's console and exits with the test's status. Needs root (for apt-get
# download's cache only), qemu-system-x86 and a Debian mirror.
set -euo pipefail

build=${1:-build}
top=$(cd "$(dirname "$0")/../.." && pwd)
test_bin=$top/$build/tests/integration/test_host_dm
work=$top/$build/dm-guest
timeout_s=${DM_GUEST_TIMEOUT:-600}

[ -x "$test_bin" ] || { echo "dm-in-guest: build $test_bin first" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "dm-in-guest: qemu-system-x86_64 missing" >&2; exit 1; }

mkdir -p "$work/debs"
cd "$work/debs"
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "dm-in-guest: no cloud kernel package found" >&2; exit 1; }
ls "$kpkg"_*.deb >/dev/null 2>&1 || apt-get download "$kpkg" >/dev/null 2>&1
ls busybox-static_*.deb >/dev/null 2>&1 || apt-get download busybox-static >/dev/null 2>&1

rm -rf "$work/k" "$work/root"
mkdir -p "$work/k" "$work/root"
dpkg-deb -x "$(ls "$kpkg"_*.deb | head -1)" "$work/k"
dpkg-deb -x "$(ls busybox-static_*.deb | head -1)" "$work/k/bb"
kver=$(ls "$work/k/lib/modules" | head -1)

root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,lib/modules,usr/sbin}
cp "$work/k/bb/bin/busybox" "$root/bin/busybox"
for m in dm-mod dm-bufio dm-snapshot dm-zero loop; do
	cp "$(find "$work/k/lib/modules/$kver" -name "$m.ko*" | head -1)" "$root/lib/modules/"
done

# The test binary, dmsetup, the e2fsprogs tools rootfs_grow runs (and the
# test uses), and every shared library they load.
cp "$test_bin" "$root/bin/test_host_dm"
# (in /usr/local/sbin, first in PATH: busybox's own mke2fs applet would shadow them)
tools=
mkdir -p "$root/usr/local/sbin"
for t in dmsetup mke2fs e2fsck resize2fs dumpe2fs; do
	cp "$(command -v "$t")" "$root/usr/local/sbin/$t"
	tools="$tools $(command -v "$t")"
done
mkdir -p "$root/etc"
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
for b in "$test_bin" $tools; do
	ldd "$b" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=900m tmpfs /tmp
for m in dm-mod dm-bufio dm-snapshot dm-zero loop; do insmod /lib/modules/$m.ko* || echo "insmod $m failed"; done
export PATH=/usr/local/sbin:/bin:/sbin:/usr/sbin TMPDIR=/tmp
echo "dm-guest: kernel $(uname -r), /dev/mapper: $(ls /dev/mapper 2>&1)"
/bin/test_host_dm
echo "dm-guest: exit status $?"
sync
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initrd.gz"

khz=$(awk '/^bogomips/ {printf "%d", $3 * 500; exit}' /proc/cpuinfo)
log=$work/console.log
echo "dm-in-guest: booting $kpkg under QEMU (TCG), console in $log"
timeout "$timeout_s" qemu-system-x86_64 -M pc -accel tcg -cpu max -m 1536 -smp 1 \
	-nodefaults -no-user-config -display none -no-reboot -serial "file:$log" \
	-kernel "$work/k/boot/vmlinuz-$kver" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet tsc_early_khz=$khz" || true
sed -n '/^dm-guest:/,$p' "$log" | tr -d '\r'
status=$(sed -n 's/^dm-guest: exit status \([0-9]*\).*/\1/p' "$log" | tr -d '\r')
[ -n "$status" ] || { echo "dm-in-guest: the guest did not finish" >&2; exit 1; }
if grep -q '^\[  SKIPPED \]' "$log"; then
	echo "dm-in-guest: tests were skipped inside the guest" >&2
	exit 1
fi
exit "$status"
