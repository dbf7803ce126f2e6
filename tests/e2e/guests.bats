#!/usr/bin/env bats
# End-to-end: guests that read banger's NoCloud seed (the reference image here;
# the Debian cloud image in debian.bats). banger makes each VM's SSH host key
# and pins it before the VMM starts, so the first connection is verified like
# every later one; a guest that serves another key is refused as a possible
# MITM and never becomes Running; a larger rootfs.sizeMiB grows the guest's
# root filesystem.

load helpers

setup() {
	e2e_setup
	make_qemu_wrapper
}

teardown() {
	e2e_teardown
}

# ref_yaml NAME [extra spec lines...]: the reference image with a 512 MiB root disk.
ref_yaml() {
	local name=$1
	shift
	cat <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: $name}
spec:
  memoryMiB: 256
  kernel: {path: $IMAGE/vmlinux, initrd: $IMAGE/initrd.gz}
  rootfs: {image: $IMAGE/rootfs.ext4, sizeMiB: 512}
YAML
	local line
	for line in "$@"; do
		printf '  %s\n' "$line"
	done
}

# The public key banger made for a VM: "ssh-ed25519 BASE64".
made_key() {
	awk '{ print $1, $2 }' "$BANGER_STATE_DIR/vms/$(vm_id "$1")/ssh_host_ed25519_key.pub"
}

# What the VMM's start saw in known_hosts for the VM's address: "ssh-ed25519 BASE64".
pin_at_vmm_start() {
	local pid=$1 ip=$2
	[ -f "$WORK/kh-at-start.$pid" ] || fail "no known_hosts snapshot for VMM pid $pid"
	awk -v ip="$ip" '{ n = split($1, h, ","); for (i = 1; i <= n; i++) if (h[i] == ip) print $2, $3 }' \
		"$WORK/kh-at-start.$pid"
}

@test "reference image: host key pinned before the VMM starts, verified from the first connection; root fs grown" {
	start_daemon --qemu "$QEMU_WRAP"
	ref_yaml seeded >"$BANGER_SPEC_DIR/seeded.yaml"
	wait_phase seeded Running
	ip=$(vm_field seeded ip)
	pid=$(vm_pid seeded)
	key=$(made_key seeded)
	kh=$BANGER_STATE_DIR/ssh/known_hosts

	# The pin was in known_hosts when the VMM process started, for the IP and the name.
	[ "$(pin_at_vmm_start "$pid" "$ip")" = "$key" ] || fail "pin at VMM start: '$(pin_at_vmm_start "$pid" "$ip")', want '$key'"
	grep -F "$ip,seeded.vm $key" "$kh"
	# Exactly one line names the VM: the probe found it OK and pinned nothing more.
	[ "$(ssh-keygen -F "$ip" -f "$kh" | grep -vc '^#')" = "1" ]

	# The guest serves that key (OpenSSH's view, independent of banger).
	served=$(in_ns ssh-keyscan -T 10 -t ed25519 "$ip" 2>/dev/null | awk '{ print $2, $3 }')
	[ "$served" = "$key" ] || fail "served '$served', pinned '$key'"

	# banger ssh connects with it, and the root filesystem fills the 512 MiB disk.
	run bg ssh seeded -- df -k /
	assert_success
	size_kb=$(awk 'NR == 2 { print $2 }' <<<"$output")
	# ext4 keeps ~7% for its own metadata: 128 MiB before growing, ~474 MiB after.
	[ "$size_kb" -gt $((440 * 1024)) ] || fail "root fs is ${size_kb} KiB, want ~512 MiB"
	[ "$size_kb" -le $((512 * 1024)) ]

	run bg describe seeded
	assert_success
	assert_output --partial "pinned before the first boot"
	assert_output --partial "HostKeyPinned"

	# The seed's instance-id stays across a restart (new VMM, same VM id).
	iid=$(isoinfo -i "$BANGER_STATE_DIR/vms/$(vm_id seeded)/seed.iso" -R -x /meta-data | grep instance-id)
	sed -i 's/memoryMiB: 256/memoryMiB: 272/' "$BANGER_SPEC_DIR/seeded.yaml"
	wait_for "$BOOT_TIMEOUT" restarted seeded "$pid" || fail "no restart"
	wait_phase seeded Running
	[ "$(made_key seeded)" = "$key" ]
	[ "$(isoinfo -i "$BANGER_STATE_DIR/vms/$(vm_id seeded)/seed.iso" -R -x /meta-data | grep instance-id)" = "$iid" ]
	run bg ssh seeded -- echo again
	assert_success
	assert_output "again"
}

restarted() {
	local p
	p=$(vm_pid "$1")
	[ "$p" != "null" ] && [ "$p" != "$2" ]
}

@test "a guest that serves another host key than the one pinned is refused from the first connection" {
	start_daemon --qemu "$QEMU_WRAP"
	# Created stopped: the key is made, pinned and put on the seed; nothing boots.
	ref_yaml evil 'state: stopped' >"$BANGER_SPEC_DIR/evil.yaml"
	wait_phase evil Stopped 60
	dir=$BANGER_STATE_DIR/vms/$(vm_id evil)
	kh=$BANGER_STATE_DIR/ssh/known_hosts
	key=$(made_key evil)
	grep -qF "$key" "$kh"
	kh_before=$(sha256sum <"$kh")

	# Someone swaps the key on the seed (the guest will serve this one instead).
	mkdir -p "$WORK/seed/banger"
	for f in meta-data user-data network-config banger/cmdline; do
		isoinfo -i "$dir/seed.iso" -R -x "/$f" >"$WORK/seed/$f"
	done
	ssh-keygen -q -t ed25519 -N '' -C attacker -f "$WORK/seed/banger/ssh_host_ed25519_key"
	genisoimage -quiet -output "$dir/seed.iso" -volid cidata -joliet -rock "$WORK/seed"
	evil=$(awk '{ print $1, $2 }' "$WORK/seed/banger/ssh_host_ed25519_key.pub")

	sed -i '/state: stopped/d' "$BANGER_SPEC_DIR/evil.yaml"
	wait_for "$BOOT_TIMEOUT" mitm_seen evil || fail "bangerd did not refuse the key: $(vm_json evil | jq -c '{phase,lastError}')"
	ip=$(vm_field evil ip)
	# The guest really serves the attacker's key...
	served=$(in_ns ssh-keyscan -T 10 -t ed25519 "$ip" 2>/dev/null | awk '{ print $2, $3 }')
	[ "$served" = "$evil" ]
	# ...and banger never trusted it: not Running, the pin unchanged, ssh refused.
	[ "$(vm_field evil phase)" = "Starting" ]
	[ "$(sha256sum <"$kh")" = "$kh_before" ]
	run bg ssh evil -- echo should-not-run
	assert_failure
	assert_output --partial "possible MITM"
	refute_output --partial "should-not-run"
	run bg describe evil
	assert_output --partial "HostKeyChanged"
}

mitm_seen() {
	vm_field "$1" lastError | grep -q "possible MITM"
}

@test "a qcow2 base image boots from a raw cache shared by VMs; gc removes it once unused" {
	qemu-img convert -f raw -O qcow2 "$IMAGE/rootfs.ext4" "$WORK/base.qcow2"
	start_daemon
	for n in q1 q2; do
		cat >"$BANGER_SPEC_DIR/$n.yaml" <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: $n}
spec:
  memoryMiB: 256
  kernel: {path: $IMAGE/vmlinux, initrd: $IMAGE/initrd.gz}
  rootfs: {image: $WORK/base.qcow2}
YAML
	done
	wait_phase q1 Running
	wait_phase q2 Running
	run bg ssh q1 -- cat /etc/hostname
	assert_success
	assert_output "q1"
	# One cache for both VMs, the raw bytes of the image.
	caches=("$BANGER_STATE_DIR"/images/*.raw)
	[ "${#caches[@]}" = "1" ] || fail "caches: ${caches[*]}"
	cmp "${caches[0]}" "$IMAGE/rootfs.ext4"
	for n in q1 q2; do
		[ "$(cat "$BANGER_STATE_DIR/vms/$(vm_id $n)/root.base")" = "${caches[0]}" ]
	done
	# In use: gc leaves it.
	run bg gc --dry-run
	assert_success
	refute_output --partial "image-cache"
	# Both VMs gone: gc removes it (and only it).
	rm "$BANGER_SPEC_DIR"/q1.yaml "$BANGER_SPEC_DIR"/q2.yaml
	wait_for 60 no_vms || fail "VMs not deleted"
	run bg gc
	assert_success
	assert_output --partial "image-cache ${caches[0]}"
	[ ! -e "${caches[0]}" ]
}
