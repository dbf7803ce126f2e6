#!/usr/bin/env bats
# End-to-end: a real guest on banger's bridge tries to send as someone else
# (another source IPv4 address, another MAC, ARP claiming another address)
# and a neighbour -- a second network namespace on the same bridge through a
# veth -- counts what reaches it with nftables counters on its ingress. With
# banger's filter nothing spoofed arrives while the guest's own traffic does;
# with the filter deleted by hand (the control) the same attempts do arrive;
# the next resync puts the filter back; delete removes it; gc removes an
# orphan one.

load helpers

setup() {
	e2e_setup
	NB=bgnb-$SFX
	VETH=asv${SFX:0:8}
	NB_IP=$NET3.250
	SPOOF_IP=$NET3.77
	SPOOF_MAC=02:00:5e:00:00:77
	TABLE=banger-$BRIDGE
}

teardown() {
	ip netns del "$NB" 2>/dev/null || true
	e2e_teardown
	! ip netns list | grep -q "^$NB\b" || fail "teardown: netns $NB left"
}

# The neighbour: namespace $NB with $NB_IP on a veth enslaved to the bridge,
# counting on its ingress what comes from the guest's and the spoofed addresses.
make_neighbour() {
	ip netns add "$NB"
	ip -n "$NB" link set lo up
	in_ns ip link add "$VETH" type veth peer name nb0
	in_ns ip link set nb0 netns "$NB"
	in_ns ip link set "$VETH" master "$BRIDGE" up
	ip -n "$NB" addr add "$NB_IP/24" dev nb0
	ip -n "$NB" link set nb0 up
	reset_counters
}

reset_counters() {
	ip netns exec "$NB" nft -f - <<EOF
table netdev count
delete table netdev count
table netdev count {
	chain in {
		type filter hook ingress device nb0 priority 0; policy accept;
		ip saddr $GUEST_IP counter
		ip saddr $SPOOF_IP counter
		ether saddr $SPOOF_MAC counter
		arp saddr ip $SPOOF_IP counter
		arp saddr ip $GUEST_IP counter
	}
}
EOF
}

# arrived MATCH: packets counted by the neighbour's rule "MATCH counter".
arrived() {
	ip netns exec "$NB" nft list chain netdev count in |
		grep -F "$1 counter" | sed -n 's/.*packets \([0-9]*\).*/\1/p'
}

# The guest's attempts, in one SSH session: IPv4 from an address it added
# (after a legitimate ping filled its neighbour cache, so no ARP is needed),
# ARP claiming that address, then the same from a changed MAC (restored
# before the session needs its own traffic again).
spoof_attempts() {
	bg ssh a -- sh -c "
		ping -c 2 -W 1 $NB_IP >/dev/null
		ip addr add $SPOOF_IP/32 dev eth0
		ping -c 3 -W 1 -I $SPOOF_IP $NB_IP >/dev/null
		arping -c 2 -w 2 -I eth0 -s $SPOOF_IP $NB_IP >/dev/null
		ip addr del $SPOOF_IP/32 dev eth0
		ip link set dev eth0 address $SPOOF_MAC
		ping -c 2 -W 1 $NB_IP >/dev/null
		arping -c 2 -w 2 -I eth0 $NB_IP >/dev/null
		ip link set dev eth0 address $GUEST_MAC
		echo done
	" </dev/null
}

filter_rules() {
	in_ns nft list chain bridge "$TABLE" "bg$ID" 2>/dev/null | grep -c "$GUEST_MAC"
}

filter_in_place() {
	[ "$(filter_rules)" -ge 2 ] &&
		in_ns nft list map bridge "$TABLE" taps | grep -qF "\"bg$ID\" : jump bg$ID"
}

filter_gone() {
	! in_ns nft list chain bridge "$TABLE" "bg$ID" >/dev/null 2>&1 &&
		! in_ns nft list map bridge "$TABLE" taps | grep -qF "bg$ID"
}

@test "a guest cannot send from another IP or MAC; the filter is repaired on resync and removed on delete" {
	start_daemon
	vm_yaml a >"$BANGER_SPEC_DIR/a.yaml"
	wait_phase a Running
	ID=$(vm_id a)
	GUEST_IP=$(vm_field a ip)
	GUEST_MAC=$(bg ssh a -- cat /sys/class/net/eth0/address </dev/null)
	[[ "$GUEST_MAC" =~ ^02:bb: ]] || fail "guest MAC: $GUEST_MAC"
	filter_in_place
	make_neighbour

	# Filtered: the guest's own packets arrive, nothing spoofed does.
	run spoof_attempts
	echo "$output"
	assert_output --partial done
	[ "$(arrived "ip saddr $GUEST_IP")" -ge 1 ]
	[ "$(arrived "arp saddr ip $GUEST_IP")" -ge 1 ]
	[ "$(arrived "ip saddr $SPOOF_IP")" = 0 ]
	[ "$(arrived "arp saddr ip $SPOOF_IP")" = 0 ]
	[ "$(arrived "ether saddr $SPOOF_MAC")" = 0 ]

	# Control: without banger's table the very same attempts arrive. bangerd is
	# stopped meanwhile (the guest keeps running), or its resync would put the
	# table back in the middle of the attempts.
	stop_daemon TERM
	in_ns nft delete table bridge "$TABLE"
	reset_counters
	run spoof_attempts
	echo "$output"
	assert_output --partial done
	[ "$(arrived "ip saddr $SPOOF_IP")" -ge 1 ]
	[ "$(arrived "arp saddr ip $SPOOF_IP")" -ge 1 ]
	[ "$(arrived "ether saddr $SPOOF_MAC")" -ge 1 ]

	# The restarted daemon makes it again; a chain flushed under it is repaired by
	# the next resync (5 s here).
	start_daemon
	wait_for 30 filter_in_place || fail "filter not restored: $(in_ns nft list ruleset bridge)"
	in_ns nft flush chain bridge "$TABLE" "bg$ID"
	wait_for 30 filter_in_place || fail "flushed filter not repaired"
	reset_counters
	run spoof_attempts
	echo "$output"
	assert_output --partial done
	[ "$(arrived "ip saddr $GUEST_IP")" -ge 1 ]
	[ "$(arrived "ip saddr $SPOOF_IP")" = 0 ]
	[ "$(arrived "arp saddr ip $SPOOF_IP")" = 0 ]
	[ "$(arrived "ether saddr $SPOOF_MAC")" = 0 ]
	phase_is a Running

	# Delete removes the VM's chain and map element.
	rm "$BANGER_SPEC_DIR/a.yaml"
	wait_for 90 no_vms || fail "vm not deleted"
	filter_gone
}

@test "gc removes a tap filter that belongs to no VM, and only on this instance's bridge" {
	start_daemon
	vm_yaml a "state: stopped" >"$BANGER_SPEC_DIR/a.yaml"
	wait_phase a Stopped 60
	stop_daemon TERM
	# A filter left by a crash between a VM's removal and its filter's: id deadbeef.
	in_ns nft -f - <<EOF
add table bridge $TABLE
add map bridge $TABLE taps { type ifname : verdict; }
add chain bridge $TABLE bgdeadbeef
add rule bridge $TABLE bgdeadbeef drop
add element bridge $TABLE taps { "bgdeadbeef" : jump bgdeadbeef }
add table bridge banger-otherbr0
add chain bridge banger-otherbr0 bgdeadbee0
EOF
	run bg gc --dry-run
	assert_success
	assert_line "filter bgdeadbeef ($TABLE)"
	assert_line --partial "skipped filter bgdeadbee0"
	run bg gc
	assert_success
	! in_ns nft list chain bridge "$TABLE" bgdeadbeef 2>/dev/null
	! in_ns nft list map bridge "$TABLE" taps | grep -q deadbeef
	in_ns nft list chain bridge banger-otherbr0 bgdeadbee0 >/dev/null
}
