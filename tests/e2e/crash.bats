#!/usr/bin/env bats
# Crash consistency: bangerd is killed (BANGER_FAILPOINT: _exit as if SIGKILLed)
# right after every converge step of every action, then restarted without the
# failpoint. The restarted daemon must finish the job from its intent log:
# exactly one VMM per VM, the expected phase, and for deletes nothing left.
# The Firecracker stand-in is the VMM (a process per VM, no guest), so each
# crash costs a second, while taps, disks and the store are all real.

load helpers

setup() {
	e2e_setup
	# The stand-in runs as the VM's unprivileged VMM uid: it must reach its log.
	export FC_STANDIN_LOG=$WORK/firecracker-requests.jsonl
	install -m 0666 /dev/null "$FC_STANDIN_LOG"
	chmod 0711 "$WORK"
	# Every stop waits (the "guest" ignores Ctrl-Alt-Del) until its 2 s deadline, then
	# escalates: so the failpoints inside a waiting stop ("*.stop-vmm.waiting") are hit
	# every time, and a restarted daemon must go on from the recorded deadline.
	export FC_STANDIN_IGNORE_CTRLALTDEL=1
}

teardown() {
	unset BANGER_FAILPOINT
	e2e_teardown
}

DAEMON_ARGS=(--vmm firecracker --firecracker "$BATS_TEST_DIRNAME/../firecracker/firecracker-standin" --skip-kvm-check --stop-timeout 2s)

fc_yaml() {
	vm_yaml "$@" "vmm: firecracker"
}

# put_spec NAME [LINE...]: write the spec whole (made aside, then renamed in).
# A daemon that starts while a file is being written cannot know it is not
# done (its creation came before the watch); these tests are about crashes,
# not about that race.
put_spec() {
	fc_yaml "$@" >"$WORK/$1.yaml.tmp"
	mv "$WORK/$1.yaml.tmp" "$BANGER_SPEC_DIR/$1.yaml"
}

# VMM processes serving this VM's API socket (there must never be two).
vmm_count() {
	local id=$1 p n=0
	for p in /proc/[0-9]*; do
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "vms/$id/fc/api.sock" && n=$((n + 1))
	done
	echo "$n"
}

one_vmm() {
	local n
	n=$(vmm_count "$1")
	[ "$n" -le 1 ] || fail "$n VMMs for VM $1"
	[ "$n" = 1 ]
}

# crash_then_recover FAILPOINT TRIGGER...: start a daemon armed with FAILPOINT,
# run TRIGGER, expect the daemon to die with 137, then start a clean daemon.
crash_then_recover() {
	local fp=$1 rc
	shift
	export BANGER_FAILPOINT=$fp
	start_daemon "${DAEMON_ARGS[@]}"
	unset BANGER_FAILPOINT
	"$@"
	rc=0
	wait_for 60 daemon_gone || fail "failpoint '$fp' was not hit"
	wait "$DAEMON_PID" || rc=$?
	DAEMON_PID=
	[ "$rc" = "137" ] || fail "failpoint '$fp': bangerd exited $rc, not 137"
	grep -q "failpoint '$fp' hit" "$WORK/bangerd.log"
	start_daemon "${DAEMON_ARGS[@]}"
}

daemon_gone() {
	! kill -0 "$DAEMON_PID" 2>/dev/null || [ "$(ps -o stat= -p "$DAEMON_PID" | cut -c1)" = "Z" ]
}

failpoints() {
	"$BANGERD_BIN" --list-failpoints | grep "^$1\."
}

set_state() {
	local name=$1 state=$2
	sed -i '/^  state: /d' "$BANGER_SPEC_DIR/$name.yaml"
	sed -i "s/^spec:\$/spec:\n  state: $state/" "$BANGER_SPEC_DIR/$name.yaml"
}

@test "crash after each create step: the restarted daemon finishes the create" {
	local n=0
	for fp in $(failpoints create); do
		n=$((n + 1))
		name=c$n
		crash_then_recover "$fp" put_spec "$name"
		wait_phase "$name" Starting 60
		id=$(vm_id "$name")
		# Exactly one VMM (a /proc walk can miss one mid-exec: look again briefly).
		wait_for 10 one_vmm "$id" || fail "$fp: $(vmm_count "$id") VMMs for $name"
		# One host key, pinned for the VM's address, on its seed.
		key=$(awk '{ print $1, $2 }' "$BANGER_STATE_DIR/vms/$id/ssh_host_ed25519_key.pub")
		grep -qF "$(vm_field "$name" ip),$name.vm $key" "$BANGER_STATE_DIR/ssh/known_hosts" ||
			fail "$fp: no pin for $name"
		[ -s "$BANGER_STATE_DIR/vms/$id/seed.iso" ]
		stop_daemon TERM
	done
	[ "$n" -eq 11 ]
}

@test "crash after each delete step: the restarted daemon finishes the delete" {
	local n=0
	for fp in $(failpoints delete); do
		n=$((n + 1))
		name=d$n
		start_daemon "${DAEMON_ARGS[@]}"
		put_spec "$name" "workDisk: {sizeMiB: 16}"
		wait_phase "$name" Starting 60
		id=$(vm_id "$name")
		stop_daemon TERM
		crash_then_recover "$fp" rm "$BANGER_SPEC_DIR/$name.yaml"
		wait_for 60 vm_absent "$name" || fail "$fp: $name still recorded"
		[ "$(vmm_count "$id")" = "0" ]
		[ ! -e "$BANGER_STATE_DIR/vms/$id" ]
		! in_ns ip link show "bg$id" 2>/dev/null
		[ "$(sqlite3 -readonly "$BANGER_STATE_DIR/banger.db" "select count(*) from ip_leases where vm_id='$id'")" = "0" ]
		! grep -q "$name.vm" "$BANGER_STATE_DIR/ssh/known_hosts" || fail "$fp: pin of $name left"
		stop_daemon TERM
	done
	[ "$n" -eq 9 ]
}

vm_absent() {
	! bg get "$1" >/dev/null 2>&1
}

@test "crash after each restart step: the VM ends up running the new spec, once" {
	local n=0
	for fp in $(failpoints restart); do
		n=$((n + 1))
		name=r$n
		start_daemon "${DAEMON_ARGS[@]}"
		put_spec "$name"
		wait_phase "$name" Starting 60
		id=$(vm_id "$name")
		stop_daemon TERM
		crash_then_recover "$fp" sed -i 's/memoryMiB: 256/memoryMiB: 320/' "$BANGER_SPEC_DIR/$name.yaml"
		wait_for 60 applied "$name" 2 || fail "$fp: $(vm_json "$name" | jq -c .)"
		[ "$(vmm_count "$id")" = "1" ]
		stop_daemon TERM
	done
	[ "$n" -eq 13 ]
}

applied() {
	local j
	j=$(vm_json "$1") || return 1
	jq -e --argjson g "$2" '.generation == $g and .observedGeneration == $g and .phase == "Starting" and .inProgress == null' <<<"$j" >/dev/null
}

@test "crash after each stop and start step, update and demote: the daemon converges" {
	start_daemon "${DAEMON_ARGS[@]}"
	put_spec s
	wait_phase s Starting 60
	id=$(vm_id s)
	stop_daemon TERM
	for fp in $(failpoints stop); do
		crash_then_recover "$fp" set_state s stopped
		wait_phase s Stopped 60
		[ "$(vmm_count "$id")" = "0" ]
		stop_daemon TERM
		# Back to running for the next round (no failpoint).
		start_daemon "${DAEMON_ARGS[@]}"
		set_state s running
		wait_phase s Starting 60
		stop_daemon TERM
	done
	for fp in $(failpoints start); do
		start_daemon "${DAEMON_ARGS[@]}"
		set_state s stopped
		wait_phase s Stopped 60
		stop_daemon TERM
		crash_then_recover "$fp" set_state s running
		wait_phase s Starting 60
		[ "$(vmm_count "$id")" = "1" ] || fail "$fp: $(vmm_count "$id") VMMs"
		stop_daemon TERM
	done
	gen=$(vm_field s generation)
	pid=$(vm_pid s)
	crash_then_recover update.apply-spec sed -i 's/suite: e2e/suite: updated/' "$BANGER_SPEC_DIR/s.yaml"
	wait_for 30 applied s $((gen + 1))
	[ "$(vm_pid s)" = "$pid" ]
	stop_daemon TERM
	# A forward added live, crashed right after its rules: in place once, no restart.
	crash_then_recover update.netrules sed -i \
		's/^spec:$/spec:\n  network: {ports: [{hostPort: 18080, guestPort: 80}]}/' \
		"$BANGER_SPEC_DIR/s.yaml"
	wait_for 30 applied s $((gen + 2))
	[ "$(vm_pid s)" = "$pid" ]
	[ "$(in_ns nft list table ip "banger-$BRIDGE" | grep -c "tcp dport 18080 dnat to")" = 1 ]
	stop_daemon TERM
	crash_then_recover demote.teardown kill -KILL "$pid"
	wait_for 60 new_running_pid s "$pid"
	[ "$(vmm_count "$id")" = "1" ]
	[ "$(vm_field s restarts)" = "1" ]
}

new_running_pid() {
	local p
	p=$(vm_pid "$1")
	[ "$p" != "null" ] && [ "$p" != "$2" ] && [ "$(vm_field "$1" phase)" = "Starting" ]
}
