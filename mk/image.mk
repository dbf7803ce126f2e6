# mk/image.mk - the reference guest image (images/): make image, install-image.
#
#   make image          build/image/{vmlinux,initrd.gz,rootfs.ext4} from Debian packages
#   make install-image  install them into $(IMAGE_INSTALL_DIR) (examples/*.yaml use it)
#   make image-refresh  fetch the packages again (e.g. a new kernel), then rebuild
#
# The image lives in build/image whatever BUILD is, so 'make asan' (BUILD=build-asan)
# reuses it. The downloaded .debs are cached in build/image/debs: once built, a
# second 'make image' does nothing.

IMAGE_DIR := build/image
IMAGE_DEBS := $(IMAGE_DIR)/debs/packages
IMAGE_UNPACK := $(IMAGE_DIR)/unpack/kernel-release
IMAGE_FILES := $(IMAGE_DIR)/vmlinux $(IMAGE_DIR)/initrd.gz $(IMAGE_DIR)/rootfs.ext4
IMAGE_INSTALL_DIR ?= /var/lib/banger/images/banger-base
ROOTFS_SIZE ?= 128M
AUTHORIZED_KEYS ?=

DEB_EXTRA += e2fsprogs cpio gzip lz4 xz-utils zstd kmod binutils
E2E_PREREQS += image

.PHONY: image install-image image-refresh

image: $(IMAGE_FILES)

$(IMAGE_DEBS): images/fetch-debs.sh
	$(Q)images/fetch-debs.sh $(IMAGE_DIR)/debs

$(IMAGE_UNPACK): $(IMAGE_DEBS) images/unpack.sh
	$(Q)images/unpack.sh $(IMAGE_DIR)/debs $(IMAGE_DIR)/unpack

$(IMAGE_DIR)/vmlinux: $(IMAGE_UNPACK) images/extract-vmlinux.sh
	$(Q)images/extract-vmlinux.sh $(IMAGE_DIR)/unpack/kernel/boot/vmlinuz-$$(cat $(IMAGE_UNPACK)) $@
	$(Q)cp $(IMAGE_UNPACK) $(IMAGE_DIR)/kernel-release

$(IMAGE_DIR)/initrd.gz: $(IMAGE_UNPACK) images/mkinitrd.sh images/initrd-init images/lib.sh
	$(Q)images/mkinitrd.sh $(IMAGE_DIR)/unpack $@

$(IMAGE_DIR)/rootfs.ext4: $(IMAGE_UNPACK) images/mkrootfs.sh images/lib.sh \
		$(shell find images/rootfs -type f 2>/dev/null) $(AUTHORIZED_KEYS)
	$(Q)ROOTFS_SIZE=$(ROOTFS_SIZE) AUTHORIZED_KEYS=$(AUTHORIZED_KEYS) \
		images/mkrootfs.sh $(IMAGE_DIR)/unpack $@

image-refresh:
	rm -rf $(IMAGE_DIR)/debs
	$(MAKE) image

install-image: image
	install -d $(DESTDIR)$(IMAGE_INSTALL_DIR)
	install -m 0644 $(IMAGE_FILES) $(DESTDIR)$(IMAGE_INSTALL_DIR)/

# The qemu boot test boots this image.
integration: image
