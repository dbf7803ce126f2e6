#!/usr/bin/env bats
# specdir_daemon.bats - bangerd stays inside its spec dir (issue #11, item 2):
# with 'x -> /', links out and a fan-out of links inside the tree it reads no
# file outside (a canary VM there never shows up), a loader pass stays under a
# second and the inotify watches stay one per real directory; a file named
# with ESC and newline is shown escaped by 'banger validate', 'banger status'
# and in the daemon's log; Kubernetes' '..data' symlink swap is still seen.
# Each test has its own network namespace, bridge and 172.17.x subnet.

load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (network namespace, bridge)"
	TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	BANGERD=$TOP/${BUILD:-build}/bangerd
	BANGER=$TOP/${BUILD:-build}/banger
	[ -x "$BANGERD" ] || fail "no bangerd at $BANGERD (run make)"
	SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	WORK=$(mktemp -d "/tmp/bg-specd.XXXXXX")
	S=$WORK/specs
	export BANGER_SPEC_DIR=$S BANGER_STATE_DIR=$WORK/state
	mkdir -p "$S" "$WORK/outside"
	NS=bgspd-$SFX
	ip netns add "$NS"
	DPID=
}

teardown() {
	if [ -n "$DPID" ]; then
		kill "$DPID" 2>/dev/null || true
		wait "$DPID" 2>/dev/null || true
	fi
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$WORK"
	! ip netns list | grep -q "^$NS\b" || fail "netns $NS leaked"
}

vm_doc() {
	cat <<DOC
apiVersion: banger/v1
kind: VM
metadata:
  name: $1
spec:
  state: stopped
  memoryMiB: ${2:-256}
  kernel:
    path: /nonexistent/vmlinux
  rootfs:
    image: /nonexistent/$1.ext4
DOC
}

# wait_for SECONDS CMD...: run CMD until it succeeds, at most SECONDS.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	while ((SECONDS < deadline)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

log_has() { grep -qF -- "$1" "$WORK/bangerd.log"; }

start_daemon() {
	ip netns exec "$NS" "$BANGERD" --state-dir "$WORK/state" --spec-dir "$S" \
		--bridge "bgsp$SFX" --subnet "172.17.$((RANDOM % 250)).1/24" -v \
		>"$WORK/bangerd.log" 2>&1 3>&- &
	DPID=$!
	wait_for 20 log_has "ready: watching" || fail "bangerd not ready: $(cat "$WORK/bangerd.log")"
}

# The number of inotify watches bangerd holds (its inotify fd's fdinfo).
watch_count() {
	local fd n=0
	for fd in /proc/"$DPID"/fd/*; do
		[ "$(readlink "$fd")" = "anon_inode:inotify" ] || continue
		n=$((n + $(grep -c '^inotify wd:' "/proc/$DPID/fdinfo/${fd##*/}")))
	done
	echo "$n"
}

@test "x -> / and a fan-out of links: nothing outside is read, a pass under a second, watches bounded" {
	vm_doc canary >"$WORK/outside/canary.yaml"
	vm_doc inside >"$S/inside.yaml"
	ln -s / "$S/x"
	ln -s /usr "$S/usr"
	ln -s "$WORK/outside" "$S/out"
	ln -s ../../../../../../../.. "$S/up"
	ln -s "$WORK/outside/canary.yaml" "$S/canary.yaml"
	# A fan-out inside the tree: 10 directories, each linking to all 10 (and to the top).
	for i in 0 1 2 3 4 5 6 7 8 9; do mkdir "$S/d$i"; done
	for i in 0 1 2 3 4 5 6 7 8 9; do
		for j in 0 1 2 3 4 5 6 7 8 9; do ln -s "../d$j" "$S/d$i/l$j"; done
		ln -s .. "$S/d$i/top"
	done
	# And 45 links out of it, as in the issue.
	mkdir "$S/fan"
	for i in $(seq -w 1 45); do ln -s /usr "$S/fan/u$i"; done

	# One loader pass ('banger validate' runs the daemon's loader) is well under a second.
	local t0 t1
	t0=$(date +%s%N)
	run "$BANGER" validate -f "$S"
	t1=$(date +%s%N)
	assert_failure
	echo "# one pass over the tree: $(((t1 - t0) / 1000000)) ms" >&3
	(((t1 - t0) < 1000000000)) || fail "a pass took $(((t1 - t0) / 1000000)) ms"
	assert_output --partial "$S/x: leads outside the spec directory"
	assert_output --partial "$S/canary.yaml: leads outside the spec directory"
	assert_output --partial "$S/fan/u45: leads outside the spec directory"
	refute_output --partial "canary'"
	refute_output --partial "/usr/"

	start_daemon
	# The canary outside is never read: no VM of that name, nowhere in the log.
	run "$BANGER" status
	assert_output --partial "inside"
	refute_output --partial "canary'"
	refute_output --regexp "^canary"
	! grep -q "vm 'canary'" "$WORK/bangerd.log" || fail "bangerd read the canary outside"
	# One watch per real directory: the top, d0..d9 and fan (12), nothing outside.
	local n
	n=$(watch_count)
	echo "# inotify watches: $n" >&3
	[ "$n" -eq 12 ] || fail "bangerd holds $n inotify watches, want 12"
	# A change inside is still seen (level-triggered reload) and the count stays.
	vm_doc inside2 >"$S/d3/inside2.yaml"
	wait_for 10 bash -c "'$BANGER' status 2>&1 | grep -q inside2" ||
		fail "a new spec in d3 was not picked up: $("$BANGER" status 2>&1)"
	[ "$(watch_count)" -eq 12 ] || fail "watch count changed: $(watch_count)"
}

@test "a file named with ESC and newline is shown escaped in validate, status and the log" {
	local name=$'evil\e[2J\nname.yaml' shown='evil\x1b[2J\nname.yaml'
	printf 'x: [\n' >"$S/$name"
	vm_doc good >"$S/good.yaml"

	run "$BANGER" validate -f "$S"
	assert_failure
	assert_output --partial "$S/$shown"
	[[ "$output" != *$'\e'* ]] || fail "validate printed a raw ESC"

	start_daemon
	wait_for 10 log_has "$shown" || fail "the log does not name the file escaped"
	! grep -q $'\e' "$WORK/bangerd.log" || fail "a raw ESC reached the log"
	run "$BANGER" status
	assert_output --partial "$S/$shown"
	[[ "$output" != *$'\e'* ]] || fail "status printed a raw ESC"
}

@test "Kubernetes' ..data symlink swap is still seen" {
	mkdir "$S/..2026_01_01" "$S/..2026_01_02"
	vm_doc cm 256 >"$S/..2026_01_01/cm.yaml"
	# The next version is broken, so the daemon's spec errors show which one it read.
	vm_doc cm 256 | sed 's/memoryMiB: 256/memoryMiB: 1/' >"$S/..2026_01_02/cm.yaml"
	ln -s ..2026_01_01 "$S/..data"
	ln -s ..data/cm.yaml "$S/cm.yaml"

	start_daemon
	run "$BANGER" status
	assert_output --partial "cm"
	refute_output --partial "spec.memoryMiB"
	# The atomic swap, as the kubelet does it.
	ln -s ..2026_01_02 "$S/..data_tmp"
	mv -T "$S/..data_tmp" "$S/..data"
	wait_for 10 bash -c "'$BANGER' status 2>&1 | grep -q 'cm.yaml:.*spec.memoryMiB'" ||
		fail "the ..data swap was not seen: $("$BANGER" status 2>&1)"
}
