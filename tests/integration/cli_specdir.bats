#!/usr/bin/env bats
# cli_specdir.bats - the real banger binary editing a spec dir, without a
# daemon: many documents deleted at once, concurrent applies to one
# multi-document file (serialised by <spec dir>/.banger.lock, none lost),
# a symlinked spec file (inside the tree; one leading out is refused), and
# '-f -' given twice. Under 'make asan' this runs
# build-asan/banger, so a heap overflow fails the test.

load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

setup() {
	TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	BANGER=$TOP/${BUILD:-build}/banger
	[ -x "$BANGER" ] || fail "no banger binary at $BANGER (run make)"
	WORK=$(mktemp -d /tmp/bg-cli-specdir.XXXXXX)
	export BANGER_SPEC_DIR=$WORK/specs BANGER_STATE_DIR=$WORK/state
	mkdir -p "$BANGER_SPEC_DIR" "$WORK/in"
}

teardown() {
	rm -rf "$WORK"
}

# vm_doc NAME MEMORY: one VM document; its rootfs image carries its name.
vm_doc() {
	cat <<EOF
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
EOF
}

# fleet MEMORY NAME...: a multi-document file.
fleet() {
	local mem=$1 first=1
	shift
	for n in "$@"; do
		[ $first -eq 1 ] || echo ---
		first=0
		vm_doc "$n" "$mem"
	done
}

@test "delete -f FILE with more documents than arguments" {
	names=(a b c d e f g h i j k l)
	fleet 256 "${names[@]}" >"$BANGER_SPEC_DIR/fleet.yaml"
	fleet 256 "${names[@]}" >"$WORK/in/fleet.yaml"
	run "$BANGER" delete -f "$WORK/in/fleet.yaml"
	assert_success
	assert_line "vm/a deleted"
	assert_line "vm/l deleted"
	[ ! -e "$BANGER_SPEC_DIR/fleet.yaml" ]
}

@test "delete NAME NAME deletes that VM once, not the next one" {
	fleet 256 a b c >"$BANGER_SPEC_DIR/abc.yaml"
	run "$BANGER" delete b b
	assert_success
	assert_output "vm/b deleted"
	run "$BANGER" validate -f "$BANGER_SPEC_DIR"
	assert_success
	assert_output "2 VMs valid: a, c"
}

@test "concurrent applies to one multi-document file lose no update" {
	names=(v0 v1 v2 v3 v4 v5 v6 v7)
	fleet 256 "${names[@]}" >"$BANGER_SPEC_DIR/fleet.yaml"
	for round in 512 1024 2048; do
		pids=()
		for n in "${names[@]}"; do
			vm_doc "$n" "$round" >"$WORK/in/$n.yaml"
			"$BANGER" apply -f "$WORK/in/$n.yaml" >"$WORK/out.$n" 2>&1 &
			pids+=($!)
		done
		for i in "${!pids[@]}"; do
			wait "${pids[$i]}" || fail "apply ${names[$i]}: $(cat "$WORK/out.${names[$i]}")"
		done
		run "$BANGER" validate -f "$BANGER_SPEC_DIR"
		assert_success
		assert_output "8 VMs valid: v0, v1, v2, v3, v4, v5, v6, v7"
		# Every VM has this round's memory and still its own image.
		for n in "${names[@]}"; do
			run "$BANGER" diff -f "$WORK/in/$n.yaml"
			assert_success
		done
		[ "$(grep -c "memoryMiB: $round" "$BANGER_SPEC_DIR/fleet.yaml")" -eq 8 ]
		for n in "${names[@]}"; do
			grep -q "image: /images/$n.ext4" "$BANGER_SPEC_DIR/fleet.yaml"
		done
	done
	# The lock file is hidden from the loader and nothing else is left behind.
	run ls -A "$BANGER_SPEC_DIR"
	assert_output $'.banger.lock\nfleet.yaml'
}

@test "a symlinked spec file is written through to its target inside the spec dir" {
	mkdir "$BANGER_SPEC_DIR/..2026_01_01"
	fleet 256 a b >"$BANGER_SPEC_DIR/..2026_01_01/ab.yaml"
	ln -s ..2026_01_01 "$BANGER_SPEC_DIR/..data"
	ln -s ..data/ab.yaml "$BANGER_SPEC_DIR/ab.yaml"
	vm_doc b 768 >"$WORK/in/b.yaml"
	run "$BANGER" apply -f "$WORK/in/b.yaml"
	assert_success
	assert_output "vm/b configured"
	[ -L "$BANGER_SPEC_DIR/ab.yaml" ]
	grep -q "memoryMiB: 768" "$BANGER_SPEC_DIR/..2026_01_01/ab.yaml"
}

@test "a symlink out of the spec dir is an error, never read or written through" {
	mkdir "$WORK/repo"
	fleet 256 a b >"$WORK/repo/ab.yaml"
	cp "$WORK/repo/ab.yaml" "$WORK/ab.before"
	ln -s "$WORK/repo/ab.yaml" "$BANGER_SPEC_DIR/ab.yaml"
	run "$BANGER" validate -f "$BANGER_SPEC_DIR"
	assert_failure
	assert_output --partial "ab.yaml: leads outside the spec directory"
	run "$BANGER" delete b
	assert_failure
	cmp "$WORK/repo/ab.yaml" "$WORK/ab.before"
}

@test "-f - given twice is a usage error and writes nothing" {
	vm_doc s 256 >"$WORK/in/s.yaml"
	run "$BANGER" apply -f - -f - <"$WORK/in/s.yaml"
	assert_failure 2
	assert_output --partial "'-' (stdin) can be given only once"
	[ ! -e "$BANGER_SPEC_DIR/s.yaml" ]
}

@test "apply: a userDataFile must resolve from the spec dir to the same content" {
	vm_doc ud 256 >"$WORK/in/ud.yaml"
	printf '  cloudInit: {userDataFile: ud-user-data}\n' >>"$WORK/in/ud.yaml"
	printf '#cloud-config\nruncmd: [[touch, /ok]]\n' >"$WORK/in/ud-user-data"
	# Valid where it is...
	run "$BANGER" validate -f "$WORK/in/ud.yaml"
	assert_success
	# ...but the file is not beside the spec dir's copy: refused, nothing written.
	run "$BANGER" apply -f "$WORK/in/ud.yaml"
	assert_failure
	assert_output --partial "userDataFile 'ud-user-data' does not resolve"
	[ ! -e "$BANGER_SPEC_DIR/ud.yaml" ]
	# Another file of that name in the spec dir: refused too.
	printf '#cloud-config\nruncmd: [[touch, /other]]\n' >"$BANGER_SPEC_DIR/ud-user-data"
	run "$BANGER" apply -f "$WORK/in/ud.yaml"
	assert_failure
	assert_output --partial "names another file"
	[ ! -e "$BANGER_SPEC_DIR/ud.yaml" ]
	# The same file there: applied.
	cp "$WORK/in/ud-user-data" "$BANGER_SPEC_DIR/ud-user-data"
	run "$BANGER" apply -f "$WORK/in/ud.yaml"
	assert_success
	assert_output --partial "vm/ud created"
	run "$BANGER" validate -f "$BANGER_SPEC_DIR"
	assert_success
}
