#!/usr/bin/env bats
# image_seed.bats - the reference image (make image) reads banger's NoCloud
# seed (docs/guest.md): real boots under QEMU TCG on a tap in a bridge inside a
# network namespace made for this test.
#
#   (a) seed only, nothing of the contract on the kernel command line: the
#       network, the login and the host key all come from the seed;
#   (b) seed after a work disk, the kernel command line saying otherwise and an
#       older host key on the root disk: the seed wins, the work disk (not the
#       seed) is on /mnt/work;
#   (c) no seed: everything from the kernel command line, as before.
#
# Boot-to-SSH times are printed (and kept in $BUILD/image-seed-times.txt).

setup_file() {
	BUILD=${BUILD:-build}
	TOP=$(cd "$(dirname "$BATS_TEST_FILENAME")/../.." && pwd)
	IMG=$TOP/build/image
	export BUILD TOP IMG
	SKIP_WHY=''
	if [ "$(id -u)" -ne 0 ]; then
		SKIP_WHY="needs root (network namespace, tap, bridge)"
	elif ! command -v qemu-system-x86_64 >/dev/null; then
		SKIP_WHY="qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	elif ! command -v genisoimage >/dev/null; then
		SKIP_WHY="genisoimage is not installed"
	elif [ ! -f "$IMG/vmlinux" ] || [ ! -f "$IMG/initrd.gz" ] || [ ! -f "$IMG/rootfs.ext4" ]; then
		SKIP_WHY="no reference image in $IMG (make image)"
	fi
	export SKIP_WHY
	[ -z "$SKIP_WHY" ] || return 0

	# Unique per run: the namespace name and a 10.x subnet (inside the namespace,
	# so it cannot clash with the host's routes anyway).
	SFX=$(printf '%04x%04x' $$ $((RANDOM)))
	NS=bgseed-$SFX
	NET=10.$((200 + $$ % 50)).$((RANDOM % 250 + 1))
	WORK=$BATS_FILE_TMPDIR/vm
	export SFX NS NET WORK
	mkdir -p "$WORK"
	echo "$NS" >"$BATS_FILE_TMPDIR/netns"

	ip netns add "$NS"
	ip -n "$NS" link set lo up
	ip -n "$NS" link add br0 type bridge
	ip -n "$NS" addr add "$NET.1/24" dev br0
	ip -n "$NS" link set br0 up

	ssh-keygen -q -t ed25519 -N '' -C image-seed-client -f "$WORK/client"
	KHZ=$(awk '/^bogomips/ { printf "%d", $3 * 500; exit }' /proc/cpuinfo)
	export KHZ
	: >"$TOP/$BUILD/image-seed-times.txt" 2>/dev/null || true
}

teardown_file() {
	# Whatever a failed test left: its QEMU (by the pid QEMU wrote), then the namespace.
	local f
	for f in "$BATS_FILE_TMPDIR"/vm/*.pid; do
		[ -f "$f" ] && stop_vm "$f"
	done
	if [ -f "$BATS_FILE_TMPDIR/netns" ]; then
		local ns
		ns=$(cat "$BATS_FILE_TMPDIR/netns")
		ip netns list | grep -qw "$ns" && ip netns del "$ns"
	fi
	return 0
}

setup() {
	[ -z "$SKIP_WHY" ] || skip "$SKIP_WHY"
}

teardown() {
	local f
	for f in "$WORK"/*.pid; do
		[ -f "$f" ] && stop_vm "$f"
	done
	return 0
}

# stop_vm PIDFILE - kill that QEMU (only if it is still a QEMU), wait until gone.
stop_vm() {
	local pid i
	pid=$(cat "$1" 2>/dev/null) || return 0
	if [ -n "$pid" ] && grep -q qemu-system "/proc/$pid/cmdline" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			[ -d "/proc/$pid" ] || break
			sleep 0.1
		done
	fi
	rm -f "$1"
}

# make_seed DIR ISO CMDLINE HOSTKEY - a seed as banger makes it (the contract in
# HELPERS/docs: genisoimage -volid cidata -joliet -rock).
make_seed() {
	local dir=$1 iso=$2
	mkdir -p "$dir/banger"
	printf 'instance-id: iid-banger-%s\nlocal-hostname: seeded\n' "$SFX" >"$dir/meta-data"
	printf '#cloud-config\n' >"$dir/user-data"
	printf 'version: 2\n' >"$dir/network-config"
	printf '%s\n' "$3" >"$dir/banger/cmdline"
	cp "$4" "$dir/banger/ssh_host_ed25519_key"
	cp "$4.pub" "$dir/banger/ssh_host_ed25519_key.pub"
	genisoimage -quiet -output "$iso" -volid cidata -joliet -rock "$dir"
}

# contract IP NAME - the guest-contract arguments for the test's client key.
contract() {
	printf 'ip=%s::%s.1:255.255.255.0:%s:eth0:off banger.user=root banger.sshkeys=%s' \
		"$1" "$NET" "$2" "$(base64 -w0 "$WORK/client.pub")"
}

# boot_vm NAME MAC APPEND [DRIVE...] - start QEMU (daemonized, in the namespace)
# with its own copy of the root disk and a tap on br0; extra drives follow the
# root disk in order. Sets VM_T0 (start time, s) and VM_PIDFILE.
boot_vm() {
	local name=$1 mac=$2 append=$3 i=0 d
	shift 3
	local args=()
	for d in "$@"; do
		args+=(-drive "file=$d,format=raw,if=none,readonly=$([[ $d == *.iso ]] && echo on || echo off),id=d$i"
			-device "virtio-blk-device,drive=d$i")
		i=$((i + 1))
	done
	ip -n "$NS" tuntap add dev "tap-$name" mode tap
	ip -n "$NS" link set "tap-$name" master br0
	ip -n "$NS" link set "tap-$name" up
	VM_PIDFILE=$WORK/$name.pid
	VM_T0=$(date +%s.%N)
	ip netns exec "$NS" qemu-system-x86_64 -name "image-seed-$name-$SFX" -M microvm -accel tcg \
		-cpu max -m 256 -smp 1 -nodefaults -no-user-config -display none -no-reboot \
		-serial "file:$WORK/$name.console" -kernel "$IMG/vmlinux" -initrd "$IMG/initrd.gz" \
		-append "console=ttyS0 reboot=t panic=-1 tsc_early_khz=$KHZ root=/dev/vda rw $append" \
		-drive "file=$WORK/$name.root,format=raw,if=none,id=root" \
		-device virtio-blk-device,drive=root "${args[@]}" \
		-netdev "tap,id=net0,ifname=tap-$name,script=no,downscript=no" \
		-device "virtio-net-device,netdev=net0,mac=$mac" \
		-daemonize -pidfile "$VM_PIDFILE"
}

# vm_ssh IP KNOWN_HOSTS CMD... - one login with the test's key, host key checked
# against KNOWN_HOSTS (StrictHostKeyChecking=yes) unless it is /dev/null.
vm_ssh() {
	local ip=$1 known=$2
	shift 2
	local strict=yes
	[ "$known" = /dev/null ] && strict=no
	ip netns exec "$NS" ssh -q -i "$WORK/client" -o BatchMode=yes -o ConnectTimeout=3 \
		-o StrictHostKeyChecking=$strict -o UserKnownHostsFile="$known" \
		-o HostKeyAlgorithms=ssh-ed25519 -o LogLevel=ERROR "root@$ip" "$@"
}

# wait_ssh IP KNOWN_HOSTS NAME - wait (deadline 180 s: TCG on a busy 2-core
# machine) for a login; prints the boot-to-SSH time.
wait_ssh() {
	local deadline=$((SECONDS + 180)) t g
	while ((SECONDS < deadline)); do
		if [ ! -d "/proc/$(cat "$VM_PIDFILE" 2>/dev/null)" ]; then
			echo "QEMU for $3 exited; console:" >&2
			cat "$WORK/$3.console" >&2
			return 1
		fi
		if [ "$(vm_ssh "$1" "$2" echo ok 2>/dev/null)" = ok ]; then
			t=$(echo "$(date +%s.%N) - $VM_T0" | bc)
			# When dropbear started, in guest uptime (field 22 of its stat, in ticks).
			g=$(vm_ssh "$1" "$2" 'awk "{ printf \"%.2f\", \$22 / 100 }" /proc/$(cat /run/dropbear.pid)/stat')
			printf '# %s: boot to SSH %.1f s (dropbear started at %s s of guest uptime)\n' \
				"$3" "$t" "$g" >&3
			printf '%s %.1f %s\n' "$3" "$t" "$g" >>"$TOP/$BUILD/image-seed-times.txt" 2>/dev/null || true
			return 0
		fi
		sleep 0.3
	done
	echo "no SSH login on $1 within 180 s; console of $3:" >&2
	cat "$WORK/$3.console" >&2
	return 1
}

# served_key IP - the ed25519 host key the guest serves ("ssh-ed25519 AAAA...").
served_key() {
	ip netns exec "$NS" ssh-keyscan -T 5 -t ed25519 "$1" 2>/dev/null | awk '{ print $2, $3 }'
}

@test "(a) seed only: network, login and host key come from the seed" {
	local ip=$NET.10
	cp --sparse=always "$IMG/rootfs.ext4" "$WORK/a.root"
	ssh-keygen -q -t ed25519 -N '' -C seeded-a -f "$WORK/hostkey-a"
	make_seed "$WORK/seed-a" "$WORK/a.iso" "$(contract "$ip" seeded-a)" "$WORK/hostkey-a"
	echo "$ip $(cut -d' ' -f1,2 "$WORK/hostkey-a.pub")" >"$WORK/known-a"

	boot_vm a 52:54:00:5e:ed:0a "" "$WORK/a.iso"
	wait_ssh "$ip" "$WORK/known-a" a

	# The kernel command line had nothing of the contract.
	run vm_ssh "$ip" "$WORK/known-a" cat /proc/cmdline
	[ "$status" -eq 0 ]
	[[ "$output" != *"ip="* && "$output" != *banger.* ]]
	run vm_ssh "$ip" "$WORK/known-a" hostname
	[ "$output" = seeded-a ]
	# The served key is exactly the seeded one, also on the console.
	[ "$(served_key "$ip")" = "$(cut -d' ' -f1,2 "$WORK/hostkey-a.pub")" ]
	grep -qF "$(cut -d" " -f1,2 "$WORK/hostkey-a.pub")" "$WORK/a.console"
	# The seed was unmounted again, its temporary directory removed, nothing on /mnt/work.
	run vm_ssh "$ip" "$WORK/known-a" 'cat /proc/mounts; echo left: /run/banger-seed.*'
	[ "$status" -eq 0 ]
	[[ "$output" != *iso9660* && "$output" != *" /mnt/work "* ]]
	[[ "$output" == *"left: /run/banger-seed.*"* ]]
	run vm_ssh "$ip" "$WORK/known-a" stat -c %a /etc/dropbear/dropbear_ed25519_host_key
	[ "$output" = 600 ]
}

@test "(b) seed and work disk: the seed wins, the work disk is on /mnt/work" {
	local ip=$NET.11 kip=$NET.99
	cp --sparse=always "$IMG/rootfs.ext4" "$WORK/b.root"
	# An older host key on the root disk, as left by an earlier boot: replaced.
	ssh-keygen -q -t ed25519 -N '' -C old -f "$WORK/oldkey"
	LD_LIBRARY_PATH=$IMG/unpack/userland/lib/x86_64-linux-gnu:$IMG/unpack/userland/usr/lib/x86_64-linux-gnu \
		"$IMG/unpack/userland/usr/bin/dropbearconvert" openssh dropbear "$WORK/oldkey" \
		"$WORK/oldkey.db" >/dev/null 2>&1
	debugfs -w -R "write $WORK/oldkey.db /etc/dropbear/dropbear_ed25519_host_key" \
		"$WORK/b.root" >/dev/null 2>&1
	run debugfs -R "stat /etc/dropbear/dropbear_ed25519_host_key" "$WORK/b.root"
	[[ "$output" == *"Size: "* ]]

	truncate -s 32M "$WORK/b.work"
	mke2fs -q -t ext4 -L work-b "$WORK/b.work"
	ssh-keygen -q -t ed25519 -N '' -C seeded-b -f "$WORK/hostkey-b"
	make_seed "$WORK/seed-b" "$WORK/b.iso" "$(contract "$ip" seeded-b)" "$WORK/hostkey-b"
	echo "$ip $(cut -d' ' -f1,2 "$WORK/hostkey-b.pub")" >"$WORK/known-b"

	# The kernel command line says another address and name: the seed's win.
	boot_vm b 52:54:00:5e:ed:0b "$(contract "$kip" kernel-b)" "$WORK/b.work" "$WORK/b.iso"
	wait_ssh "$ip" "$WORK/known-b" b

	run vm_ssh "$ip" "$WORK/known-b" 'hostname; ip -4 addr show dev eth0; cat /proc/mounts'
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == seeded-b ]]
	[[ "$output" == *"inet $ip/24"* && "$output" != *"$kip"* ]]
	[[ "$output" == *"/dev/vdb /mnt/work ext4 rw"* ]]
	[[ "$output" != *iso9660* && "$output" != *"/dev/vdc"* ]]
	[ "$(served_key "$ip")" = "$(cut -d' ' -f1,2 "$WORK/hostkey-b.pub")" ]
}

@test "(c) no seed: everything from the kernel command line, as before" {
	local ip=$NET.12
	cp --sparse=always "$IMG/rootfs.ext4" "$WORK/c.root"
	boot_vm c 52:54:00:5e:ed:0c "$(contract "$ip" plain-c)"
	wait_ssh "$ip" /dev/null c

	run vm_ssh "$ip" /dev/null 'hostname; cat /proc/mounts; lsmod'
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = plain-c ]
	[[ "$output" != *" /mnt/work "* && "$output" != *isofs* ]]
	# A host key was generated on this boot and is the one on the console.
	local served
	served=$(served_key "$ip")
	[[ "$served" == ssh-ed25519\ * ]]
	grep -qF "$served" "$WORK/c.console"
	grep -q "generated SSH host key" "$WORK/c.console"
}

@test "no leftovers: QEMUs, taps, bridge and namespace are gone" {
	local f pid
	for f in "$WORK"/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		stop_vm "$f"
		[ ! -d "/proc/$pid" ]
	done
	ip netns del "$NS"
	! ip netns list | grep -qw "$NS"
	! pgrep -f "image-seed-.*-$SFX" >/dev/null
	! ip link show | grep -q "tap-[abc]@\|tap-[abc]:"
}
