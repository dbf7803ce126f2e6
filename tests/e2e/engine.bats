#!/usr/bin/env bats
# End-to-end: nothing waits inside a pass. With the Firecracker stand-in as the
# VMM (no guest), so only the control plane is measured:
# - 20 guests whose port 22 accepts but never speaks SSH (a listener in a
#   namespace of this test, on the bridge, holding their addresses) do not hold
#   back a new spec: its VMM starts within a few seconds, not after 20 probe
#   deadlines;
# - a stop whose guest ignores the graceful request does not hold back another
#   VM's create, and escalates at its deadline;
# - a daemon killed in the middle of such a stop finishes it after a restart at
#   the deadline recorded in the row, without asking the guest again.
# Bounds are generous (a loaded CI machine); bench/ has the real figures.

load helpers

setup() {
	e2e_setup
	export FC_STANDIN_LOG=$WORK/firecracker-requests.jsonl
	install -m 0666 /dev/null "$FC_STANDIN_LOG"
	chmod 0711 "$WORK"
	GNS=bgg-$SFX
	GVETH=bgg${SFX:0:8}
	LISTENER_PID=
}

teardown() {
	[ -z "$LISTENER_PID" ] || kill "$LISTENER_PID" 2>/dev/null || true
	[ -z "$LISTENER_PID" ] || wait "$LISTENER_PID" 2>/dev/null || true
	ip netns del "$GNS" 2>/dev/null || true
	e2e_teardown
	! ip netns list | grep -q "^$GNS\b" || fail "teardown: netns $GNS left"
}

fc_daemon() {
	start_daemon --vmm firecracker --firecracker "$STANDIN" --skip-kvm-check "$@"
}

# spec_in NAME [extra lines]: write the spec elsewhere, then rename it in (one event).
spec_in() {
	local name=$1
	shift
	vm_yaml "$name" "vmm: firecracker" "$@" >"$WORK/$name.yaml"
	mv "$WORK/$name.yaml" "$BANGER_SPEC_DIR/$name.yaml"
}

now_ms() {
	date +%s%3N
}

past() {
	[ "$(now_ms)" -ge "$1" ]
}

all_starting() {
	[ "$(bg status -o json | jq '[.items[] | select(.phase == "Starting")] | length')" -ge "$1" ]
}

stop_stage_is() {
	[ "$(vm_field "$1" stopStage)" = "$2" ]
}

# Namespace $GNS on the bridge holding the given guest addresses, with a TCP
# listener on port 22 that accepts every connection, keeps it and never sends a
# byte (a guest whose sshd hangs). It logs each connection's local address.
silent_guests() {
	ip netns add "$GNS"
	ip -n "$GNS" link set lo up
	in_ns ip link add "$GVETH" type veth peer name gpeer0
	in_ns ip link set gpeer0 netns "$GNS"
	in_ns ip link set "$GVETH" master "$BRIDGE" up
	local ip
	for ip in "$@"; do
		ip -n "$GNS" addr add "$ip/24" dev gpeer0
	done
	ip -n "$GNS" link set gpeer0 up
	cat >"$WORK/silent.py" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22))
s.listen(512)
held = []
with open(sys.argv[1], "a", buffering=1) as log:
    while True:
        c, _ = s.accept()
        held.append(c)
        log.write(c.getsockname()[0] + "\n")
PY
	: >"$WORK/silent.log"
	ip netns exec "$GNS" python3 "$WORK/silent.py" "$WORK/silent.log" 3>&- &
	LISTENER_PID=$!
}

silent_probed() {
	[ "$(sort -u "$WORK/silent.log" | wc -l)" -ge "$1" ]
}

# deaf_stop_requested STOP_TIMEOUT: a daemon with that --stop-timeout, and VM 'deaf'
# whose "guest" ignores Ctrl-Alt-Del, asked to stop: sets $pid (its VMM) and
# $deadline (the recorded end of the graceful stage, epoch ms).
deaf_stop_requested() {
	export FC_STANDIN_IGNORE_CTRLALTDEL=1
	fc_daemon --stop-timeout "$1"
	spec_in deaf
	wait_phase deaf Starting 60
	pid=$(vm_pid deaf)
	sed -i 's/^spec:$/spec:\n  state: stopped/' "$BANGER_SPEC_DIR/deaf.yaml"
	wait_for 30 stop_stage_is deaf graceful || fail "no graceful stop recorded"
	deadline=$(vm_field deaf stopDeadline)
}

@test "20 guests that never answer SSH do not hold back a new spec" {
	fc_daemon
	for i in $(seq -w 1 20); do
		spec_in "mute-$i"
	done
	wait_for 240 all_starting 20 || fail "20 VMs did not reach Starting"
	mapfile -t ips < <(bg status -o json | jq -r '.items[] | select(.name | startswith("mute-")) | .ip')
	[ "${#ips[@]}" -eq 20 ]
	silent_guests "${ips[@]}"
	# Every one of them is being probed (connected, then left hanging).
	wait_for 60 silent_probed 20 || fail "the silent guests were not all probed: $(sort -u "$WORK/silent.log" | wc -l)"

	t0=$(now_ms)
	spec_in late
	wait_phase late Starting 60
	took=$(($(now_ms) - t0))
	echo "# new spec -> Starting with 20 silent guests: ${took} ms" >&3
	# One at a time, a pass would spend 20 x 4 s in SSH handshakes.
	[ "$took" -lt 15000 ] || fail "the new VM waited ${took} ms"
	# The silent ones are still Starting: never answering is not Running.
	[ "$(vm_field mute-01 phase)" = "Starting" ]
}

@test "a stop the guest ignores does not hold back another create, and escalates at its deadline" {
	deaf_stop_requested 15s
	[ "$(vm_field deaf phase)" = "Stopping" ]

	t0=$(now_ms)
	spec_in other
	wait_phase other Starting 60
	took=$(($(now_ms) - t0))
	echo "# create beside a 15 s graceful stop: ${took} ms" >&3
	# The stop is still waiting for its deadline; the create did not wait for it.
	[ "$(now_ms)" -lt "$deadline" ] || fail "the create took until the stop's deadline (${took} ms)"
	stop_stage_is deaf graceful
	kill -0 "$pid"

	# At the deadline: SIGTERM ends the stand-in, and the stop finishes.
	wait_phase deaf Stopped 60
	done_at=$(now_ms)
	[ "$done_at" -ge "$deadline" ] || fail "stopped $((deadline - done_at)) ms before its deadline"
	! kill -0 "$pid" 2>/dev/null
	[ "$(vm_field deaf stopStage)" = "null" ]
	[ "$(jq -s '[.[] | select(.body.action_type == "SendCtrlAltDel")] | length' "$FC_STANDIN_LOG")" = "1" ]
}

@test "a daemon killed mid-stop finishes the stop at the recorded deadline" {
	deaf_stop_requested 30s
	requested=$(now_ms)

	stop_daemon KILL
	kill -0 "$pid" # the VM outlives its daemon
	# Down for a while: a restarted daemon that began the grace again would
	# finish 10 s or more after the recorded deadline.
	wait_for 30 past $((requested + 10000))
	fc_daemon --stop-timeout 30s
	[ "$(vm_field deaf stopDeadline)" = "$deadline" ]
	stop_stage_is deaf graceful

	wait_phase deaf Stopped 60
	done_at=$(now_ms)
	echo "# stopped $((done_at - deadline)) ms after the recorded deadline" >&3
	[ "$done_at" -ge "$deadline" ]
	[ "$done_at" -lt $((deadline + 8000)) ] || fail "stopped $((done_at - deadline)) ms after the deadline"
	! kill -0 "$pid" 2>/dev/null
	# The guest was asked once, by the first daemon; the second one went on from there.
	[ "$(jq -s '[.[] | select(.body.action_type == "SendCtrlAltDel")] | length' "$FC_STANDIN_LOG")" = "1" ]
}
