#!/usr/bin/env bats
# host_dm_guest.bats - the dm-snapshot root disk path for real. Where the host
# kernel has device-mapper, test_host_dm runs directly (make integration);
# where it lacks it (as on the PVM build hosts), the same binary runs inside
# a QEMU guest with Debian's cloud kernel (tests/integration/dm-in-guest.sh).

setup() {
	BUILD=${BUILD:-build}
	TOP=$(cd "$(dirname "$BATS_TEST_FILENAME")/../.." && pwd)
}

@test "dm-snapshot root disks in a guest kernel with device-mapper" {
	if [ "$(id -u)" -ne 0 ]; then
		skip "needs root (loop devices and device-mapper in the guest, apt-get download)"
	fi
	if [ -e /dev/mapper/control ] && dmsetup version >/dev/null 2>&1; then
		skip "this host has device-mapper: test_host_dm runs on the host itself"
	fi
	if ! command -v qemu-system-x86_64 >/dev/null; then
		skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
	fi
	run "$TOP/tests/integration/dm-in-guest.sh" "$BUILD"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"PASSED  ] 7 test(s)."* ]]
}
