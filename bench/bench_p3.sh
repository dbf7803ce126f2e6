#!/bin/bash
# bench_p3.sh [-n N1,N2,...] [-p PASSES] [-s STATUS_RUNS] [-P] - P3 (issue 12):
# bangerd's cost at rest with N converged Running VMs, for growing N in one
# run: CPU time of one idle full resync (SIGHUP; median of PASSES), the
# daemon's RSS, and 'banger status -o json' wall time (median of STATUS_RUNS).
# The VMs run under the fast fake Firecracker (bench/fakefc.c, no guest); they
# are Running because their addresses answer SSH: a network namespace on the
# bridge holds every guest address and sshfix (bench/sshfix.c) runs OpenSSH's
# 'sshd -i' per connection with the dialled VM's own host key. The baseline is
# the smallest N of the same run (growth with N; per-VM cost printed). -P:
# after the measurements at the largest N, PASSES more passes under 'perf
# record' (cpu-clock, 1999 Hz), and the profile by library and by symbol;
# then the daemon's memory by mapping (pmap) and glibc's arenas (malloc_stats,
# called in the daemon through gdb when gdb is installed).
# As root; netns bgp<sfx> (bangerd, bridge bgp<sfx>b) and bgp<sfx>g (guests),
# 172.28.20.1/22 (172.29.0.1/16 when an N is over 1000), all removed at the
# end. Exit 77 when not root or a tool is missing.
set -euo pipefail
sizes=100,1000
passes=10
sruns=5
profile=
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/${BUILD:-build}
fakefc=$build/bench/p3-fakefc
sshfix=$build/bench/sshfix
while getopts "n:p:s:Ph" o; do
	case $o in
	n) sizes=$OPTARG ;;
	p) passes=$OPTARG ;;
	s) sruns=$OPTARG ;;
	P) profile=1 ;;
	*)
		sed -n '2,15p' "$0"
		exit 2
		;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench_p3: needs root (skipped)"; exit 77; }
for t in /usr/sbin/sshd ssh-keygen sqlite3 jq ip unshare mkfs.ext4 ${profile:+perf}; do
	command -v "$t" >/dev/null || { echo "bench_p3: $t missing (skipped)"; exit 77; }
done
for f in "$build/bangerd" "$build/banger" "$fakefc" "$sshfix"; do
	[ -x "$f" ] || { echo "bench_p3: missing $f (make bench-p3 builds it)"; exit 77; }
done
IFS=, read -r -a ns_list <<<"$sizes"
max=0
for n in "${ns_list[@]}"; do ((n > max)) && max=$n; done
if ((max <= 1000)); then
	subnet=172.28.20.1/22 base=$((172 << 24 | 28 << 16 | 20 << 8)) plen=22
else
	subnet=172.29.0.1/16 base=$((172 << 24 | 29 << 16)) plen=16
fi

sfx=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ns=bgp$sfx
gns=bgp${sfx}g
br=bgp${sfx}b
veth=bgp${sfx}v
work=$(mktemp -d "/tmp/bgp-p3-$sfx.XXXX")
chmod 0711 "$work"
export BANGER_STATE_DIR=$work/state BANGER_SPEC_DIR=$work/specs
db=$BANGER_STATE_DIR/banger.db
mkdir -p "$BANGER_SPEC_DIR" "$work/keys" "$work/img" "$work/stage"
daemon=
fixer=

in_ns() { ip netns exec "$ns" "$@"; }
bg() { "$build/banger" "$@"; } # status reads the store: no namespace needed
q() { sqlite3 -readonly "$db" "$1" 2>/dev/null; }
now_ns() { date +%s%N; }
ip4() { echo "$(($1 >> 24 & 255)).$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))"; }

# (One grep over every cmdline; its pattern does not match its own argv.)
our_processes() {
	grep -alE "bgp-p3-$sfx[.]" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | grep -vx "$$" || true
}

cleanup() {
	local rc=$? leaks="" p
	trap - EXIT
	trap '' INT TERM
	# Deleting 1,000 VMs one by one is P2's subject and takes minutes here: stop
	# bangerd, end the VMMs it started for us (argv names our work dir), and let
	# the namespaces take the bridge, taps, veth and nftables tables with them.
	# (bangerd reads SIGTERM between passes, and a pass at 1,000 VMs is long.)
	if [ -n "$daemon" ]; then
		kill "$daemon" 2>/dev/null || true
		for _ in $(seq 1 40); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.25; done
		kill -KILL "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	for p in $(our_processes); do [ "$p" = "$fixer" ] || kill -KILL "$p" 2>/dev/null || true; done
	if [ -n "$fixer" ]; then kill "$fixer" 2>/dev/null || true; wait "$fixer" 2>/dev/null || true; fi
	for _ in $(seq 1 40); do [ -z "$(our_processes)" ] && break; sleep 0.25; done
	[ -z "$(our_processes)" ] || leaks="$leaks processes:$(our_processes | head -5 | tr '\n' ' ')"
	ip netns del "$gns" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	for p in "$ns" "$gns"; do ip netns list | grep -q "^$p\b" && leaks="$leaks netns:$p"; done
	ip link show "$br" >/dev/null 2>&1 && leaks="$leaks bridge:$br"
	ip link show "$veth" >/dev/null 2>&1 && leaks="$leaks veth:$veth"
	nft list table bridge "banger-$br" >/dev/null 2>&1 && leaks="$leaks nft:banger-$br"
	if [ -z "$leaks" ]; then
		rm -rf "$work"
		echo "bench_p3: cleaned up, nothing leaked"
	else
		echo "bench_p3: LEAKED$leaks (kept $work)" >&2
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A tiny root image and boot files: the fake VMM reads none of them, bangerd
# copies them into every VM's dir.
truncate -s 8M "$work/img/rootfs.ext4"
mkfs.ext4 -q -F "$work/img/rootfs.ext4"
head -c 4096 /dev/zero >"$work/img/vmlinux"

ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns add "$gns"
ip -n "$gns" link set lo up
# bangerd (its own bridge in its namespace); --resync 1h: only SIGHUP runs a full pass.
# Not through in_ns: $! must be bangerd's own pid ('ip netns exec' execs it).
ip netns exec "$ns" "$build/bangerd" --bridge "$br" --subnet "$subnet" --resync 3600 --vmm firecracker \
	--firecracker "$fakefc" --skip-kvm-check --image-dir "$work/img" >"$work/bangerd.log" 2>&1 &
daemon=$!
for _ in $(seq 1 120); do
	[ -s "$BANGER_STATE_DIR/ssh/id_ed25519.pub" ] && break
	sleep 0.25
done
cp "$BANGER_STATE_DIR/ssh/id_ed25519.pub" "$work/authorized_keys"

# The guests' side: a veth with every address bangerd will lease (leases
# count up from .2) on the far end, and sshfix listening for all of them. The
# near end joins the bridge once bangerd has made it (with its first VM).
in_ns ip link add "$veth" type veth peer name eth0 netns "$gns"
{
	for i in $(seq 2 $((max + 41))); do echo "addr add $(ip4 $((base + i)))/$plen dev eth0"; done
	echo "link set eth0 up"
} | ip -n "$gns" -batch -
ip netns exec "$gns" unshare -m --propagation private sh -c \
	"mount -t tmpfs bgp-run /run && mkdir -m 0755 /run/sshd && exec $sshfix --keys $work/keys --authorized $work/authorized_keys" \
	>"$work/sshfix.log" 2>&1 &
fixer=$!
joined=
join_bridge() {
	[ -z "$joined" ] && in_ns ip link show "$br" >/dev/null 2>&1 || return 0
	in_ns ip link set "$veth" master "$br" up
	joined=1
}

spec() { # NAME
	cat <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: $1}
spec:
  vcpus: 1
  memoryMiB: 128
  kernel: {path: $work/img/vmlinux}
  rootfs: {image: $work/img/rootfs.ext4}
YAML
}

# Key entries for VMs with an address: keys/<ip> -> that VM's host key.
link_keys() {
	local id addr
	while IFS='|' read -r id addr; do
		[ -n "$addr" ] && [ ! -e "$work/keys/$addr" ] || continue
		ln -sfn "$BANGER_STATE_DIR/vms/$id/ssh_host_ed25519_key" "$work/keys/$addr"
	done < <(q "SELECT id, ip FROM vms WHERE ip IS NOT NULL")
}

# grow N: specs up to N VMs, then wait until all N are Running.
have=0
grow() {
	local n=$1 t0 running=0 last= state stall
	for i in $(seq $((have + 1)) "$n"); do spec "vm$i" >"$work/stage/vm$i.yaml"; done
	t0=$SECONDS
	mv "$work/stage"/*.yaml "$BANGER_SPEC_DIR/" 2>/dev/null || true
	have=$n
	stall=$SECONDS
	while :; do
		join_bridge
		link_keys
		running=$(q "SELECT count(*) FROM vms WHERE phase = 'Running'")
		[ "${running:-0}" -ge "$n" ] && break
		# Stuck = no VM made or changed phase for 10 min (one pass that creates
		# hundreds of VMs changes no phase to Running for minutes).
		state=$(q "SELECT phase, count(*) FROM vms GROUP BY phase" | tr '\n' ' ')
		if [ "$state" != "$last" ]; then last=$state stall=$SECONDS; fi
		((SECONDS - stall < 600)) || {
			echo "bench_p3: stuck at $running/$n Running; phases: $(q "SELECT phase, count(*) FROM vms GROUP BY phase" | tr '\n' ' ')" >&2
			tail -n 20 "$work/bangerd.log" >&2
			return 1
		}
		sleep 0.5
	done
	echo "bench_p3: $n VMs Running ($((SECONDS - t0)) s to converge the new ones)"
}

# CPU ns of bangerd: the sum of its threads' schedstat run times.
cpu_ns() {
	cat /proc/"$daemon"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# One idle full pass: SIGHUP, wait for last_resync to move; prints CPU ms and wall ms.
one_pass() {
	local before after c0 c1 t0 t1
	before=$(q "SELECT last_resync FROM daemon")
	c0=$(cpu_ns)
	t0=$(now_ns)
	kill -HUP "$daemon"
	while :; do
		after=$(q "SELECT last_resync FROM daemon")
		[ -n "$after" ] && [ "$after" != "$before" ] && break
		sleep 0.01
	done
	t1=$(now_ns)
	c1=$(cpu_ns)
	awk -v c=$((c1 - c0)) -v w=$((t1 - t0)) 'BEGIN { printf "%.2f %.1f\n", c / 1e6, w / 1e6 }'
}

measure() {
	local n=$1 cpu rss hwm st t0 ticks0 ticks1
	# Settle: one pass not counted (the first after growth re-does what changed).
	one_pass >/dev/null
	# stat's utime+stime (10 ms ticks) over all passes: a cross-check of schedstat;
	# cutime+cstime (reaped children) must not move in an idle pass.
	ticks0=$(awk '{ print $14 + $15 }' "/proc/$daemon/stat")
	cticks0=$(awk '{ print $16 + $17 }' "/proc/$daemon/stat")
	: >"$work/passes"
	for _ in $(seq 1 "$passes"); do one_pass >>"$work/passes"; done
	ticks1=$(awk '{ print $14 + $15 }' "/proc/$daemon/stat")
	cticks1=$(awk '{ print $16 + $17 }' "/proc/$daemon/stat")
	cpu=$(awk '{ print $1 }' "$work/passes" | median)
	wall=$(awk '{ print $2 }' "$work/passes" | median)
	rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$daemon/status")
	hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$daemon/status")
	: >"$work/status"
	for _ in $(seq 1 "$sruns"); do
		t0=$(now_ns)
		bg status -o json >"$work/status.json"
		echo $((($(now_ns) - t0) / 1000)) >>"$work/status"
	done
	[ "$(jq '.items | length' "$work/status.json")" = "$n" ] || { echo "bench_p3: status lists $(jq '.items | length' "$work/status.json") VMs, not $n" >&2; return 1; }
	st=$(median <"$work/status")
	echo "$n $cpu $wall $(((ticks1 - ticks0) * 10 / passes)) $rss $hwm $st $(awk '{ printf "%s/%s ", $1, $2 }' "$work/passes")" >>"$work/results"
	printf '  N=%d: cpu/pass %s ms (median of %d; stat ticks avg %d ms, children %d ms), wall/pass %s ms, RSS %d KiB (peak %d), status -o json %.1f ms\n' \
		"$n" "$cpu" "$passes" $(((ticks1 - ticks0) * 10 / passes)) $(((cticks1 - cticks0) * 10 / passes)) "$wall" "$rss" "$hwm" "$(awk -v u="$st" 'BEGIN { print u / 1000 }')"
}

echo "bench_p3: netns $ns (+$gns), bridge $br, $subnet, work $work; N = $sizes, $passes passes, $sruns status runs"
: >"$work/results"
for n in "${ns_list[@]}"; do
	grow "$n"
	measure "$n"
done
if [ -n "$profile" ]; then
	perf record -q -o "$work/perf.data" -e cpu-clock -F 1999 -g -p "$daemon" >/dev/null 2>&1 &
	perfpid=$!
	sleep 1
	for _ in $(seq 1 "$passes"); do one_pass >/dev/null; done
	kill -INT "$perfpid"
	wait "$perfpid" || true
	echo "profile of $passes idle passes at N=$have (perf, cpu-clock), by library:"
	perf report -i "$work/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep '%' | grep -v '^#' | head -10 || true
	echo "by symbol:"
	perf report -i "$work/perf.data" --stdio --no-children --sort dso,sym -g none 2>/dev/null | grep '%' | grep -v '^#' | head -40 || true
	echo "memory at N=$have: the largest mappings by RSS (pmap -x: KiB), then glibc's arenas (malloc_stats via gdb):"
	pmap -x "$daemon" | awk 'NR > 2 && $1 != "total" && $3 ~ /^[0-9]+$/ {
		m = $6; for (i = 7; i <= NF; i++) m = m " " $i; print $3, m }' | sort -rn | head -8 || true
	if command -v gdb >/dev/null; then
		gdb -p "$daemon" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
		grep -E '^(Arena|system bytes|in use bytes|Total|max mmap)' "$work/bangerd.log" | tail -12 || true
	fi
	echo "by symbol, with children (what each call costs in all):"
	perf report -i "$work/perf.data" --stdio --children --sort sym -g none 2>/dev/null | grep '%' | grep -v '^#' | grep -v '\[k\]' | head -40 || true
fi
echo
echo "     N  cpu_ms/pass  wall_ms/pass  ticks_ms/pass  RSS_MiB  status_ms  cpu_us/VM  RSS_KiB/VM(above first N)"
read -r n0 _ _ _ r0 _ _ < <(head -1 "$work/results")
while read -r n cpu wall ticks rss hwm st rest; do
	awk -v n="$n" -v c="$cpu" -v w="$wall" -v t="$ticks" -v r="$rss" -v s="$st" -v n0="$n0" -v r0="$r0" 'BEGIN {
		printf "%6d  %11.2f  %12.1f  %13d  %7.1f  %9.1f  %9.1f  %s\n", n, c, w, t, r / 1024, s / 1000, c * 1000 / n,
			(n > n0) ? sprintf("%.1f", (r - r0) / (n - n0)) : "-" }'
done <"$work/results"
echo "per-pass samples (cpu_ms/wall_ms):"
awk '{ printf "  N=%s:", $1; for (i = 8; i <= NF; i++) printf " %s", $i; printf "\n" }' "$work/results"
echo "targets at 1000: cpu/pass <= 20 ms, RSS <= 20 MiB, status -o json <= 100 ms"
