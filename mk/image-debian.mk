# mk/image-debian.mk - a Debian 12 (bookworm) guest built from Debian packages
# with mmdebstrap (images/debian/): systemd, cloud-init (NoCloud seed),
# OpenSSH, Debian's cloud kernel.
#
#   make image-debian          build/image-debian/{vmlinux,initrd.gz,rootfs.ext4}
#   make install-image-debian  install them into $(IMAGE_DEBIAN_INSTALL_DIR)
#                              (examples/debian.yaml uses it)
#
# The same three files as the reference image (build/image), so a spec swaps
# one directory for the other. Building takes minutes and needs root; the
# result is cached outside the clone, keyed by a hash of its inputs, in
# $(BANGER_IMAGE_CACHE) (default /var/cache/banger/image-debian; an empty
# value disables the cache). See images/debian/make-image.sh.

IMAGE_DEBIAN_DIR := build/image-debian
IMAGE_DEBIAN_INSTALL_DIR ?= /var/lib/banger/images/debian-12

DEB_EXTRA += mmdebstrap e2fsprogs util-linux lz4 genisoimage openssh-client iproute2
E2E_PREREQS += image-debian

.PHONY: image-debian install-image-debian

image-debian:
	$(Q)images/debian/make-image.sh $(IMAGE_DEBIAN_DIR)

install-image-debian: image-debian
	install -d $(DESTDIR)$(IMAGE_DEBIAN_INSTALL_DIR)
	install -m 0644 $(addprefix $(IMAGE_DEBIAN_DIR)/,vmlinux initrd.gz rootfs.ext4) \
		$(DESTDIR)$(IMAGE_DEBIAN_INSTALL_DIR)/

# tests/integration/image_debian.bats boots it (building needs root; without
# root the test skips).
ifeq ($(shell id -u),0)
integration: image-debian
endif
