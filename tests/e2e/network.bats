#!/usr/bin/env bats
# End-to-end: a real guest's egress and port forwards (spec.network.egress,
# spec.network.ports) as nftables rules in banger's table. Everything lives in
# the test's namespace (bangerd, the bridge, the guests) plus one more
# namespace, "outside", joined to it by a veth pair on a subnet of its own: it
# stands in for the internet (a TCP server the guests try to reach) and for
# another host (a client of the forwards). Nothing outside these namespaces is
# touched.

load helpers

setup() {
	e2e_setup
	OUT=bgout-$SFX
	OVETH=bgo${SFX:0:8}
	ONET3=172.$((16 + RANDOM % 16)).$((RANDOM % 250))
	HOST_OUT_IP=$ONET3.1 # the test namespace's end: "the host" as others see it
	OUT_IP=$ONET3.2
	TABLE=banger-$BRIDGE
	SERVER_PID=
}

teardown() {
	[ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
	[ -z "$SERVER_PID" ] || wait "$SERVER_PID" 2>/dev/null || true
	ip netns del "$OUT" 2>/dev/null || true
	e2e_teardown
	! ip netns list | grep -q "^$OUT\b" || fail "teardown: netns $OUT left"
}

# The outside: namespace $OUT at $OUT_IP, routed back to the guests' subnet
# through the test namespace (so only banger's rules decide what gets through).
make_outside() {
	peer_ns "$OUT" "$OVETH" "$HOST_OUT_IP/24" "$OUT_IP/24"
	ip -n "$OUT" route add "$NET3.0/24" via "$HOST_OUT_IP"
}

# A TCP server in $OUT on port 7070 that answers "outside-ok" and logs each
# client's address to $WORK/peers.
start_outside_server() {
	ip netns exec "$OUT" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7070))
s.listen(16)
open(sys.argv[1] + ".ready", "w").close()
while True:
    c, peer = s.accept()
    with open(sys.argv[1], "a") as f:
        f.write(peer[0] + "\n")
    c.sendall(b"outside-ok\n")
    c.close()
' "$WORK/peers" 3>&- &
	SERVER_PID=$!
	wait_for 10 test -e "$WORK/peers.ready" || fail "outside server did not start"
}

# Does guest NAME reach the outside server? (bounded: nc gives up after 3 s)
reaches_outside() {
	bg ssh "$1" -- sh -c "nc -w 3 $OUT_IP 7070 </dev/null" </dev/null 2>/dev/null |
		grep -q outside-ok
}

# http_get NETNS HOST PORT: the body the guest's httpd serves, through a forward.
http_get() {
	ip netns exec "$1" timeout 5 bash -c \
		'exec 3<>/dev/tcp/$0/$1 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' \
		"$2" "$3" 2>/dev/null | tail -n 1
}

cannot_reach_outside() {
	! reaches_outside "$1"
}

# get_is NETNS HOST PORT WANT: the forward answers WANT.
get_is() {
	[ "$(http_get "$1" "$2" "$3")" = "$4" ]
}

no_net_error() {
	[ "$(bg status "$1" -o json | jq -r .netError)" = null ]
}

# A web server in guest NAME on ports 80 and 81, serving "hello-NAME".
guest_httpd() {
	bg ssh "$1" -- sh -c "mkdir -p /tmp/www && echo hello-$1 >/tmp/www/index.html &&
		httpd -p 80 -h /tmp/www && httpd -p 81 -h /tmp/www && echo started" </dev/null |
		grep -q started
}

# The VM's egress chains and its anti-spoofing chain are there again.
rules_back() {
	in_ns nft list table ip "$TABLE" 2>/dev/null | grep -q "chain bg$1-masq" &&
		in_ns nft list table bridge "$TABLE" 2>/dev/null | grep -q "chain bg$1 "
}

# Count what comes in from the bridge to 127.0.0.0/8, after banger's input chain.
count_loopback() {
	printf '%s\n' "table ip bgcount {" "chain in {" \
		"type filter hook input priority 10; policy accept;" \
		"iifname \"$BRIDGE\" ip daddr 127.0.0.0/8 counter" "}" "}" | in_ns nft -f -
}

# Guest b pings the host's loopback through the bridge (it cannot get an answer).
loopback_attempt() {
	bg ssh b -- ping -c 2 -W 1 127.0.0.2 </dev/null >/dev/null 2>&1 || true
}

delivered_to_loopback() {
	in_ns nft list chain ip bgcount in | sed -n 's/.*packets \([0-9]*\).*/\1/p'
}

rules_of() {
	in_ns nft list table ip "$TABLE" 2>/dev/null | grep -c "bg$1" || true
}

@test "egress nat reaches the outside masqueraded, none does not, live; flushed rules come back on resync" {
	start_daemon
	make_outside
	start_outside_server
	vm_yaml a "network: {egress: nat}" >"$BANGER_SPEC_DIR/a.yaml"
	wait_phase a Running
	PID=$(vm_pid a)

	wait_for 20 reaches_outside a || fail "egress nat: the guest cannot reach the outside"
	# Masqueraded: the outside saw the host's address, never the guest's.
	grep -qx "$HOST_OUT_IP" "$WORK/peers"
	! grep -qx "$(vm_field a ip)" "$WORK/peers"

	# Live to none: no restart, and new connections out are dropped.
	vm_yaml a "network: {egress: none}" >"$BANGER_SPEC_DIR/a.yaml"
	wait_for 20 cannot_reach_outside a || fail "egress none: the guest still reaches the outside"
	[ "$(vm_pid a)" = "$PID" ]
	run bg status a -o json
	[ "$(jq -r .egress <<<"$output")" = none ]

	# Back to nat; then someone flushes every rule: the next resync puts them back.
	vm_yaml a "network: {egress: nat}" >"$BANGER_SPEC_DIR/a.yaml"
	wait_for 20 reaches_outside a
	# The control: bangerd paused (SIGSTOP, so no resync can repair it yet), without
	# banger's rules the outside (it has a route back) sees the guest's own address.
	kill -STOP "$DAEMON_PID"
	in_ns nft flush ruleset
	[ -z "$(in_ns nft list ruleset)" ]
	: >"$WORK/peers"
	reaches_outside a || { kill -CONT "$DAEMON_PID"; fail "no route without the rules?"; }
	kill -CONT "$DAEMON_PID"
	grep -qx "$(vm_field a ip)" "$WORK/peers" || fail "not unmasqueraded after the flush?"
	wait_for 20 rules_back "$(vm_id a)" || fail "rules not back after a flush: $(in_ns nft list ruleset)"
	: >"$WORK/peers"
	reaches_outside a
	grep -qx "$HOST_OUT_IP" "$WORK/peers" || fail "not masqueraded again: $(cat "$WORK/peers")"
	[ "$(vm_pid a)" = "$PID" ]

	ID=$(vm_id a)
	rm "$BANGER_SPEC_DIR/a.yaml"
	wait_for 60 no_vms
	[ "$(rules_of "$ID")" = 0 ] || fail "rules of bg$ID left: $(in_ns nft list ruleset)"
}

@test "forwards reach a guest from the host and from outside; a second VM on a held port gets an error; delete removes every rule" {
	start_daemon
	make_outside
	vm_yaml a "network:" "  ports:" "    - {hostPort: 18080, guestPort: 80}" \
		"    - {hostPort: 18081, guestPort: 81, hostIP: 0.0.0.0}" >"$BANGER_SPEC_DIR/a.yaml"
	wait_phase a Running
	PID_A=$(vm_pid a)
	ID_A=$(vm_id a)
	guest_httpd a

	# 127.0.0.1 from the host itself; 0.0.0.0 from another host too; 127.0.0.1 only locally.
	wait_for 20 get_is "$NS" 127.0.0.1 18080 hello-a ||
		fail "127.0.0.1:18080 does not reach the guest: $(http_get "$NS" 127.0.0.1 18080)"
	[ "$(http_get "$OUT" "$HOST_OUT_IP" 18081)" = hello-a ]
	[ "$(http_get "$NS" 127.0.0.1 18081)" = hello-a ]
	[ -z "$(http_get "$OUT" "$HOST_OUT_IP" 18080)" ]
	run bg status a -o json
	[ "$(jq -r '.ports | length' <<<"$output")" = 2 ]
	[ "$(jq -r .dnsName <<<"$output")" = a.vm ]
	run bg describe a
	assert_output --partial "Rules in place"
	assert_output --partial "18080"

	# b asks for a's port: it runs, says why it has no forward, and a keeps it.
	vm_yaml b "network:" "  ports:" "    - {hostPort: 18080, guestPort: 80}" \
		>"$BANGER_SPEC_DIR/b.yaml"
	wait_phase b Running
	guest_httpd b
	run bg status b -o json
	echo "$output"
	jq -r .netError <<<"$output" | grep -q "host port 127.0.0.1:18080/tcp is already forwarded to vm 'a'"
	run bg status -o wide
	assert_output --partial "already forwarded to vm 'a'"
	[ "$(http_get "$NS" 127.0.0.1 18080)" = hello-a ]

	# a moves its forward, live: no restart; the freed port goes to b on a resync.
	vm_yaml a "network:" "  ports:" "    - {hostPort: 18090, guestPort: 80}" \
		>"$BANGER_SPEC_DIR/a.yaml"
	wait_for 20 get_is "$NS" 127.0.0.1 18090 hello-a
	[ "$(vm_pid a)" = "$PID_A" ]
	[ -z "$(http_get "$OUT" "$HOST_OUT_IP" 18081)" ]
	wait_for 20 get_is "$NS" 127.0.0.1 18080 hello-b ||
		fail "b did not get the freed port: $(bg status -o wide)"
	wait_for 10 no_net_error b

	# The bridge has route_localnet (a's 127.0.0.1 forward), yet guest b, as root,
	# routing 127.0.0.0/8 to its gateway, does not reach the host's loopback.
	count_loopback
	bg ssh b -- sh -c "ip link set lo down; ip route flush table local dev lo;
		echo 1 >/proc/sys/net/ipv4/conf/eth0/route_localnet &&
		ip route add 127.0.0.0/8 via $NET3.1 dev eth0 && ip route get 127.0.0.2" </dev/null \
		>"$WORK/route" 2>&1 || true
	grep -q "via $NET3.1" "$WORK/route" || fail "guest route: $(cat "$WORK/route")"
	loopback_attempt
	[ "$(delivered_to_loopback)" = 0 ] || fail "a guest reached the host's 127.0.0.0/8"
	# Control: bangerd paused, its input chain flushed: the same attempt gets in.
	kill -STOP "$DAEMON_PID"
	in_ns nft flush chain ip "$TABLE" input
	loopback_attempt
	kill -CONT "$DAEMON_PID"
	[ "$(delivered_to_loopback)" -gt 0 ] ||
		fail "control: the attempt never reached the host ($(cat "$WORK/route"); $(in_ns nft list table ip bgcount))"
	in_ns nft delete table ip bgcount

	ID_B=$(vm_id b)
	rm "$BANGER_SPEC_DIR/a.yaml" "$BANGER_SPEC_DIR/b.yaml"
	wait_for 60 no_vms
	[ "$(rules_of "$ID_A")" = 0 ] && [ "$(rules_of "$ID_B")" = 0 ] ||
		fail "rules left: $(in_ns nft list ruleset)"
	[ -z "$(http_get "$NS" 127.0.0.1 18090)" ]
}
