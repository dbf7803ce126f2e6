#!/usr/bin/env bats
# image_debian.bats - boot the Debian guest (make image-debian) under QEMU
# microvm (TCG) with a NoCloud seed made here, as banger attaches it, and
# check from the host that cloud-init applied it: SSH as the seeded user on
# the seeded static address, cloud-init done, the written file and the
# command's effect, the seeded ed25519 host key (and only it), the root
# filesystem grown to its disk. Once without banger's kernel arguments
# ("cloudinit" mode) and once with them ("auto" mode: ip= and banger.*),
# whose ip= names another address that must not be used.
#
# Each test runs in its own network namespace (tap with the gateway address,
# QEMU inside it), removed afterwards with everything else it made; only the
# QEMU it started is killed, by pid. Timings go to the TAP output ('# ...').

SUBNET=10.213.77
GUEST_IP=$SUBNET.2
GW_IP=$SUBNET.1
SSH_DEADLINE=${DEBIAN_SSH_DEADLINE:-480}
CLOUDINIT_DEADLINE=${DEBIAN_CLOUDINIT_DEADLINE:-600}

setup() {
	TOP=$(cd "$(dirname "$BATS_TEST_FILENAME")/../.." && pwd)
	IMG=${IMAGE_DEBIAN_DIR:-$TOP/build/image-debian}
	QEMU_PID=
	NS=
	if [ "$(id -u)" -ne 0 ]; then
		skip "needs root (network namespace, tap device)"
	fi
	for f in vmlinux initrd.gz rootfs.ext4; do
		[ -s "$IMG/$f" ] || skip "$IMG/$f missing: run 'make image-debian' (as root)"
	done
	for c in qemu-system-x86_64 genisoimage ssh ssh-keygen ssh-keyscan ip; do
		command -v "$c" >/dev/null || skip "$c is not installed (make deps)"
	done
	TMP=$(mktemp -d /tmp/bg-debian.XXXXXX)
	# Unique per run and test: netns and tap (a tap name has at most 15 bytes).
	NS=bgdeb-$$-$BATS_TEST_NUMBER
	TAP=bgdt$$$BATS_TEST_NUMBER
	MAC=52:54:00:$(printf '%02x:%02x:%02x' $(($$ % 256)) $(($$ / 256 % 256)) "$BATS_TEST_NUMBER")
}

teardown() {
	if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill "$QEMU_PID" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$QEMU_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
	fi
	if [ -n "$NS" ] && ip netns list | grep -qw "$NS"; then
		ip -n "$NS" link del "$TAP" 2>/dev/null || true
		ip netns del "$NS"
	fi
	if [ -n "${TMP:-}" ] && [ -d "$TMP" ]; then
		if [ -n "${BATS_TEST_COMPLETED:-}" ]; then
			rm -rf "$TMP"
		else
			echo "# kept $TMP (console.log)" >&3
			tail -n 30 "$TMP/console.log" 2>/dev/null | sed 's/^/# console: /' >&3 || true
			rm -f "$TMP/root.ext4"
		fi
	fi
}

now() { date +%s.%N; }
since() { printf '%.1f' "$(echo "$(now) - $1" | bc)"; }

# The seed as the contract says (HELPERS-COMMON.md; docs): cloud-init's three
# files, and banger/ for guests without cloud-init.
make_seed() {
	local seed=$TMP/seed
	mkdir -p "$seed/banger"
	ssh-keygen -q -t ed25519 -N '' -C tester -f "$TMP/id"
	ssh-keygen -q -t ed25519 -N '' -C host -f "$TMP/hostkey"
	cat >"$seed/meta-data" <<-EOF
		instance-id: iid-banger-0d0e0b01
		local-hostname: deb-test
	EOF
	cat >"$seed/network-config" <<-EOF
		version: 2
		ethernets:
		  eth0:
		    match:
		      macaddress: "$MAC"
		    set-name: eth0
		    addresses: [ $GUEST_IP/24 ]
		    gateway4: $GW_IP
		    nameservers:
		      addresses: [ $GW_IP ]
	EOF
	{
		echo "#cloud-config"
		echo "users:"
		echo "  - name: tester"
		echo "    shell: /bin/bash"
		echo "    sudo: ALL=(ALL) NOPASSWD:ALL"
		echo "    ssh_authorized_keys:"
		echo "      - $(cat "$TMP/id.pub")"
		echo "ssh_deletekeys: true"
		echo "ssh_genkeytypes: []"
		echo "ssh_keys:"
		echo "  ed25519_private: |"
		sed 's/^/    /' "$TMP/hostkey"
		echo "  ed25519_public: $(cat "$TMP/hostkey.pub")"
		echo "write_files:"
		echo "  - path: /etc/banger-seeded"
		echo "    content: \"hello from the seed\\n\""
		echo "runcmd:"
		echo "  - [ sh, -c, 'echo ran-\$(id -u) > /var/tmp/banger-runcmd' ]"
	} >"$seed/user-data"
	echo "ip=$GUEST_IP::$GW_IP:255.255.255.0:deb-test:eth0:off:$GW_IP banger.user=tester" \
		"banger.sshkeys=$(base64 -w0 "$TMP/id.pub")" >"$seed/banger/cmdline"
	cp "$TMP/hostkey" "$seed/banger/ssh_host_ed25519_key"
	cp "$TMP/hostkey.pub" "$seed/banger/ssh_host_ed25519_key.pub"
	genisoimage -quiet -output "$TMP/seed.iso" -volid cidata -joliet -rock "$seed"
	echo "$GUEST_IP $(cut -d' ' -f1,2 "$TMP/hostkey.pub")" >"$TMP/known_hosts"
}

# boot_guest EXTRA_ARGS: the disk is a copy of the image grown by 512 MiB.
boot_guest() {
	make_seed
	cp --sparse=always "$IMG/rootfs.ext4" "$TMP/root.ext4"
	IMAGE_BYTES=$(stat -c %s "$TMP/root.ext4")
	truncate -s +512M "$TMP/root.ext4"
	DISK_BYTES=$(stat -c %s "$TMP/root.ext4")

	ip netns add "$NS"
	ip -n "$NS" link set lo up
	ip -n "$NS" tuntap add dev "$TAP" mode tap
	ip -n "$NS" addr add "$GW_IP/24" dev "$TAP"
	ip -n "$NS" link set "$TAP" up

	local khz
	khz=$(awk '/^bogomips/ { printf "%d", $3 * 500; exit }' /proc/cpuinfo)
	local append="console=ttyS0 reboot=t panic=-1 tsc_early_khz=$khz root=/dev/vda rw $1"
	T0=$(now)
	ip netns exec "$NS" qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 1024 -smp 2 \
		-nodefaults -no-user-config -display none -no-reboot \
		-serial "file:$TMP/console.log" \
		-kernel "$IMG/vmlinux" -initrd "$IMG/initrd.gz" -append "$append" \
		-drive "id=root,file=$TMP/root.ext4,format=raw,if=none" \
		-device virtio-blk-device,drive=root \
		-drive "file=$TMP/seed.iso,format=raw,if=none,readonly=on,id=seed" \
		-device virtio-blk-device,drive=seed \
		-netdev "tap,id=net0,ifname=$TAP,script=no,downscript=no" \
		-device "virtio-net-device,netdev=net0,mac=$MAC" \
		-device i8042 \
		</dev/null >"$TMP/qemu.log" 2>&1 3>&- &
	QEMU_PID=$!
}

gssh() {
	timeout "${GSSH_TIMEOUT:-60}" ip netns exec "$NS" ssh -i "$TMP/id" -o BatchMode=yes -o ConnectTimeout=5 \
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$TMP/known_hosts" \
		-o HostKeyAlgorithms=ssh-ed25519 "tester@$GUEST_IP" "$@"
}

# Until SSH answers with the seeded host key (known_hosts holds only it) and
# the seeded user's key, or the deadline; fails at once if QEMU exits.
wait_ssh() {
	local end=$(($(date +%s) + SSH_DEADLINE))
	while [ "$(date +%s)" -lt "$end" ]; do
		if ! kill -0 "$QEMU_PID" 2>/dev/null; then
			echo "QEMU exited before SSH answered" >&2
			cat "$TMP/qemu.log" >&2
			return 1
		fi
		if GSSH_TIMEOUT=30 gssh true 2>"$TMP/ssh.err"; then
			return 0
		fi
		sleep 1
	done
	echo "SSH did not answer within ${SSH_DEADLINE}s: $(cat "$TMP/ssh.err")" >&2
	return 1
}

check_guest() {
	local mode=$1
	wait_ssh
	local t_ssh
	t_ssh=$(since "$T0")

	GSSH_TIMEOUT=$CLOUDINIT_DEADLINE run gssh cloud-init status --wait
	echo "cloud-init status: $output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"status: done"* ]]
	local t_ci
	t_ci=$(since "$T0")
	echo "# debian ($mode): SSH after ${t_ssh}s, cloud-init done after ${t_ci}s" >&3

	# user-data: write_files and runcmd (as root).
	run gssh cat /etc/banger-seeded
	[ "$status" -eq 0 ]
	[ "$output" = "hello from the seed" ]
	run gssh cat /var/tmp/banger-runcmd
	[ "$status" -eq 0 ]
	[ "$output" = "ran-0" ]
	run gssh sudo -n id -u
	[ "$output" = "0" ]

	# meta-data: the hostname; network-config: rendered for systemd-networkd.
	run gssh hostname
	[ "$output" = "deb-test" ]
	run gssh ip -4 -o addr show dev eth0
	echo "eth0: $output"
	[[ "$output" == *"inet $GUEST_IP/24"* ]]
	[[ "$output" != *"$SUBNET.3"* ]]
	run gssh ip -4 route show default
	[[ "$output" == *"via $GW_IP dev eth0"* ]]
	run gssh ls /etc/systemd/network/
	echo "networkd: $output"
	[[ "$output" == *"10-cloud-init-eth0.network"* ]]

	# Host key: the served ed25519 key is the seeded one, and no other is left.
	run ip netns exec "$NS" ssh-keyscan -T 10 -t ed25519 "$GUEST_IP"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | awk '$2 == "ssh-ed25519" { print $3 }')" = \
		"$(cut -d' ' -f2 "$TMP/hostkey.pub")" ]
	run gssh 'ls /etc/ssh/ssh_host_*'
	echo "host keys: $output"
	[ "$(echo "$output" | tr '\n' ' ')" = \
		"/etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub " ]

	# The root filesystem is /dev/vda itself, grown to the (grown) disk.
	run gssh findmnt -n -o SOURCE,FSTYPE /
	[ "$output" = "/dev/vda ext4" ]
	run gssh sudo -n blockdev --getsize64 /dev/vda
	[ "$output" = "$DISK_BYTES" ]
	run gssh df -B1 --output=size /
	local fs_bytes
	fs_bytes=$(echo "$output" | tail -n 1 | tr -d ' ')
	echo "# debian ($mode): image ${IMAGE_BYTES} B, disk ${DISK_BYTES} B, root fs ${fs_bytes} B" >&3
	[ "$fs_bytes" -gt "$IMAGE_BYTES" ]

	# Where the boot time goes (information for the log, not a check).
	run gssh 'systemd-analyze; systemd-analyze blame | head -n 6'
	echo "$output" | sed "s/^/# debian ($mode): /" >&3

	# Nothing failed on the way.
	run gssh systemctl --failed --no-legend --plain
	echo "failed units: $output"
	[ -z "$output" ]
}

@test "debian image: cloud-init applies the NoCloud seed (no banger kernel arguments)" {
	boot_guest ""
	check_guest cloudinit
}

@test "debian image: the seed wins over banger's ip= and banger.* kernel arguments" {
	boot_guest "ip=$SUBNET.3::$GW_IP:255.255.255.0:deb-auto:eth0:off banger.user=root banger.sshkeys=$(echo x | base64)"
	check_guest auto
}
