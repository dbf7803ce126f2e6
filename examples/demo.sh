#!/bin/bash
# demo.sh - banger end to end on this machine (run by 'make demo', as root):
# start bangerd on a temporary state dir, apply examples/hello.yaml, wait until
# the VM is Running (its guest answers SSH), run a command in the guest over
# SSH, show status, delete the VM and clean up after itself.
#
# bangerd and the guest live in a network namespace made for the demo, so the
# bridge, tap and guest traffic never touch the host's own interfaces.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
banger=$top/build/banger
bangerd=$top/build/bangerd
example=$top/examples/hello.yaml

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (bangerd creates a bridge, a tap and disks)" >&2
	exit 1
fi
for f in /var/lib/banger/images/banger-base/vmlinux /var/lib/banger/images/banger-base/rootfs.ext4; do
	[ -e "$f" ] || { echo "demo: $f missing: run 'make install-image'" >&2; exit 1; }
done

work=$(mktemp -d /tmp/banger-demo.XXXXXX)
ns=banger-demo-$$
daemon_pid=
export BANGER_STATE_DIR=$work/state BANGER_SPEC_DIR=$work/specs

cleanup() {
	set +e
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		# Whatever is still running belongs to this demo: delete it through banger first.
		ip netns exec "$ns" "$banger" delete hello --wait --timeout 60s >/dev/null 2>&1
		kill -TERM "$daemon_pid"
		wait "$daemon_pid" 2>/dev/null
	fi
	ip netns del "$ns" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting bangerd (state in $work/state, network namespace $ns)"
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$BANGER_SPEC_DIR"
ip netns exec "$ns" "$bangerd" --resync 10s --image-dir /var/lib/banger/images \
	>"$work/bangerd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
	[ -e "$work/state/banger.db" ] && break
	sleep 0.1
done

step "banger apply -f examples/hello.yaml --wait"
t0=$(date +%s.%N)
ip netns exec "$ns" "$banger" apply -f "$example" --wait --timeout 5m
printf 'hello is Running after %.1fs\n' "$(echo "$(date +%s.%N) - $t0" | bc)"

step "banger ssh hello -- uname -a"
ip netns exec "$ns" "$banger" ssh hello -- uname -a

step "banger status -o wide"
ip netns exec "$ns" "$banger" status -o wide

step "banger delete hello --wait"
ip netns exec "$ns" "$banger" delete hello --wait --timeout 2m

step "bangerd log"
tail -n 20 "$work/bangerd.log"
echo
echo "demo: done; cleaning up"
