#!/usr/bin/env bats
# End-to-end SSH trust on first use with a real guest that reads no seed
# (guest.config: cmdline, so the guest makes its own host key; guests that read
# the seed are pinned before they boot: guests.bats): banger pins the guest's
# host key when it first answers; after the guest comes back with another key,
# both 'banger ssh' and OpenSSH (through the block 'banger ssh-config' writes)
# refuse it; deleting the VM removes the pins so a new VM can be pinned afresh.

load helpers

setup() {
	e2e_setup
}

teardown() {
	e2e_teardown
}

@test "a changed guest host key is refused by banger ssh and by OpenSSH; delete clears the pins" {
	start_daemon
	vm_yaml mitm 'guest: {config: cmdline}' >"$BANGER_SPEC_DIR/mitm.yaml"
	wait_phase mitm Running
	ip=$(vm_field mitm ip)
	[ ! -e "$BANGER_STATE_DIR/vms/$(vm_id mitm)/seed.iso" ] # no seed, no key made by banger
	kh=$BANGER_STATE_DIR/ssh/known_hosts
	bg ssh-config --print >"$WORK/ssh_config"

	# Pinned on first use (by bangerd's readiness probe) under the IP and the name.
	ssh-keygen -F "$ip" -f "$kh" >/dev/null
	ssh-keygen -F mitm.vm -f "$kh" >/dev/null
	run bg ssh mitm -- echo pinned
	assert_success
	assert_output "pinned"
	run in_ns ssh -F "$WORK/ssh_config" -o BatchMode=yes -o ConnectTimeout=20 mitm.vm echo openssh
	assert_success
	assert_output "openssh"

	# The guest loses its host key; its next boot makes a new one.
	# (One command: without its key file dropbear serves no further connection.)
	bg ssh mitm -- sh -c 'rm -f /etc/dropbear/dropbear_ed25519_host_key && sync'
	pid=$(vm_pid mitm)
	sed -i 's/memoryMiB: 256/memoryMiB: 272/' "$BANGER_SPEC_DIR/mitm.yaml"
	wait_for "$BOOT_TIMEOUT" guest_key_changed mitm "$pid" || fail "no host key change seen"

	run bg ssh mitm -- echo should-not-run
	assert_failure
	assert_output --partial "possible MITM"
	assert_output --partial "SHA256:"
	refute_output --partial "should-not-run"
	run in_ns ssh -F "$WORK/ssh_config" -o BatchMode=yes -o ConnectTimeout=20 mitm.vm echo should-not-run
	assert_failure
	assert_output --partial "Host key verification failed"
	refute_output --partial "should-not-run"
	# bangerd saw it too: the VM is not Running and says why.
	[ "$(vm_field mitm phase)" = "Starting" ]
	vm_field mitm lastError | grep -q "possible MITM"

	run bg delete mitm --wait --timeout 2m
	assert_success
	run ssh-keygen -F "$ip" -f "$kh"
	assert_failure
	run ssh-keygen -F mitm.vm -f "$kh"
	assert_failure

	# A new VM with that name is pinned afresh.
	vm_yaml mitm 'guest: {config: cmdline}' >"$BANGER_SPEC_DIR/mitm.yaml"
	wait_phase mitm Running
	run bg ssh mitm -- echo fresh
	assert_success
	assert_output "fresh"
}

# The VM was restarted (new VMM) and bangerd's probe hit the changed key.
guest_key_changed() {
	local p
	p=$(vm_pid "$1")
	[ "$p" != "null" ] && [ "$p" != "$2" ] && vm_field "$1" lastError | grep -q "possible MITM"
}
