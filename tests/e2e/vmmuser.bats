#!/usr/bin/env bats
# VMMs without root: rediscovery adopts only a process run by the VM's VMM
# uid (or root) executing the configured binary; QEMU runs as a per-VM
# unprivileged uid, with no_new_privs, seccomp and its own namespaces.

load helpers

setup() {
	e2e_setup
	DECOY=
}

teardown() {
	[ -z "$DECOY" ] || kill -KILL "$DECOY" 2>/dev/null || true
	e2e_teardown
}

FC_ARGS=(--vmm firecracker --firecracker "$BATS_TEST_DIRNAME/../firecracker/firecracker-standin" --skip-kvm-check)

# status_field PID FIELD: a field of /proc/PID/status ("Uid" -> its first value).
status_field() {
	awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"
}

@test "a process run as nobody naming a VM's socket is not adopted; the real VMM starts" {
	start_daemon "${FC_ARGS[@]}"
	vm_yaml spoofed "vmm: firecracker" >"$BANGER_SPEC_DIR/spoofed.yaml"
	wait_phase spoofed Starting 60
	id=$(vm_id spoofed)
	sock=$BANGER_STATE_DIR/vms/$id/api.sock
	old=$(vm_pid spoofed)
	# The daemon goes away, and so does the VMM and its record: the next daemon
	# must find the VMM again from /proc.
	stop_daemon TERM
	kill -KILL "$old"
	wait_for 10 eval "! kill -0 $old 2>/dev/null"
	rm -f "$BANGER_STATE_DIR/vms/$id/handles.json"
	# A local user names the socket in a command line, as the VMM would.
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		/usr/bin/python3 -c 'import time; time.sleep(600)' --api-sock "$sock" &
	DECOY=$!
	wait_for 10 eval "tr '\\0' ' ' </proc/$DECOY/cmdline | grep -qF -- '--api-sock $sock'"
	[ "$(status_field "$DECOY" Uid)" = "65534" ]

	start_daemon "${FC_ARGS[@]}"
	# The decoy is never the VM's VMM; a real one is started.
	wait_for 60 eval "p=\$(vm_pid spoofed); [ \"\$p\" != null ] && [ \"\$p\" != 0 ] && [ \"\$p\" != $DECOY ]" ||
		fail "no new VMM; pid is $(vm_pid spoofed), decoy $DECOY"
	new=$(vm_pid spoofed)
	[ "$new" != "$DECOY" ]
	[ "$(status_field "$new" Uid)" != "65534" ]
	grep -qF -- "$sock" <(tr '\0' ' ' <"/proc/$new/cmdline")
	kill -0 "$DECOY" # left alone, never signalled
	wait_phase spoofed Starting 60
	run jq -r .pid "$BANGER_STATE_DIR/vms/$id/handles.json"
	[ "$output" = "$new" ]
}
