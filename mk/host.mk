# host.mk - reconciler/host/: runtime tools (nft for NAT, mke2fs for work
# disks, losetup/blkid/dumpe2fs/debugfs for the tests) and xfsprogs, whose
# mkfs.xfs lets the integration tests exercise reflink root disks on an XFS
# image even where the temp filesystem has no reflink.
DEB_EXTRA += nftables e2fsprogs util-linux iproute2 xfsprogs
