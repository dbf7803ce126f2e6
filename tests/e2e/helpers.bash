# helpers.bash - shared setup for the end-to-end tests (bats).
#
# Each test gets its own network namespace (the bridge, taps and all guest
# traffic live there, never on the host's interfaces), its own 10.x subnet,
# bridge name, spec dir and state dir under a temp dir, and its own bangerd.
# Teardown deletes what is left through banger, then kills only the
# processes this test's bangerd started (by pid, checked against their
# cmdline), removes the namespace and the temp dir, and fails the test if
# anything leaked.

load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
BUILD_DIR=$TOP/${BUILD:-build}
BANGER_BIN=$BUILD_DIR/banger
BANGERD_BIN=$BUILD_DIR/bangerd
IMAGE=$TOP/build/image
STANDIN=$TOP/tests/firecracker/firecracker-standin

# Deadlines (seconds). Guests boot under QEMU TCG: ~6 s alone, slower in parallel.
BOOT_TIMEOUT=${BANGER_E2E_BOOT_TIMEOUT:-240}

e2e_setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, taps, VMs)"
	for f in "$IMAGE/vmlinux" "$IMAGE/initrd.gz" "$IMAGE/rootfs.ext4"; do
		[ -e "$f" ] || fail "guest image missing: $f (run 'make image')"
	done
	SFX=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
	WORK=$(mktemp -d "/tmp/bg-e2e-$SFX.XXXX")
	NS=bge2e-$SFX
	BRIDGE=bgbr${SFX:0:6}
	NET3=10.$((RANDOM % 200 + 20)).$((RANDOM % 250))
	SUBNET=$NET3.1/24
	export BANGER_STATE_DIR=$WORK/state
	export BANGER_SPEC_DIR=$WORK/specs
	mkdir -p "$BANGER_SPEC_DIR"
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	DAEMON_PID=
}

# Run a command inside the test's network namespace.
in_ns() {
	ip netns exec "$NS" "$@"
}

bg() {
	in_ns "$BANGER_BIN" "$@"
}

# start_daemon [bangerd options...]: start this test's bangerd and wait for its heartbeat.
start_daemon() {
	# The QEMU wrapper reads root's known_hosts: its QEMU must run as root.
	[[ " $* " != *" ${QEMU_WRAP:-/nonexistent} "* ]] || set -- "$@" --vmm-uids off
	# 'ip netns exec' execs bangerd, so $! is bangerd's own pid. fd 3 is bats'
	# output: a daemon must not hold it, or bats waits for it forever.
	# Spec-named images may only be below --image-dir: the guest images and
	# this test's work dir (which holds the state dir: its vms/ and ssh/ stay
	# refused by the path rule).
	ip netns exec "$NS" "$BANGERD_BIN" --bridge "$BRIDGE" --subnet "$SUBNET" --resync 5s \
		--stop-timeout 20s --image-dir "$IMAGE" --image-dir "$TOP/build/image-debian" \
		--image-dir "$WORK" -v "$@" >>"$WORK/bangerd.log" 2>&1 3>&- &
	DAEMON_PID=$!
	wait_for 30 daemon_fresh || {
		tail -n 30 "$WORK/bangerd.log"
		fail "bangerd did not come up"
	}
}

daemon_fresh() {
	kill -0 "$DAEMON_PID" 2>/dev/null || return 1
	local out
	out=$(bg status 2>&1) || return 1
	! grep -qE 'never run|not running' <<<"$out"
}

# stop_daemon [SIGNAL]: stop this test's bangerd (SIGTERM by default) and reap it.
stop_daemon() {
	local sig=${1:-TERM}
	[ -n "$DAEMON_PID" ] || return 0
	kill "-$sig" "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=
}

# wait_for SECONDS CMD...: run CMD until it succeeds or the deadline passes.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	while ! "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.25
	done
}

# peer_ns NETNS VETH NS_CIDR PEER_CIDR: a network namespace NETNS joined to the
# test's namespace by a veth pair: VETH with NS_CIDR on the test's side, "peer0"
# with PEER_CIDR in NETNS (a remote host, a resolver, "the internet").
peer_ns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
	in_ns ip link add "$2" type veth peer name peer0
	in_ns ip link set peer0 netns "$1"
	in_ns ip addr add "$3" dev "$2"
	in_ns ip link set "$2" up
	ip -n "$1" addr add "$4" dev peer0
	ip -n "$1" link set peer0 up
}

# vm_yaml NAME [extra spec lines...]: a spec for the reference guest image.
vm_yaml() {
	local name=$1
	shift
	cat <<YAML
apiVersion: banger/v1
kind: VM
metadata:
  name: $name
  labels: {suite: e2e}
spec:
  vcpus: 1
  memoryMiB: 256
  kernel:
    path: $IMAGE/vmlinux
    initrd: $IMAGE/initrd.gz
  rootfs:
    image: $IMAGE/rootfs.ext4
YAML
	local line
	for line in "$@"; do
		printf '  %s\n' "$line"
	done
}

# make_qemu_wrapper: $QEMU_WRAP, a QEMU that first copies banger's known_hosts
# as it is when the VMM starts (to $WORK/kh-at-start.<pid>), so a test can see
# what was pinned before any guest ran. Start bangerd with --qemu "$QEMU_WRAP".
make_qemu_wrapper() {
	QEMU_WRAP=$WORK/qemu-wrap
	cat >"$QEMU_WRAP" <<EOF
#!/bin/sh
cp "$WORK/state/ssh/known_hosts" "$WORK/kh-at-start.\$\$" 2>/dev/null || : >"$WORK/kh-at-start.\$\$"
exec qemu-system-x86_64 "\$@"
EOF
	chmod +x "$QEMU_WRAP"
}

# vm_json NAME: 'banger get NAME -o json'
vm_json() {
	bg get "$1" -o json 2>/dev/null
}

vm_field() {
	vm_json "$1" | jq -r ".$2"
}

phase_is() {
	[ "$(vm_field "$1" phase)" = "$2" ]
}

# wait_phase NAME PHASE [SECONDS]
wait_phase() {
	local name=$1 phase=$2 secs=${3:-$BOOT_TIMEOUT}
	wait_for "$secs" phase_is "$name" "$phase" || {
		echo "# vm '$name' did not reach $phase within ${secs}s; now: $(vm_json "$name" | jq -c '{phase,lastError,pid}')" >&3
		tail -n 40 "$WORK/bangerd.log" | sed 's/^/# bangerd: /' >&3
		return 1
	}
}

vm_pid() {
	vm_field "$1" pid
}

vm_id() {
	vm_field "$1" id
}

# Kill whatever VMM this test's bangerd left (by pid from handles.json, checked
# to be a process whose cmdline names this test's work dir).
kill_our_vmms() {
	local f pid
	for f in "$WORK"/state/vms/*/handles.json; do
		[ -e "$f" ] || continue
		pid=$(jq -r '.pid // 0' "$f")
		[ "$pid" -gt 0 ] 2>/dev/null || continue
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$WORK"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

# Processes whose command line or environment names this test's work dir
# (bangerd finds its dirs through BANGER_STATE_DIR; VMMs name files in argv).
our_processes() {
	local p
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" != "$$" ] || continue
		[ -r "$p/cmdline" ] || continue
		# bats' own shells export BANGER_STATE_DIR too: match the environment only
		# for banger's binaries.
		if { tr '\0' '\n' <"$p/cmdline" | grep -qF "$WORK"; } 2>/dev/null ||
			{ grep -qxE 'banger|bangerd' "$p/comm" &&
				tr '\0' '\n' <"$p/environ" |
				grep -qxF "BANGER_STATE_DIR=$WORK/state"; } 2>/dev/null; then
			echo "${p#/proc/}"
		fi
	done
	return 0
}

our_loops() {
	local f
	for f in /sys/block/loop*/loop/backing_file; do
		[ -e "$f" ] || continue
		grep -qF "$WORK" "$f" && echo "$f"
	done
	return 0
}

e2e_teardown() {
	[ -n "${WORK:-}" ] || return 0
	local leaks=""
	# Graceful first: delete every spec and let bangerd converge to nothing.
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		rm -f "$BANGER_SPEC_DIR"/*.yaml "$BANGER_SPEC_DIR"/*.yml
		wait_for 60 no_vms || true
	fi
	stop_daemon TERM
	kill_our_vmms
	local p
	for p in $(our_processes); do
		kill -KILL "$p" 2>/dev/null || true
	done
	wait_for 10 no_processes || leaks="$leaks processes:$(our_processes | tr '\n' ' ')"
	for p in $(our_loops); do
		losetup -d "/dev/$(basename "$(dirname "$(dirname "$p")")")" 2>/dev/null || true
	done
	ip netns del "$NS" 2>/dev/null || true
	[ -z "$(our_loops)" ] || leaks="$leaks loops"
	ip netns list | grep -q "^$NS\b" && leaks="$leaks netns"
	if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -s "$WORK/bangerd.log" ]; then
		# A failed test: what the daemon said last, for the CI log.
		tail -n 60 "$WORK/bangerd.log" | sed 's/^/# bangerd: /' >&3
	fi
	if [ -n "${BATS_TEST_COMPLETED:-}" ] || [ -z "$leaks" ]; then
		rm -rf "$WORK"
	else
		echo "# keeping $WORK for inspection" >&3
	fi
	[ -z "$leaks" ] || fail "teardown: leaked$leaks"
}

no_vms() {
	[ "$(bg status -o json 2>/dev/null | jq '.items | length')" = "0" ]
}

no_processes() {
	[ -z "$(our_processes)" ]
}
