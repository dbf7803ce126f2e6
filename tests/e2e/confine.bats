#!/usr/bin/env bats
# End-to-end: spec-named files (rootfs.image, kernel.path, kernel.initrd) are
# confined to bangerd's --image-dir roots. A spec author who is not root
# tries to make the daemon read host secrets, banger's own SSH key, another
# VM's disk, a symlink out of the root, a FIFO (to block the single-threaded
# daemon) and device nodes. Each VM is refused with an error naming the field,
# the file and the rule; no byte of a secret reaches any file under the state
# dir; the daemon keeps answering and a good VM still boots.

load helpers

setup() {
	e2e_setup
	IMG=$WORK/img
	mkdir -m 0755 "$IMG"
	# A secret outside every image root, with a marker we can look for.
	SECRET=$(mktemp /tmp/bg-e2e-secret-XXXXXX)
	chmod 0600 "$SECRET"
	MARKER=BANGER-SECRET-$SFX-$RANDOM$RANDOM
	for _ in $(seq 64); do echo "$MARKER"; done >"$SECRET"
}

teardown() {
	rm -f "${SECRET:-}"
	e2e_teardown
}

# bad_vm NAME FIELD PATH: a spec with one of its files replaced by PATH.
bad_vm() {
	local name=$1 field=$2 path=$3
	local kernel=$IMAGE/vmlinux initrd=$IMAGE/initrd.gz rootfs=$IMAGE/rootfs.ext4
	case $field in
	kernel) kernel=$path ;;
	initrd) initrd=$path ;;
	rootfs) rootfs=$path ;;
	esac
	cat >"$BANGER_SPEC_DIR/$name.yaml" <<YAML
apiVersion: banger/v1
kind: VM
metadata: {name: $name}
spec:
  kernel: {path: $kernel, initrd: $initrd}
  rootfs: {image: $rootfs}
YAML
}

has_error() {
	local err
	err=$(vm_field "$1" lastError)
	[ -n "$err" ] && [ "$err" != null ]
}

# expect_refused NAME TEXT...: the VM failed and its error holds every TEXT.
expect_refused() {
	local name=$1
	shift
	wait_for 60 has_error "$name" || {
		echo "# $name: no error; now $(vm_json "$name" | jq -c '{phase,lastError}')" >&3
		return 1
	}
	local err
	err=$(vm_field "$name" lastError)
	echo "# $name: $err" >&3
	[ "$(vm_field "$name" phase)" = Failed ]
	[ "$(vm_field "$name" pid)" = null ]
	for t in "$@"; do
		grep -qF -- "$t" <<<"$err" || {
			echo "# $name: error lacks '$t'" >&3
			return 1
		}
	done
}

# boots_copy PID OPTION COPY ORIGINAL: the VMM's OPTION argument is COPY, or
# /proc/self/fd/N where its fd N is a memfd with ORIGINAL's bytes.
boots_copy() {
	local arg
	arg=$(tr '\0' '\n' <"/proc/$1/cmdline" | grep -A1 -xF -- "$2" | tail -n 1)
	if [ "$arg" = "$3" ]; then
		return 0
	fi
	[[ $arg == /proc/self/fd/* ]] || fail "$2 is '$arg', not banger's copy"
	[[ $(readlink "/proc/$1/fd/${arg##*/}") == /memfd:* ]] || fail "$2 fd is not a memfd"
	cmp "/proc/$1/fd/${arg##*/}" "$4"
}

@test "hostile image paths are refused with a clear error; no secret byte reaches a disk; the daemon keeps serving" {
	start_daemon
	# A good VM first: its disk is the "other VM's disk" a hostile spec aims at.
	vm_yaml good >"$BANGER_SPEC_DIR/good.yaml"
	wait_phase good Running
	good_id=$(vm_id good)
	good_disk=$BANGER_STATE_DIR/vms/$good_id/root.img
	[ -f "$good_disk" ]

	# Files below an image root that must still be refused.
	ln -s "$SECRET" "$IMG/evil.ext4"
	ln -s "$BANGER_STATE_DIR/ssh/id_ed25519" "$IMG/key-initrd"
	ln -s /etc "$IMG/etc"
	mkfifo "$IMG/fifo.ext4"
	mknod "$IMG/null-kernel" c 1 3
	mknod "$IMG/loop-disk" b 7 0
	cp "$SECRET" "$IMG/ww.ext4" && chmod 0666 "$IMG/ww.ext4"
	cp "$SECRET" "$IMG/user.ext4" && chown 65534:65534 "$IMG/user.ext4"

	bad_vm shadow rootfs /etc/shadow
	bad_vm secret kernel "$SECRET"
	bad_vm sshkey kernel "$BANGER_STATE_DIR/ssh/id_ed25519"
	bad_vm otherdisk rootfs "$good_disk"
	bad_vm dotdot initrd "$IMG/../../../etc/shadow"
	bad_vm symlink rootfs "$IMG/evil.ext4"
	bad_vm keylink initrd "$IMG/key-initrd"
	bad_vm dirlink rootfs "$IMG/etc/shadow"
	bad_vm fifo rootfs "$IMG/fifo.ext4"
	bad_vm chardev kernel "$IMG/null-kernel"
	bad_vm blockdev rootfs "$IMG/loop-disk"
	bad_vm worldw rootfs "$IMG/ww.ext4"
	bad_vm notroot rootfs "$IMG/user.ext4"

	# Each error says where the spec names the file (bad_vm: kernel on line 5, rootfs on 6).
	expect_refused shadow "$BANGER_SPEC_DIR/shadow.yaml:6:19: spec.rootfs.image: '/etc/shadow' is not below an image directory" \
		"--image-dir: $IMAGE"
	expect_refused secret "kernel.path" "'$SECRET' is not below an image directory"
	expect_refused sshkey "$BANGER_SPEC_DIR/sshkey.yaml:5:18: spec.kernel.path:" "is inside banger's private directory '$BANGER_STATE_DIR/ssh'"
	expect_refused otherdisk "rootfs.image" "is inside banger's private directory '$BANGER_STATE_DIR/vms'"
	expect_refused dotdot "kernel.initrd" "must not contain '.' or '..' components"
	expect_refused symlink "rootfs.image" "'$IMG/evil.ext4'" "symlink"
	expect_refused keylink "kernel.initrd" "'$IMG/key-initrd'" "symlink"
	expect_refused dirlink "rootfs.image" "'$IMG/etc/shadow'" "symlink"
	expect_refused fifo "rootfs.image" "'$IMG/fifo.ext4' is not a regular file (a FIFO)"
	expect_refused chardev "kernel.path" "is not a regular file (a character device)"
	expect_refused blockdev "rootfs.image" "is not a regular file (a block device)"
	expect_refused worldw "rootfs.image" "must not be group or world writable (mode 0666)"
	expect_refused notroot "rootfs.image" "must be owned by root (owner uid 65534)"

	# The daemon was never blocked: it answers, its heartbeat is fresh, and a
	# VM applied after the hostile ones boots.
	run timeout 10 "$BANGER_BIN" status
	assert_success
	daemon_fresh
	vm_yaml good2 >"$BANGER_SPEC_DIR/good2.yaml"
	wait_phase good2 Running
	[ "$(vm_field good phase)" = Running ]

	# No VM disk and no staged kernel/initrd holds a byte of the secret, of
	# /etc/shadow or of banger's key; the hostile VMs got no root disk at all.
	run grep -rlaF "$MARKER" "$BANGER_STATE_DIR/vms"
	assert_failure 1
	# Line 3 holds key material (line 2 is the header every OpenSSH key shares).
	key_line=$(sed -n 3p "$BANGER_STATE_DIR/ssh/id_ed25519")
	[ ${#key_line} -ge 60 ]
	run grep -rlaF -- "$key_line" "$BANGER_STATE_DIR/vms"
	assert_failure 1
	shadow_line=$(head -n 1 /etc/shadow)
	for f in "$BANGER_STATE_DIR"/vms/*/kernel "$BANGER_STATE_DIR"/vms/*/initrd; do
		run grep -qaF -- "$shadow_line" "$f"
		assert_failure 1
	done
	for name in shadow secret sshkey otherdisk dotdot symlink keylink dirlink fifo chardev \
		blockdev worldw notroot; do
		id=$(vm_id "$name")
		case $name in
		secret | sshkey | dotdot | keylink | chardev) ;; # rootfs is good: only the kernel failed
		*) [ ! -e "$BANGER_STATE_DIR/vms/$id/root.img" ] ;;
		esac
		[ ! -e "$BANGER_STATE_DIR/vms/$id/kernel" ] || cmp "$BANGER_STATE_DIR/vms/$id/kernel" "$IMAGE/vmlinux"
	done
	# The VMM boots banger's private copies, never the spec's paths: the
	# copy in the VM dir, or (a sandboxed QEMU) a sealed memfd made from it.
	pid=$(vm_pid good2)
	id=$(vm_id good2)
	! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qF "$IMAGE/vmlinux"
	boots_copy "$pid" -kernel "$BANGER_STATE_DIR/vms/$id/kernel" "$IMAGE/vmlinux"
	boots_copy "$pid" -initrd "$BANGER_STATE_DIR/vms/$id/initrd" "$IMAGE/initrd.gz"
	[ "$(stat -c '%a %u' "$BANGER_STATE_DIR/vms/$id/kernel")" = "600 0" ]
	cmp "$BANGER_STATE_DIR/vms/$id/kernel" "$IMAGE/vmlinux"
	cmp "$BANGER_STATE_DIR/vms/$id/initrd" "$IMAGE/initrd.gz"
}

@test "bangerd refuses an image dir inside its private state dirs" {
	run "$BANGERD_BIN" --state-dir "$WORK/state" --spec-dir "$WORK/specs" \
		--image-dir "$WORK/state/ssh" --once
	assert_failure
	assert_output --partial "--image-dir: image directory '$WORK/state/ssh' must not be inside '$WORK/state/ssh'"
	run "$BANGERD_BIN" --state-dir "$WORK/state" --spec-dir "$WORK/specs" \
		--image-dir "relative/../x" --once
	assert_failure
	assert_output --partial "'..' components"
}
