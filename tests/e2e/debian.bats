#!/usr/bin/env bats
# End-to-end: an unmodified Debian 12 cloud image (make image-debian: systemd,
# cloud-init, openssh-server) boots under bangerd with the QEMU driver and is
# configured by cloud-init from banger's NoCloud seed: network, login user and
# keys, the host key banger pinned before the VMM started, the spec's own
# user-data (a file written, a command run) combined with banger's, and a root
# filesystem as large as rootfs.sizeMiB.

load helpers

DEBIAN=$TOP/build/image-debian

setup() {
	e2e_setup
	for f in "$DEBIAN/vmlinux" "$DEBIAN/initrd.gz" "$DEBIAN/rootfs.ext4"; do
		[ -e "$f" ] || fail "Debian image missing: $f (run 'make image-debian')"
	done
	make_qemu_wrapper
}

teardown() {
	e2e_teardown
}

@test "Debian cloud image: cloud-init runs banger's seed and the spec's user-data; key pinned before boot; disk grown" {
	image_mib=$(($(stat -c %s "$DEBIAN/rootfs.ext4") / 1048576))
	want_mib=$((image_mib + 512))
	start_daemon --qemu "$QEMU_WRAP"
	t0=$(date +%s.%N)
	cat >"$BANGER_SPEC_DIR/deb.yaml" <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: deb}
spec:
  vcpus: 2
  memoryMiB: 1024
  kernel: {path: $DEBIAN/vmlinux, initrd: $DEBIAN/initrd.gz}
  rootfs: {image: $DEBIAN/rootfs.ext4, sizeMiB: $want_mib}
  ssh: {user: debian}
  cloudInit:
    userData: |
      #cloud-config
      write_files:
        - path: /etc/banger-e2e
          content: "written by user-data\n"
      runcmd:
        - [sh, -c, "echo ran-by-runcmd > /var/tmp/runcmd-proof"]
YAML
	wait_phase deb Running 900
	t_running=$(echo "$(date +%s.%N) - $t0" | bc)
	ip=$(vm_field deb ip)
	pid=$(vm_pid deb)
	key=$(awk '{ print $1, $2 }' "$BANGER_STATE_DIR/vms/$(vm_id deb)/ssh_host_ed25519_key.pub")

	# Pinned before the VMM started; the guest serves exactly that key.
	[ -f "$WORK/kh-at-start.$pid" ]
	grep -F "$ip,deb.vm $key" "$WORK/kh-at-start.$pid"
	served=$(in_ns ssh-keyscan -T 20 -t ed25519 "$ip" 2>/dev/null | awk '{ print $2, $3 }')
	[ "$served" = "$key" ] || fail "served '$served', pinned '$key'"

	# cloud-init finished without errors, as the user 'debian' made from the seed.
	run bg ssh deb -- cloud-init status --wait --long
	if [ "$status" -ne 0 ]; then
		echo "# $output" >&3
		bg ssh deb -- sudo -n grep -E "WARNING|ERROR|Traceback" /var/log/cloud-init.log | tail -n 40 | sed 's/^/# /' >&3
		fail "cloud-init did not finish cleanly"
	fi
	assert_output --partial "status: done"
	# What banger wrote passes cloud-init's own schema check.
	run bg ssh deb -- sudo -n cloud-init schema --system
	assert_success
	t_done=$(echo "$(date +%s.%N) - $t0" | bc)
	run bg ssh deb -- whoami
	assert_output "debian"
	run bg ssh deb -- sudo -n cat /etc/banger-e2e
	assert_success
	assert_output "written by user-data"
	run bg ssh deb -- cat /var/tmp/runcmd-proof
	assert_success
	assert_output "ran-by-runcmd"
	run bg ssh deb -- hostname
	assert_output "deb"

	# The root filesystem fills rootfs.sizeMiB.
	run bg ssh deb -- df -k /
	assert_success
	size_kb=$(awk 'NR == 2 { print $2 }' <<<"$output")
	[ "$size_kb" -gt $(((want_mib - 64) * 1024)) ] || fail "root fs ${size_kb} KiB, want ~${want_mib} MiB"

	echo "# Debian guest: Running after ${t_running}s, cloud-init done after ${t_done}s" >&3
}
