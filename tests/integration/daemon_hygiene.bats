#!/usr/bin/env bats
# daemon_hygiene.bats - bangerd's own files are private: relative --state-dir
# and --spec-dir are made absolute at start (a VM then works from them), the
# umask is 077 (banger.db and everything else bangerd creates is 0600/0700),
# and an existing state dir that others can read is repaired with a warning.
# Each test has its own network namespace, bridge and 10.x subnet.

load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (network namespace)"
	TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	BANGERD=$TOP/${BUILD:-build}/bangerd
	BANGER=$TOP/${BUILD:-build}/banger
	[ -x "$BANGERD" ] || fail "no bangerd at $BANGERD (run make)"
	SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
	WORK=$(mktemp -d "/tmp/bg-hygiene.XXXXXX")
	NS=bghyg-$SFX
	ip netns add "$NS"
}

teardown() {
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$WORK"
	! ip netns list | grep -q "^$NS\b" || fail "netns $NS leaked"
}

once() {
	(cd "$WORK" && ip netns exec "$NS" "$BANGERD" --once --state-dir state --spec-dir specs \
		--bridge "bghy$SFX" --subnet "10.$((RANDOM % 200 + 20)).$((RANDOM % 250)).1/24" -v) \
		>"$WORK/bangerd.log" 2>&1 3>&-
}

@test "relative dirs are made absolute; what bangerd creates is private" {
	run once
	assert_success
	[ "$(stat -c %a "$WORK/state")" = "700" ]
	[ "$(stat -c %a "$WORK/state/ssh")" = "700" ]
	[ "$(stat -c %a "$WORK/state/banger.db")" = "600" ]
	# Nothing under the state dir is readable by others.
	[ -z "$(find "$WORK/state" -perm /0007)" ] || fail "open to others: $(find "$WORK/state" -perm /0007)"
	# The daemon recorded its spec dir, absolute, for the CLI.
	run sqlite3 -readonly "$WORK/state/banger.db" "select spec_dir from daemon"
	assert_success
	assert_output "$WORK/specs"
}

@test "a state dir open to others is repaired with a warning" {
	mkdir -m 0755 "$WORK/state"
	mkdir -m 0777 "$WORK/state/ssh"
	run once
	assert_success
	[ "$(stat -c %a "$WORK/state")" = "750" ]
	[ "$(stat -c %a "$WORK/state/ssh")" = "770" ]
	grep -q "was open to others (mode 0755); now 0750" "$WORK/bangerd.log"
	grep -q "writable by its group" "$WORK/bangerd.log"
}

@test "a state dir others may only search (Firecracker VMs' uids need that) is left alone" {
	mkdir -m 0711 "$WORK/state"
	run once
	assert_success
	[ "$(stat -c %a "$WORK/state")" = "711" ]
	! grep -q "open to others" "$WORK/bangerd.log"
}
