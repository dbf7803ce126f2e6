#!/bin/bash
# bench_boot.sh [-r ROUNDS] - boot-to-Running and boot-to-SSH of the reference
# image (make image) and the Debian cloud image (make image-debian) through
# bangerd with the QEMU driver, side by side: each round applies one VM of
# each kind, alternating which goes first, one at a time (never both booting
# at once), and deletes it before the next. Prints every sample and the
# medians. As root; everything runs in a network namespace of its own with a
# 10.x bridge, removed at the end.
set -euo pipefail
rounds=3
while getopts "r:h" o; do
	case $o in
	r) rounds=$OPTARG ;;
	*)
		sed -n '2,8p' "$0"
		exit 2
		;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench_boot: needs root (skipped)"; exit 77; }
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/${BUILD:-build}
ref=$top/build/image
deb=$top/build/image-debian
for f in "$ref/rootfs.ext4" "$deb/rootfs.ext4" "$build/bangerd"; do
	[ -e "$f" ] || { echo "bench_boot: missing $f (make all image image-debian)" >&2; exit 1; }
done

sfx=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
work=$(mktemp -d "/tmp/bg-bench-boot.XXXX")
ns=bgbench-$sfx
export BANGER_STATE_DIR=$work/state BANGER_SPEC_DIR=$work/specs
mkdir -p "$BANGER_SPEC_DIR"
ip netns add "$ns"
daemon=
cleanup() {
	rm -f "$BANGER_SPEC_DIR"/*.yaml
	for _ in $(seq 1 120); do
		[ "$(ip netns exec "$ns" "$build/banger" status -o json 2>/dev/null | jq '.items | length')" = "0" ] && break
		sleep 0.5
	done
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
ip netns exec "$ns" "$build/bangerd" --bridge "bgbb$sfx" --subnet "10.$((RANDOM % 200 + 20)).$((RANDOM % 250)).1/24" \
	--resync 5s --image-dir "$ref" --image-dir "$deb" >"$work/bangerd.log" 2>&1 &
daemon=$!
bg() { ip netns exec "$ns" "$build/banger" "$@"; }

spec() { # NAME DIR MEMORY USER
	cat <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: $1}
spec:
  vcpus: 2
  memoryMiB: $3
  kernel: {path: $2/vmlinux, initrd: $2/initrd.gz}
  rootfs: {image: $2/rootfs.ext4}
  ssh: {user: $4}
YAML
}

now() { date +%s.%N; }
# one KIND: apply, time to Running and to 'banger ssh -- true', delete.
one() {
	local kind=$1 name dir mem user t0 t1 t2
	case $kind in
	ref) name=ref$RANDOM dir=$ref mem=256 user=root ;;
	debian) name=deb$RANDOM dir=$deb mem=1024 user=debian ;;
	esac
	spec "$name" "$dir" "$mem" "$user" >"$work/$name.yaml"
	t0=$(now)
	bg apply -f "$work/$name.yaml" >/dev/null
	until [ "$(bg get "$name" -o json 2>/dev/null | jq -r .phase)" = "Running" ]; do
		(($(echo "$(now) - $t0 < 900" | bc))) || { echo "bench_boot: $name not Running" >&2; exit 1; }
		sleep 0.1
	done
	t1=$(now)
	until bg ssh "$name" -- true 2>/dev/null; do sleep 0.1; done
	t2=$(now)
	printf '%s %.2f %.2f\n' "$kind" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)" | tee -a "$work/samples"
	bg delete "$name" --wait --timeout 2m >/dev/null
}

echo "kind running_s ssh_s"
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) -eq 1 ]; then one ref; one debian; else one debian; one ref; fi
done
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
for k in ref debian; do
	printf 'median %-6s apply->Running %ss, apply->ssh %ss (%d rounds)\n' "$k" \
		"$(awk -v k=$k '$1 == k { print $2 }' "$work/samples" | median)" \
		"$(awk -v k=$k '$1 == k { print $3 }' "$work/samples" | median)" "$rounds"
done
