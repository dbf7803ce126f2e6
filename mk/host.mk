# host.mk - reconciler/host/: runtime tools (nft for NAT, mke2fs for work
# disks), what the integration tests use to set up and check (ip, losetup,
# blkid, dumpe2fs, debugfs, dmsetup, mkfs.xfs for a reflink-capable
# filesystem), and cpio for the initramfs of the dm-snapshot guest test.
DEB_EXTRA += nftables e2fsprogs util-linux iproute2 xfsprogs dmsetup cpio

.PHONY: host-dm-guest
# Run the dm-snapshot tests inside a QEMU guest whose kernel has device-mapper
# (also part of 'make integration' through tests/integration/host_dm_guest.bats).
host-dm-guest: $(BUILD)/tests/integration/test_host_dm
	tests/integration/dm-in-guest.sh $(BUILD)
