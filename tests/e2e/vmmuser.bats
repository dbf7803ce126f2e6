#!/usr/bin/env bats
# VMMs without root: rediscovery adopts only a process run by the VM's VMM
# uid (or root) executing the configured binary; QEMU and Firecracker (the
# stand-in) run as a per-VM unprivileged uid, with no_new_privs, seccomp and
# their own namespaces.

load helpers

setup() {
	e2e_setup
	DECOY=
	LISTENER=
	# A Firecracker VM's uid reaches its VM dir by path: the state dir's
	# parents must be searchable by others (as /var/lib is).
	chmod 0711 "$WORK"
}

teardown() {
	[ -z "$DECOY" ] || kill -KILL "$DECOY" 2>/dev/null || true
	[ -z "$LISTENER" ] || kill -KILL "$LISTENER" 2>/dev/null || true
	e2e_teardown
}

# The Firecracker tests take a range of their own above the default one: the
# QEMU test counts the processes of the default range's first uid, which
# other banger tests running on the machine at the same time may use too.
FC_UID_FIRST=$((1879048192 + 65536 + (RANDOM % 8192) * 64))
FC_ARGS=(--vmm firecracker --firecracker "$BATS_TEST_DIRNAME/../firecracker/firecracker-standin" --skip-kvm-check
	--vmm-uids "$FC_UID_FIRST:64")

# status_field PID FIELD: a field of /proc/PID/status ("Uid" -> its first value).
status_field() {
	awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"
}

@test "a process run as nobody naming a VM's socket is not adopted; the real VMM starts" {
	start_daemon "${FC_ARGS[@]}"
	vm_yaml spoofed "vmm: firecracker" >"$BANGER_SPEC_DIR/spoofed.yaml"
	wait_phase spoofed Starting 60
	id=$(vm_id spoofed)
	sock=$BANGER_STATE_DIR/vms/$id/fc/api.sock
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

# gone PID: no such process, or only its zombie.
gone() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
	[ "${st:0:1}" = Z ]
}

# uid_idle UID: no live process runs as UID.
uid_idle() {
	! ps -o stat= -u "$1" 2>/dev/null | grep -qv '^Z'
}

# ns PID KIND: the namespace link of a process.
ns() {
	readlink "/proc/$1/ns/$2"
}

@test "QEMU runs as the VM's own unprivileged uid, confined; ssh works; delete frees the uid" {
	start_daemon --vmm qemu
	vm_yaml box "vmm: qemu" >"$BANGER_SPEC_DIR/box.yaml"
	wait_phase box Running
	id=$(vm_id box)
	pid=$(vm_pid box)
	uid=$(status_field "$pid" Uid)
	# From the default range, recorded as the group of the 0700 VM dir.
	[ "$uid" -ge 1879048192 ] && [ "$uid" -lt $((1879048192 + 65536)) ] || fail "QEMU uid $uid"
	[ "$(stat -c '%u %g %a' "$BANGER_STATE_DIR/vms/$id")" = "0 $uid 700" ]
	[ "$(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' "/proc/$pid/status")" = "$uid $uid $uid $uid" ]
	[ "$(awk '$1 == "Gid:" { print $2, $3, $4, $5 }' "/proc/$pid/status")" = "$uid $uid $uid $uid" ]
	[ "$(status_field "$pid" CapEff)" = "0000000000000000" ]
	[ "$(status_field "$pid" NoNewPrivs)" = "1" ]
	[ "$(status_field "$pid" Seccomp)" = "2" ]
	for kind in mnt ipc uts net pid; do
		[ "$(ns "$pid" $kind)" != "$(ns "$DAEMON_PID" $kind)" ] || fail "QEMU shares bangerd's $kind namespace"
	done
	# It opened nothing by path: its disks and console are the daemon's fds.
	run ls -l "/proc/$pid/fd"
	assert_output --partial "$BANGER_STATE_DIR/vms/$id/console.log"
	# The guest works through the passed tap, and QMP through the passed socket.
	run bg ssh box -- cat /proc/cmdline
	assert_success
	assert_output --partial "root=/dev/vda"

	# A restarted daemon without handles.json adopts it again: its uid is the VM's.
	stop_daemon TERM
	rm "$BANGER_STATE_DIR/vms/$id/handles.json"
	start_daemon --vmm qemu
	wait_phase box Running 60
	[ "$(vm_pid box)" = "$pid" ]
	[ "$(pgrep -c -u "$uid")" = "1" ]

	rm "$BANGER_SPEC_DIR/box.yaml"
	wait_for 60 no_vms || fail "box not deleted"
	[ ! -e "$BANGER_STATE_DIR/vms/$id" ]
	# No live process runs as that uid any more (an adopted QEMU is reparented
	# to init when it exits, which may reap it later), and the next VM may get it.
	wait_for 30 gone "$pid" || fail "QEMU $pid still runs"
	wait_for 30 uid_idle "$uid" || fail "processes still run as uid $uid: $(pgrep -u "$uid")"
	vm_yaml box2 "vmm: qemu" >"$BANGER_SPEC_DIR/box2.yaml"
	wait_for 120 eval "[ \"\$(vm_pid box2)\" -gt 0 ] 2>/dev/null"
	[ "$(status_field "$(vm_pid box2)" Uid)" = "$uid" ]
}

@test "Firecracker (stand-in) runs as the VM's own unprivileged uid, confined; re-adopted; delete frees the uid" {
	export FC_STANDIN_LOG=$WORK/firecracker-requests.jsonl
	install -m 0666 /dev/null "$FC_STANDIN_LOG"
	start_daemon "${FC_ARGS[@]}"
	vm_yaml fc "vmm: firecracker" "workDisk: {sizeMiB: 32}" >"$BANGER_SPEC_DIR/fc.yaml"
	wait_phase fc Starting 60
	id=$(vm_id fc)
	dir=$BANGER_STATE_DIR/vms/$id
	pid=$(vm_pid fc)
	uid=$(status_field "$pid" Uid)
	[ "$uid" -ge "$FC_UID_FIRST" ] && [ "$uid" -lt $((FC_UID_FIRST + 64)) ] || fail "Firecracker uid $uid"
	[ "$(awk '$1 == "Uid:" { print $2, $3, $4, $5 }' "/proc/$pid/status")" = "$uid $uid $uid $uid" ]
	[ "$(awk '$1 == "Gid:" { print $2, $3, $4, $5 }' "/proc/$pid/status")" = "$uid $uid $uid $uid" ]
	[ "$(status_field "$pid" CapEff)" = "0000000000000000" ]
	[ "$(status_field "$pid" NoNewPrivs)" = "1" ]
	[ "$(status_field "$pid" Seccomp)" = "2" ]
	if getent group kvm >/dev/null; then
		kvm=$(getent group kvm | cut -d: -f3)
		grep -q "^Groups:.*\b$kvm\b" "/proc/$pid/status" || fail "no kvm group: $(grep Groups "/proc/$pid/status")"
	fi
	for kind in mnt ipc uts; do
		[ "$(ns "$pid" $kind)" != "$(ns "$DAEMON_PID" $kind)" ] || fail "Firecracker shares bangerd's $kind namespace"
	done
	# Its files are root's, granted to its group; it may create entries only in fc/.
	[ "$(stat -c '%u %g %a' "$dir")" = "0 $uid 710" ]
	[ "$(stat -c '%u %g %a' "$dir/fc")" = "0 $uid 770" ]
	[ "$(stat -c '%u %g %a' "$dir/work.ext4")" = "0 $uid 660" ]
	[ "$(stat -c '%u %g %a' "$dir/firecracker.log")" = "0 $uid 660" ]
	[ "$(stat -c '%u %g' "$dir/console.log")" = "0 0" ] # handed over as an fd
	[ "$(stat -c %u "$dir/fc/api.sock")" = "$uid" ]
	# The tap belongs to it; kernel and initrd are sealed copies it was handed.
	[ "$(in_ns cat "/sys/class/net/bg$id/owner")" = "$uid" ]
	[ "$(in_ns cat "/sys/class/net/bg$id/group")" = "$uid" ]
	jq -e -s 'any(.[]; .path == "/boot-source" and (.body.kernel_image_path | startswith("/proc/self/fd/")))' "$FC_STANDIN_LOG" >/dev/null
	# Everything it was asked, it could do, through InstanceStart.
	[ "$(jq -s '[.[] | select(.verdict != "ok")] | length' "$FC_STANDIN_LOG")" = "0" ]
	jq -e -s 'any(.[]; .path == "/actions" and .body.action_type == "InstanceStart" and .status == 204)' "$FC_STANDIN_LOG" >/dev/null

	# A restarted daemon without handles.json adopts it again: its uid is the VM's.
	stop_daemon TERM
	rm "$dir/handles.json"
	start_daemon "${FC_ARGS[@]}"
	wait_phase fc Starting 60
	[ "$(vm_pid fc)" = "$pid" ]
	[ "$(pgrep -c -u "$uid")" = "1" ]

	rm "$BANGER_SPEC_DIR/fc.yaml"
	wait_for 60 no_vms || fail "fc not deleted"
	[ ! -e "$dir" ]
	wait_for 30 gone "$pid" || fail "Firecracker $pid still runs"
	wait_for 30 uid_idle "$uid" || fail "processes still run as uid $uid: $(pgrep -u "$uid")"
	! in_ns ip link show "bg$id" 2>/dev/null
	# The uid is free: the next VM gets it.
	vm_yaml fc2 "vmm: firecracker" >"$BANGER_SPEC_DIR/fc2.yaml"
	wait_phase fc2 Starting 60
	[ "$(status_field "$(vm_pid fc2)" Uid)" = "$uid" ]
}

@test "links the Firecracker uid plants in its socket dir lead root nowhere: stop and delete stay inside" {
	start_daemon "${FC_ARGS[@]}"
	vm_yaml fc "vmm: firecracker" >"$BANGER_SPEC_DIR/fc.yaml"
	wait_phase fc Starting 60
	id=$(vm_id fc)
	dir=$BANGER_STATE_DIR/vms/$id
	pid=$(vm_pid fc)
	uid=$(status_field "$pid" Uid)
	[ "$uid" != 0 ]
	# Root's things the links point at: a socket that counts connections, a directory.
	mkdir -m 0700 "$WORK/victim"
	echo keep >"$WORK/victim/file"
	python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("hit\n"); c.close()' "$WORK/root.sock" "$WORK/hits" &
	LISTENER=$!
	wait_for 10 test -S "$WORK/root.sock"
	# What a compromised VMM can do: its socket dir is the one place it may write.
	setpriv --reuid="$uid" --regid="$uid" --clear-groups sh -c \
		"cd '$dir/fc' && rm -f api.sock && ln -s '$WORK/root.sock' api.sock && ln -s '$WORK/victim' out"
	[ -L "$dir/fc/api.sock" ]
	# It cannot touch anything else in its VM dir.
	run setpriv --reuid="$uid" --regid="$uid" --clear-groups sh -c "ln -s / '$dir/x' || rm -f '$dir/handles.json'"
	assert_failure
	[ ! -e "$dir/x" ] && [ -e "$dir/handles.json" ]

	# Stop: ctrl-alt-del cannot be sent (never through the link), SIGTERM ends it.
	sed -i 's/^spec:$/spec:\n  state: stopped/' "$BANGER_SPEC_DIR/fc.yaml"
	wait_phase fc Stopped 60
	wait_for 30 gone "$pid" || fail "Firecracker $pid still runs"
	rm "$BANGER_SPEC_DIR/fc.yaml"
	wait_for 60 no_vms || fail "fc not deleted"
	[ ! -e "$dir" ]
	[ ! -e "$WORK/hits" ] || fail "root connected through the planted link $(wc -l <"$WORK/hits") times"
	[ "$(cat "$WORK/victim/file")" = keep ]
	[ -S "$WORK/root.sock" ]
}
