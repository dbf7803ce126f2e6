#!/usr/bin/env bats
# End-to-end: the real bangerd and banger, real guests from 'make image'
# booted through the QEMU driver (TCG here), each test in its own network
# namespace, subnet, bridge, spec dir and state dir.

load helpers

setup() {
	e2e_setup
}

teardown() {
	e2e_teardown
}

@test "apply: the VM reaches Running, its guest answers SSH, status -o json is right" {
	start_daemon
	vm_yaml web >"$WORK/web.yaml"
	run bg apply -f "$WORK/web.yaml" --wait --timeout 4m
	assert_success
	assert_line "vm/web created"
	assert_line --regexp '^vm/web Running \([0-9.]+s\)$'

	run bg ssh web -- uname -r
	assert_success
	assert_output "$(cat "$IMAGE/kernel-release")"

	# OpenSSH agrees with the pin banger made, with strict checking.
	ip=$(vm_field web ip)
	run in_ns ssh -i "$BANGER_STATE_DIR/ssh/id_ed25519" -o BatchMode=yes \
		-o UserKnownHostsFile="$BANGER_STATE_DIR/ssh/known_hosts" \
		-o StrictHostKeyChecking=yes -o ConnectTimeout=20 "root@$ip" echo ok
	assert_success
	assert_output "ok"

	json=$(vm_json web)
	echo "$json" | jq -e --arg net "$NET3." '
		.name == "web" and (.id | test("^[0-9a-f]{8}$")) and .phase == "Running" and
		.desiredState == "running" and .vmm == "qemu" and (.pid | type) == "number" and
		.restarts == 0 and .lastError == null and .generation == 1 and
		.observedGeneration == 1 and (.ip | startswith($net)) and .confirmed == true'
	# The pid is the QEMU process serving this VM's control socket.
	pid=$(echo "$json" | jq -r .pid)
	id=$(echo "$json" | jq -r .id)
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "vms/$id/qmp.sock"
	# The table says the same.
	run bg status
	assert_success
	assert_line --regexp "^web +Running +running +$ip +qemu +$pid "
}

@test "specs dropped by cp and by an editor-style rename converge without a CLI call" {
	# A resync period far longer than the test: only inotify can make this pass.
	start_daemon --resync 600s
	vm_yaml first >"$BANGER_SPEC_DIR/first.yaml"
	wait_phase first Running

	vm_yaml second >"$WORK/second.yaml"
	cp "$WORK/second.yaml" "$BANGER_SPEC_DIR/second.yaml"
	# vim-like: write a scratch file, then rename it over the target name.
	vm_yaml third >"$BANGER_SPEC_DIR/.third.yaml.swp"
	mv "$BANGER_SPEC_DIR/.third.yaml.swp" "$BANGER_SPEC_DIR/third.yaml"
	wait_phase second Running
	wait_phase third Running
	[ "$(vm_field first restarts)" = "0" ]
}

@test "a memory change restarts the VM with the new size; a label change does not" {
	start_daemon
	vm_yaml mem >"$BANGER_SPEC_DIR/mem.yaml"
	wait_phase mem Running
	pid1=$(vm_pid mem)
	kb1=$(bg ssh mem -- awk '/MemTotal/ {print $2}' /proc/meminfo)

	sed -i 's/memoryMiB: 256/memoryMiB: 448/' "$BANGER_SPEC_DIR/mem.yaml"
	wait_for 60 test_gen mem 2
	wait_phase mem Running
	[ "$(vm_field mem observedGeneration)" = "2" ]
	pid2=$(vm_pid mem)
	[ "$pid2" != "$pid1" ]
	kb2=$(bg ssh mem -- awk '/MemTotal/ {print $2}' /proc/meminfo)
	echo "# MemTotal ${kb1} kB -> ${kb2} kB" >&3
	[ "$kb2" -gt $((kb1 + 150000)) ]

	sed -i 's/suite: e2e/suite: relabelled/' "$BANGER_SPEC_DIR/mem.yaml"
	wait_for 60 test_gen mem 3
	[ "$(vm_field mem observedGeneration)" = "3" ]
	[ "$(vm_field mem 'labels.suite')" = "relabelled" ]
	[ "$(vm_pid mem)" = "$pid2" ]
	[ "$(vm_field mem phase)" = "Running" ]
}

test_gen() {
	[ "$(vm_field "$1" generation)" = "$2" ]
}

@test "kill -9 of bangerd leaves VMs running; the next bangerd adopts them with the same pids" {
	start_daemon
	vm_yaml one >"$BANGER_SPEC_DIR/one.yaml"
	vm_yaml two >"$BANGER_SPEC_DIR/two.yaml"
	wait_phase one Running
	wait_phase two Running
	p1=$(vm_pid one)
	p2=$(vm_pid two)
	stop_daemon KILL
	kill -0 "$p1"
	kill -0 "$p2"

	start_daemon
	# Let it run a few passes.
	sleep_until_passes 2
	[ "$(vm_pid one)" = "$p1" ]
	[ "$(vm_pid two)" = "$p2" ]
	[ "$(vm_field one phase)" = "Running" ]
	[ "$(vm_field one restarts)" = "0" ]
	[ "$(vm_field one generation)" = "1" ]
	# Nothing was created or started again.
	run bg describe one
	[ "$(grep -c ' Started \| Created ' <<<"$output")" = "1" ]
	! grep -q 'resuming' "$WORK/bangerd.log"
}

# Wait until the daemon has completed n more passes (its heartbeat moved n times).
sleep_until_passes() {
	local n=$1 hb last
	last=$(sqlite3 -readonly "$BANGER_STATE_DIR/banger.db" 'select heartbeat from daemon' 2>/dev/null)
	while [ "$n" -gt 0 ]; do
		wait_for 30 heartbeat_after "$last" || return 1
		last=$(sqlite3 -readonly "$BANGER_STATE_DIR/banger.db" 'select heartbeat from daemon')
		n=$((n - 1))
	done
}

heartbeat_after() {
	local hb
	hb=$(sqlite3 -readonly "$BANGER_STATE_DIR/banger.db" 'select heartbeat from daemon' 2>/dev/null)
	[ -n "$hb" ] && [ "$hb" != "$1" ]
}

@test "kill -9 of the VMM: the VM is demoted and restarted within the backoff" {
	start_daemon
	vm_yaml crash >"$BANGER_SPEC_DIR/crash.yaml"
	wait_phase crash Running
	pid1=$(vm_pid crash)
	t0=$SECONDS
	kill -KILL "$pid1"
	wait_for 30 new_pid crash "$pid1"
	restarted_after=$((SECONDS - t0))
	echo "# new VMM ${restarted_after}s after the kill" >&3
	# The first failure backs off 1 s; a few seconds cover the pass itself.
	[ "$restarted_after" -le 10 ]
	wait_phase crash Running
	[ "$(vm_field crash restarts)" = "1" ]
	run bg describe crash
	assert_output --partial "ProcessDied"
}

new_pid() {
	local p
	p=$(vm_pid "$1")
	[ -n "$p" ] && [ "$p" != "null" ] && [ "$p" != "$2" ]
}

@test "a broken spec beside working ones is reported with file:line and changes nothing" {
	start_daemon
	vm_yaml keep >"$BANGER_SPEC_DIR/keep.yaml"
	vm_yaml other >"$BANGER_SPEC_DIR/other.yaml"
	wait_phase keep Running
	wait_phase other Running
	pk=$(vm_pid keep)
	po=$(vm_pid other)

	printf 'apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: broken\nspec:\n  vcpus: [\n' \
		>"$BANGER_SPEC_DIR/broken.yaml"
	# Break an existing VM's own file too: it must keep its last good spec, not be deleted.
	printf 'apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: other\nspec:\n  vcpus: many\n' \
		>"$BANGER_SPEC_DIR/other.yaml"
	wait_for 30 status_shows_errors
	run bg status
	assert_output --regexp "broken\.yaml:[0-9]+:[0-9]+: "
	assert_output --partial "other.yaml:6:10: "
	sleep_until_passes 2
	[ "$(vm_pid keep)" = "$pk" ]
	[ "$(vm_pid other)" = "$po" ]
	[ "$(vm_field other phase)" = "Running" ]
	[ "$(vm_field other generation)" = "1" ]
	run bg get broken
	assert_failure
}

status_shows_errors() {
	bg status 2>&1 | grep -q 'broken.yaml:' && bg status 2>&1 | grep -q 'other.yaml:'
}

@test "delete leaves no process, tap, loop, file, lease, row or known_hosts pin" {
	start_daemon
	vm_yaml gone "workDisk: {sizeMiB: 64}" >"$BANGER_SPEC_DIR/gone.yaml"
	wait_phase gone Running
	id=$(vm_id gone)
	ip=$(vm_field gone ip)
	pid=$(vm_pid gone)
	kh=$BANGER_STATE_DIR/ssh/known_hosts
	ssh-keygen -F "$ip" -f "$kh" >/dev/null
	ssh-keygen -F gone.vm -f "$kh" >/dev/null
	in_ns ip link show "bg$id" >/dev/null
	[ -d "$BANGER_STATE_DIR/vms/$id" ]

	run bg delete gone --wait --timeout 2m
	assert_success
	assert_line "vm/gone deleted"
	! kill -0 "$pid" 2>/dev/null
	! in_ns ip link show "bg$id" 2>/dev/null
	[ -z "$(our_loops)" ]
	[ ! -e "$BANGER_STATE_DIR/vms/$id" ]
	[ ! -e "$BANGER_SPEC_DIR/gone.yaml" ]
	db=$BANGER_STATE_DIR/banger.db
	[ "$(sqlite3 -readonly "$db" 'select count(*) from vms')" = "0" ]
	[ "$(sqlite3 -readonly "$db" 'select count(*) from ip_leases')" = "0" ]
	run ssh-keygen -F "$ip" -f "$kh"
	assert_failure
	run ssh-keygen -F gone.vm -f "$kh"
	assert_failure
}
