#!/bin/bash
# bench_p4.sh [-r ROUNDS] [-i IMAGE_DIR] - P4 (issue 12): a real guest under
# QEMU (TCG here), 'banger apply -f SPEC' until 'banger ssh NAME -- true'
# succeeds, vs the very QEMU command line bangerd used, started by hand with a
# fresh disk copy and tap and polled with ssh until 'true' succeeds. Rounds
# interleave the two (alternating which goes first; never both at once).
# Prints every sample, medians, min/max and the ratio product/baseline.
# As root; everything runs in a network namespace of its own (bgp<sfx>) with
# the bridge bgp<sfx>b on 172.28.20.1/24, removed at the end. Exit 77 when not
# root or a tool is missing.
set -euo pipefail
rounds=5
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/${BUILD:-build}
image=${BANGER_BENCH_IMAGE:-$top/build/image}
while getopts "r:i:h" o; do
	case $o in
	r) rounds=$OPTARG ;;
	i) image=$OPTARG ;;
	*)
		sed -n '2,10p' "$0"
		exit 2
		;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench_p4: needs root (skipped)"; exit 77; }
for t in qemu-system-x86_64 ssh ssh-keygen jq ip; do
	command -v "$t" >/dev/null || { echo "bench_p4: $t missing (skipped)"; exit 77; }
done
for f in "$image/vmlinux" "$image/initrd.gz" "$image/rootfs.ext4" "$build/bangerd" "$build/banger"; do
	[ -e "$f" ] || { echo "bench_p4: missing $f (make all image, or -i DIR)"; exit 77; }
done

sfx=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
ns=bgp$sfx
br=bgp${sfx}b
htap=bgp${sfx}h
work=$(mktemp -d "/tmp/bgp-p4-$sfx.XXXX")
export BANGER_STATE_DIR=$work/state BANGER_SPEC_DIR=$work/specs
mkdir -p "$BANGER_SPEC_DIR" "$work/base"
daemon=
hand=
spawned=

in_ns() { ip netns exec "$ns" "$@"; }
bg() { in_ns "$build/banger" "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# Processes naming our work dir in argv (the VMMs, bangerd's helpers, ours).
# (One grep over every cmdline; its pattern does not match its own argv.)
our_processes() {
	grep -alE "bgp-p4-$sfx[.]" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | grep -vx "$$" || true
}

cleanup() {
	local rc=$? leaks=""
	trap - EXIT
	trap '' INT TERM
	if [ -n "$hand" ]; then kill -KILL "$hand" 2>/dev/null || true; wait "$hand" 2>/dev/null || true; fi
	if [ -n "$daemon" ]; then
		rm -f "$BANGER_SPEC_DIR"/*.yaml
		for _ in $(seq 1 240); do
			[ "$(bg status -o json 2>/dev/null | jq '.items | length')" = "0" ] && break
			sleep 0.5
		done
		kill "$daemon" 2>/dev/null || true
		wait "$daemon" 2>/dev/null || true
	fi
	for _ in $(seq 1 40); do [ -z "$(our_processes)" ] && break; sleep 0.25; done
	[ -z "$(our_processes)" ] || leaks="$leaks processes:$(our_processes | tr '\n' ' ')"
	ip netns del "$ns" 2>/dev/null || true
	ip netns list | grep -q "^$ns\b" && leaks="$leaks netns:$ns"
	ip link show "$br" >/dev/null 2>&1 && leaks="$leaks bridge:$br"
	if [ -z "$leaks" ]; then
		rm -rf "$work"
	else
		echo "bench_p4: LEAKED$leaks (kept $work)" >&2
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up
# Not through in_ns: a function put in the background is a subshell, and $!
# must be bangerd's own pid ('ip netns exec' execs it).
ip netns exec "$ns" "$build/bangerd" --bridge "$br" --subnet 172.28.20.1/24 --resync 5s --vmm-uids off \
	--image-dir "$image" --image-dir "$work" >"$work/bangerd.log" 2>&1 &
daemon=$!
for _ in $(seq 1 120); do
	out=$(bg status 2>&1) && ! grep -qE 'never run|not running' <<<"$out" && break
	sleep 0.25
done

spec() { # NAME
	cat <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: $1}
spec:
  vcpus: 1
  memoryMiB: 256
  kernel: {path: $image/vmlinux, initrd: $image/initrd.gz}
  rootfs: {image: $image/rootfs.ext4}
YAML
}

# product NAME: apply, poll 'banger ssh NAME -- true' every 0.1 s; $secs = the seconds.
product() {
	local name=$1 t0
	spec "$name" >"$work/$name.yaml"
	t0=$(now)
	bg apply -f "$work/$name.yaml" >/dev/null
	until bg ssh "$name" -- true >/dev/null 2>&1; do
		(($(date +%s) - ${t0%.*} < 300)) || { echo "bench_p4: $name: no ssh in 300 s" >&2; return 1; }
		sleep 0.1
	done
	secs=$(elapsed "$t0")
}

# The template: one VM through bangerd (also the warm-up, not counted). Saves
# the QEMU argv bangerd used, the seed disk and the pinned host key, and the
# paths to rewrite for the hand-started copy.
template() {
	local name=p4tmpl pid id dir
	product "$name"
	pid=$(bg get "$name" -o json | jq -r .pid)
	id=$(bg get "$name" -o json | jq -r .id)
	ip=$(bg get "$name" -o json | jq -r .ip)
	dir=$BANGER_STATE_DIR/vms/$id
	tr '\0' '\n' <"/proc/$pid/cmdline" >"$work/base/argv"
	vmdir=$dir
	btap=$(grep -o 'ifname=[^,]*' "$work/base/argv" | cut -d= -f2)
	rootsz=$(stat -c %s "$(grep -o 'file=[^,]*root[^,]*' "$work/base/argv" | head -1 | cut -d= -f2)")
	for f in "$dir"/*; do
		case $f in
		*.sock | *.log | *root* | *work*) ;;
		*) [ -f "$f" ] && cp -a "$f" "$work/base/" ;;
		esac
	done
	echo "$ip $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >"$work/base/known_hosts"
	bg delete "$name" --wait --timeout 2m >/dev/null
}

# baseline N ($secs = the seconds): the saved argv with the VM dir's paths
# pointing at a fresh dir (a sparse copy of the image, which must have the size
# bangerd's disk had; copies of the boot files and of the seed disk bangerd
# made) and the tap renamed to our own; timed from the disk copy to the first
# 'ssh root@IP true' that succeeds (polled every 0.1 s); $spawned = the
# seconds from the copy to QEMU's spawn (copies, sync, tap).
baseline() {
	local d=$work/hand$1 t0
	rm -rf "$d"
	mkdir -p "$d"
	local -a argv
	mapfile -t argv < <(sed -e "s|$vmdir|$d|g" -e "s|ifname=$btap|ifname=$htap|" \
		-e "s|^banger-.*|bgp-p4-hand|" "$work/base/argv")
	t0=$(now)
	cp --sparse=always "$image/rootfs.ext4" "$d/$(basename "$(grep -o 'file=[^,]*root[^,]*' "$work/base/argv" | head -1 | cut -d= -f2)")"
	for f in "$work/base"/*; do
		case $f in */argv | */known_hosts) ;; *) cp -a "$f" "$d/" ;; esac
	done
	# bangerd fsyncs what it copies before the VMM starts; so does the baseline.
	sync "$d"/*
	in_ns ip tuntap add dev "$htap" mode tap
	in_ns ip link set "$htap" master "$br" up
	# In the namespace, as bangerd's VMMs are: ifname= names a tap of that namespace.
	# A session of its own and no stdin, as bangerd starts its VMMs.
	setsid ip netns exec "$ns" "${argv[@]}" </dev/null >>"$d/qemu.out" 2>&1 &
	hand=$!
	spawned=$(elapsed "$t0")
	# Like bangerd's probe: a 250 ms TCP connect to port 22 first, then SSH
	# (OpenSSH's ConnectTimeout is whole seconds; an unanswered ARP alone is 3 s).
	until in_ns timeout 0.25 bash -c "exec 3<>/dev/tcp/$ip/22" 2>/dev/null && in_ns ssh -q \
		-o KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org -o HostKeyAlgorithms=ssh-ed25519 \
		-o Ciphers=aes256-ctr,aes192-ctr,aes128-ctr -o MACs=hmac-sha2-256,hmac-sha2-512 -i "$BANGER_STATE_DIR/ssh/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 \
		-o UserKnownHostsFile="$work/base/known_hosts" -o StrictHostKeyChecking=yes \
		"root@$ip" true </dev/null; do
		(($(date +%s) - ${t0%.*} < 300)) || { echo "bench_p4: hand guest: no ssh in 300 s" >&2; return 1; }
		sleep 0.1
	done
	secs=$(elapsed "$t0")
	kill -KILL "$hand"
	wait "$hand" 2>/dev/null || true
	hand=
	in_ns ip link del "$htap"
	rm -rf "$d"
}

echo "bench_p4: netns $ns, bridge $br, work $work, $rounds rounds (+1 warm-up)"
template
[ "$(stat -c %s "$image/rootfs.ext4")" = "$rootsz" ] ||
	{ echo "bench_p4: banger's root disk ($rootsz) is not the image's size: the copy would differ" >&2; exit 1; }
echo "qemu argv (bangerd's, replayed by hand with paths under a fresh dir and tap $htap):"
tr '\n' ' ' <"$work/base/argv" | fold -w 160 | sed 's/^/  /'
echo
echo "round variant seconds"
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) -eq 1 ]; then order="product baseline"; else order="baseline product"; fi
	for v in $order; do
		if [ "$v" = product ]; then
			product "p4r$r"
			bg delete "p4r$r" --wait --timeout 2m >/dev/null
		else
			baseline "$r"
		fi
		echo "$r $v $secs${spawned:+ (disk copy + tap + spawn: $spawned s)}" | tee -a "$work/samples"
		spawned=
	done
done
stats() { sort -n | awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f\n", m, a[1], a[NR] }'; }
read -r pm pmin pmax < <(awk '$2 == "product" { print $3 }' "$work/samples" | stats)
read -r bm bmin bmax < <(awk '$2 == "baseline" { print $3 }' "$work/samples" | stats)
printf 'product  (apply -> banger ssh true)   median %s s  min %s  max %s  (%d rounds)\n' "$pm" "$pmin" "$pmax" "$rounds"
printf 'baseline (same qemu argv by hand)     median %s s  min %s  max %s  (%d rounds)\n' "$bm" "$bmin" "$bmax" "$rounds"
awk -v p="$pm" -v b="$bm" 'BEGIN { printf "ratio product/baseline %.3f (target <= 1.15)\n", p / b }'
