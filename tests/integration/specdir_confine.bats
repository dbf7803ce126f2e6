#!/usr/bin/env bats
# specdir_confine.bats - the spec dir is a tree nobody can leave (issue #11,
# item 2), tried as an attacker who can write the spec dir would:
#  - a directory inside it exchanged with a symlink to a directory outside, in
#    a loop, while the real banger binary deletes and applies (200 attempts):
#    nothing outside is ever removed or replaced;
#  - the same swap while the loader runs ('banger validate'): nothing outside
#    is ever read.
# The daemon's side (watch count, log, status) is in specdir_daemon.bats.
# BANGER_UNDER_TEST=/path/to/banger runs these against another build (e.g. an
# older one, to see the race win there).

load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

setup() {
	TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	BANGER=${BANGER_UNDER_TEST:-$TOP/${BUILD:-build}/banger}
	[ -x "$BANGER" ] || fail "no banger binary at $BANGER (run make)"
	command -v python3 >/dev/null || fail "python3 is needed for the swap helper (make deps)"
	WORK=$(mktemp -d /tmp/bg-confine.XXXXXX)
	export BANGER_SPEC_DIR=$WORK/specs BANGER_STATE_DIR=$WORK/state
	mkdir -p "$BANGER_SPEC_DIR" "$WORK/outside" "$WORK/in"
	SWAPPER=
}

teardown() {
	if [ -n "$SWAPPER" ]; then
		kill -CONT "$SWAPPER" 2>/dev/null || true
		kill "$SWAPPER" 2>/dev/null || true
		wait "$SWAPPER" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}

vm_doc() {
	cat <<DOC
apiVersion: banger/v1
kind: VM
metadata:
  name: $1
spec:
  memoryMiB: $2
  kernel:
    path: /k/vmlinux
  rootfs:
    image: /images/$1.ext4
DOC
}

# stopped PID: wait (up to 5 s) until the process is stopped by SIGSTOP.
stopped() {
	local deadline=$((SECONDS + 5)) state
	while ((SECONDS < deadline)); do
		read -r _ _ state _ <"/proc/$1/stat" || return 1
		[ "$state" = T ] && return 0
	done
	return 1
}

@test "swap race: delete and apply never touch a file outside the spec dir (200 attempts)" {
	local S=$BANGER_SPEC_DIR i rc edited=0 refused=0 real doc left
	doc=$(vm_doc x 256)
	mkdir "$S/sub"
	printf '%s\n' "$doc" >"$S/sub/x.yaml"
	# The file an attacker wants root to remove or rewrite: same content, outside.
	vm_doc x 256 >"$WORK/outside/x.yaml"
	cp "$WORK/outside/x.yaml" "$WORK/victim"
	vm_doc x 512 >"$WORK/in/x.yaml"
	ln -s "$WORK/outside" "$S/link"

	python3 "$BATS_TEST_DIRNAME/swapdirs.py" "$S/sub" "$S/link" >"$WORK/swapper.out" 2>&1 &
	SWAPPER=$!
	for ((i = 1; i <= 200; i++)); do
		if ((i % 2)); then
			"$BANGER" delete x >"$WORK/out" 2>&1 && rc=0 || rc=$?
		else
			"$BANGER" apply -f "$WORK/in/x.yaml" >"$WORK/out" 2>&1 && rc=0 || rc=$?
		fi
		kill -STOP "$SWAPPER"
		stopped "$SWAPPER" || fail "the swapper did not stop: $(cat "$WORK/swapper.out")"
		if ! cmp -s "$WORK/outside/x.yaml" "$WORK/victim"; then
			fail "attempt $i: the file outside the spec dir was removed or replaced" \
				"($(cat "$WORK/out"))"
		fi
		left=("$WORK"/outside/*)
		[ "${left[*]}" = "$WORK/outside/x.yaml" ] ||
			fail "attempt $i: banger wrote outside the spec dir: $(ls -A "$WORK/outside")"
		if [ "$rc" = 0 ]; then edited=$((edited + 1)); else refused=$((refused + 1)); fi
		# Put the VM back, as it was, in the real directory (whichever name it has now).
		real=$S/sub
		[ -L "$real" ] && real=$S/link
		[ -d "$real" ] && [ ! -L "$real" ] || fail "no real directory in the spec dir"
		printf '%s\n' "$doc" >"$real/x.yaml"
		kill -CONT "$SWAPPER"
	done
	kill -0 "$SWAPPER" || fail "the swapper died: $(cat "$WORK/swapper.out")"
	echo "# 200 attempts: $edited edits inside the spec dir, $refused refused" >&3
	# Both outcomes happened, so the race was real: edits went through and some were refused.
	((edited > 0)) || fail "no edit ever went through ($(cat "$WORK/out"))"
	((refused > 0)) || fail "no attempt ever saw the swap"
}

@test "swap race: the loader never reads a file outside the spec dir (200 attempts)" {
	local S=$BANGER_SPEC_DIR i seen_x=0 seen_err=0 out
	mkdir "$S/sub"
	vm_doc x 256 >"$S/sub/x.yaml"
	vm_doc canary 256 >"$WORK/outside/canary.yaml"
	ln -s "$WORK/outside" "$S/link"

	python3 "$BATS_TEST_DIRNAME/swapdirs.py" "$S/sub" "$S/link" >"$WORK/swapper.out" 2>&1 &
	SWAPPER=$!
	for ((i = 1; i <= 200; i++)); do
		out=$("$BANGER" validate -f "$S" 2>&1) || true
		[[ "$out" != *canary* ]] || fail "attempt $i: the loader read the file outside: $out"
		[[ "$out" != *"valid: x"* ]] || seen_x=$((seen_x + 1))
		[[ "$out" != *"leads outside the spec directory"* ]] || seen_err=$((seen_err + 1))
	done
	kill -0 "$SWAPPER" || fail "the swapper died: $(cat "$WORK/swapper.out")"
	echo "# 200 loads: $seen_x clean (x read inside), $seen_err refused the link out" >&3
	((seen_err > 0)) || fail "the race was not exercised"
}
