#!/bin/sh
# extract-vmlinux.sh BZIMAGE OUT - write the uncompressed ELF kernel inside an
# x86 bzImage to OUT. QEMU boots it through its PVH entry point and
# Firecracker only accepts this format.
#
# The x86 boot protocol header says where the compressed payload is:
# setup_sects (1 byte at 0x1f1; 0 means 4) gives the size of the real-mode
# part, (setup_sects + 1) * 512 bytes; payload_offset (0x248) and
# payload_length (0x24c) locate the payload inside the protected-mode part.
# The payload's magic says which compressor the kernel was built with (Debian
# uses LZ4); the build appends the uncompressed size as 4 little-endian bytes,
# which we use to check the result. Kernels too old to have payload_offset are
# handled by scanning for the magic.
set -eu

img=$1
out=$2
tmp=$out.tmp

# u8/u32 LE at byte offset: od prints them in host order (x86 is LE).
rd() { od -An -t "u$2" -j "$1" -N "$2" "$img" | tr -d ' \n'; }
magic_at() { od -An -tx1 -j "$1" -N 6 "$img" | tr -d ' \n'; }

decompressor() {
	case $1 in
	02214c18*) echo "lz4 -dc" ;;
	1f8b08* | 1f8b09*) echo "gzip -dc" ;;
	fd377a585a00) echo "xz -dc" ;;
	28b52ffd*) echo "zstd -dc" ;;
	5d0000*) echo "xz -dc --format=lzma" ;;
	425a68*) echo "bzip2 -dc" ;;
	*) return 1 ;;
	esac
}

is_elf() { [ "$(od -An -tx1 -N 4 "$1" | tr -d ' \n')" = 7f454c46 ]; }

# try OFFSET LENGTH: decompress LENGTH bytes at OFFSET (LENGTH 0: to the end).
try() {
	m=$(magic_at "$1")
	cmd=$(decompressor "$m") || return 1
	if [ "$2" -gt 0 ]; then
		size=$(rd $(($1 + $2 - 4)) 4)
		# Strip the size trailer (gzip carries it in its own footer).
		case $cmd in gzip*) n=$2 ;; *) n=$(($2 - 4)) ;; esac
		dd if="$img" bs=1M iflag=skip_bytes,count_bytes skip="$1" count="$n" \
			status=none | $cmd >"$tmp" 2>/dev/null || return 1
		[ "$(stat -c %s "$tmp")" = "$size" ] || return 1
	else
		# No length: decompressors complain about trailing data; judge the output.
		tail -c +$(($1 + 1)) "$img" | $cmd >"$tmp" 2>/dev/null || true
	fi
	is_elf "$tmp" && echo "extract-vmlinux: ${cmd%% *} payload at offset $1" >&2
}

if [ "$(od -An -c -j $((0x202)) -N 4 "$img" | tr -d ' \n')" != HdrS ]; then
	echo "extract-vmlinux: $img is not a bzImage" >&2
	exit 1
fi
setup_sects=$(rd $((0x1f1)) 1)
if [ "$setup_sects" -eq 0 ]; then setup_sects=4; fi
version=$(rd $((0x206)) 2)

ok=0
if [ "$version" -ge $((0x208)) ]; then
	off=$(((setup_sects + 1) * 512 + $(rd $((0x248)) 4)))
	try "$off" "$(rd $((0x24c)) 4)" && ok=1
fi
if [ $ok -eq 0 ]; then
	for magic in '\x02\x21\x4c\x18' '\x1f\x8b\x08' '\xfd\x37\x7a\x58\x5a\x00' \
		'\x28\xb5\x2f\xfd' '\x5d\x00\x00' '\x42\x5a\x68'; do
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1 | head -n 20); do
			try "$off" 0 && { ok=1; break 2; }
		done
	done
fi
if [ $ok -eq 0 ]; then
	rm -f "$tmp"
	echo "extract-vmlinux: no compressed ELF kernel found in $img" >&2
	exit 1
fi
mv "$tmp" "$out"
