#!/bin/sh
# customize.sh ROOT OVERLAY - mmdebstrap's customize hook for the Debian
# guest (images/debian/build.sh): copy the overlay files into the chroot
# ROOT, rebuild the initramfs with them, and make the first boot that of a
# fresh machine (no host keys, no machine id, no apt lists) that waits for
# nothing absent under QEMU microvm.
set -eu

root=$1
overlay=$2
inroot() { chroot "$root" "$@"; }

cp -a "$overlay/." "$root/"
rm -f "$root/.gitignore"

release=$(cd "$root/lib/modules" && ls | sort -V | tail -n 1)
echo "$release" >"$root/etc/banger-kernel-release"
rm -f "$root/boot/initrd.img-$release"
if ! inroot update-initramfs -c -k "$release" >"$root/tmp/initramfs.log" 2>&1; then
	cat "$root/tmp/initramfs.log" >&2
	exit 1
fi
rm -f "$root/tmp/initramfs.log"

# Network: cloud-init writes /etc/systemd/network/10-cloud-init-*.network at
# its local stage, before systemd-networkd starts; resolved takes the DNS.
# Enabling networkd also enables systemd-network-generator, which would turn
# banger's ip= kernel argument into a .network file of its own: the seed's
# network-config is the only source of network configuration here.
inroot systemctl enable systemd-networkd.service systemd-resolved.service
inroot systemctl mask systemd-network-generator.service
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# Nothing that needs the network or a clock at boot, nothing that waits long.
inroot systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
	e2scrub_reap.service fstrim.timer
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/banger.conf" <<'EOF'
# banger: one link with a routable IPv4 address is enough (not waiting for IPv6
# router advertisements no one sends), and a seed-less boot (DHCP fallback
# with no DHCP server) must not hold the boot for two minutes.
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --ipv4 --operational-state=routable --timeout=20
EOF

# A fresh machine: cloud-init installs the seed's host keys (or generates
# some), systemd makes a machine id, the hostname comes from the seed.
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo debian >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
inroot passwd -l root >/dev/null

# No apt lists or package cache in the image ('apt-get update' in the guest).
inroot apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
