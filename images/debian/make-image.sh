#!/bin/sh
# make-image.sh OUTDIR - 'make image-debian': put the Debian guest
# (vmlinux, initrd.gz, rootfs.ext4; images/debian/build.sh) into OUTDIR,
# from a cache outside the clone when one was built from the same inputs.
#
# The cache key is a hash of the inputs: every file under images/debian/
# (build and customize scripts, package list, overlay), extract-vmlinux.sh,
# the host's apt sources, the Date of the host's apt Release files (an
# 'apt-get update' that sees a new point release or security update changes
# it) and the mmdebstrap version. OUTDIR/.key records the key it holds.
#
# Environment:
#   BANGER_IMAGE_CACHE  the cache directory (default /var/cache/banger/image-debian;
#                       an empty value disables the cache). Entries are <key>/,
#                       the newest BANGER_IMAGE_CACHE_KEEP (default 3) are kept.
set -eu

out=$1
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${BANGER_IMAGE_CACHE-/var/cache/banger/image-debian}
keep=${BANGER_IMAGE_CACHE_KEEP:-3}
files="vmlinux initrd.gz rootfs.ext4 kernel-release packages.txt"

key=$(
	cd "$top"
	find images/debian images/extract-vmlinux.sh \( -type f -o -type l \) | LC_ALL=C sort |
		while IFS= read -r f; do
			if [ -L "$f" ]; then
				echo "link $f $(readlink "$f")"
			else
				echo "file $f $(stat -c %a "$f") $(sha256sum <"$f" | cut -c1-64)"
			fi
		done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -s "$f" ] && { echo "sources $f"; cat "$f"; }
	done
	for f in /var/lib/apt/lists/*Release; do
		[ -s "$f" ] && echo "release $(basename "$f") $(grep -m1 '^Date:' "$f")"
	done
	mmdebstrap --version 2>/dev/null || echo "no mmdebstrap"
) || exit 1
key=$(printf '%s\n' "$key" | sha256sum | cut -c1-16)

have() {
	for f in $files; do
		[ -s "$1/$f" ] || return 1
	done
}

# One make at a time per output directory.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9

if have "$out" && [ "$(cat "$out/.key" 2>/dev/null)" = "$key" ]; then
	echo "image-debian: up to date $key ($out)"
	exit 0
fi

new=$out.new
rm -rf "$new"
if [ -n "$cache" ] && have "$cache/$key"; then
	echo "image-debian: cached $key ($cache/$key)"
	mkdir -p "$new"
	for f in $files; do
		cp --reflink=auto --sparse=always "$cache/$key/$f" "$new/$f"
	done
else
	echo "image-debian: building $key"
	start=$(date +%s)
	"$here/build.sh" "$new"
	echo "image-debian: built in $(($(date +%s) - start))s"
	if [ -n "$cache" ]; then
		mkdir -p "$cache"
		tmp=$cache/.$key.$$
		rm -rf "$tmp"
		mkdir -p "$tmp"
		for f in $files; do
			cp --reflink=auto --sparse=always "$new/$f" "$tmp/$f"
		done
		rm -rf "${cache:?}/$key"
		mv "$tmp" "$cache/$key"
		echo "image-debian: stored $key in $cache"
		# Keep the newest few entries.
		ls -1dt "$cache"/*/ 2>/dev/null | tail -n +$((keep + 1)) | while IFS= read -r d; do
			rm -rf "$d"
		done
	fi
fi
echo "$key" >"$new/.key"
rm -rf "$out"
mv "$new" "$out"
ls -lsh "$out" | sed 's/^/image-debian: /'
