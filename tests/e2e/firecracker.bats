#!/usr/bin/env bats
# End-to-end with the Firecracker stand-in as the VMM (as the VM's own uid, and
# as root with --vmm-uids off): the stand-in checks every request against
# Firecracker's own API definition and stays alive like a running VM, so the
# whole daemon path runs without Firecracker or KVM.

load helpers

setup() {
	e2e_setup
	# The stand-in runs as the VM's unprivileged VMM uid: it must reach its log.
	export FC_STANDIN_LOG=$WORK/firecracker-requests.jsonl
	install -m 0666 /dev/null "$FC_STANDIN_LOG"
	chmod 0711 "$WORK"
}

teardown() {
	e2e_teardown
}

fc_yaml() {
	vm_yaml "$@" "vmm: firecracker"
}

@test "firecracker (stand-in): create, stop, start, delete; every request conforms" {
	start_daemon --vmm firecracker --firecracker "$STANDIN" --skip-kvm-check
	fc_yaml fc "workDisk: {sizeMiB: 32}" >"$BANGER_SPEC_DIR/fc.yaml"
	# No guest behind the stand-in, so SSH never answers: the VM stays Starting.
	wait_phase fc Starting 60
	[ "$(vm_field fc vmm)" = "firecracker" ]
	pid=$(vm_pid fc)
	kill -0 "$pid"
	id=$(vm_id fc)
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--api-sock $BANGER_STATE_DIR/vms/$id/fc/api.sock"

	# Every request was judged by Firecracker's swagger definition and accepted.
	[ -s "$FC_STANDIN_LOG" ]
	[ "$(jq -s '[.[] | select(.verdict != "ok")] | length' "$FC_STANDIN_LOG")" = "0" ]
	for p in /machine-config /boot-source /drives/rootfs /drives/work /network-interfaces/eth0 /vsock /actions; do
		jq -e -s --arg p "$p" 'any(.[]; .path == $p and .method == "PUT")' "$FC_STANDIN_LOG" >/dev/null
	done
	jq -e -s 'any(.[]; .path == "/actions" and .body.action_type == "InstanceStart")' "$FC_STANDIN_LOG" >/dev/null

	# Stop: SendCtrlAltDel ends the stand-in like a guest reboot ends Firecracker.
	sed -i 's/^spec:$/spec:\n  state: stopped/' "$BANGER_SPEC_DIR/fc.yaml"
	wait_phase fc Stopped 60
	! kill -0 "$pid" 2>/dev/null
	jq -e -s 'any(.[]; .path == "/actions" and .body.action_type == "SendCtrlAltDel")' "$FC_STANDIN_LOG" >/dev/null

	# Start again, then delete.
	sed -i '/^  state: stopped$/d' "$BANGER_SPEC_DIR/fc.yaml"
	wait_phase fc Starting 60
	pid2=$(vm_pid fc)
	[ "$pid2" != "$pid" ]
	run bg delete fc --wait --timeout 60s
	assert_success
	! kill -0 "$pid2" 2>/dev/null
	[ ! -e "$BANGER_STATE_DIR/vms/$id" ]
	! in_ns ip link show "bg$id" 2>/dev/null
	[ "$(jq -s '[.[] | select(.verdict != "ok")] | length' "$FC_STANDIN_LOG")" = "0" ]
}

@test "firecracker (stand-in) with --vmm-uids off: runs as root, unconfined, as before" {
	start_daemon --vmm firecracker --firecracker "$STANDIN" --skip-kvm-check --vmm-uids off
	fc_yaml fc "workDisk: {sizeMiB: 32}" >"$BANGER_SPEC_DIR/fc.yaml"
	wait_phase fc Starting 60
	pid=$(vm_pid fc)
	id=$(vm_id fc)
	[ "$(awk '$1 == "Uid:" { print $2 }' "/proc/$pid/status")" = 0 ]
	[ "$(awk '$1 == "Seccomp:" { print $2 }' "/proc/$pid/status")" = 0 ]
	[ "$(stat -c '%u %g %a' "$BANGER_STATE_DIR/vms/$id")" = "0 0 700" ]
	jq -e -s 'any(.[]; .path == "/actions" and .body.action_type == "InstanceStart" and .status == 204)' "$FC_STANDIN_LOG" >/dev/null
	[ "$(jq -s '[.[] | select(.verdict != "ok")] | length' "$FC_STANDIN_LOG")" = "0" ]
	run bg delete fc --wait --timeout 60s
	assert_success
	! kill -0 "$pid" 2>/dev/null
	[ ! -e "$BANGER_STATE_DIR/vms/$id" ]
}
