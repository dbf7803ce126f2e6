/*
 * select.c - choosing a VMM driver for a VM; see vmm.h (vmm_select).
 */
#include <errno.h>
#include <string.h>

#include "reconciler/vmm/vmm.h"

const struct vmm_driver *vmm_driver_by_name(const char *name)
{
	if (!name)
		return NULL;
	if (strcmp(name, vmm_driver_firecracker.name) == 0)
		return &vmm_driver_firecracker;
	if (strcmp(name, vmm_driver_qemu.name) == 0)
		return &vmm_driver_qemu;
	return NULL;
}

int vmm_select(enum vmm_kind kind, const char *const binaries[VMM_KIND_MAX],
	       const struct vmm_driver **ret, struct bg_err *why, struct bg_err *err)
{
	const char *fc_bin = binaries ? binaries[VMM_FIRECRACKER] : NULL;
	const char *qemu_bin = binaries ? binaries[VMM_QEMU] : NULL;
	struct bg_err fc_why = { 0 }, qemu_why = { 0 };

	switch (kind) {
	case VMM_FIRECRACKER:
		if (!vmm_driver_firecracker.available(fc_bin, &fc_why))
			return bg_errorf(err, ENODEV, "firecracker cannot run here: %s",
					 fc_why.msg);
		*ret = &vmm_driver_firecracker;
		return 0;
	case VMM_QEMU:
		if (!vmm_driver_qemu.available(qemu_bin, &qemu_why))
			return bg_errorf(err, ENODEV, "qemu cannot run here: %s", qemu_why.msg);
		*ret = &vmm_driver_qemu;
		return 0;
	case VMM_AUTO:
		if (vmm_driver_firecracker.available(fc_bin, &fc_why)) {
			*ret = &vmm_driver_firecracker;
			return 0;
		}
		if (why)
			bg_errorf(why, ENODEV, "firecracker passed over: %s", fc_why.msg);
		if (vmm_driver_qemu.available(qemu_bin, &qemu_why)) {
			*ret = &vmm_driver_qemu;
			return 0;
		}
		return bg_errorf(err, ENODEV, "no VMM can run here: firecracker: %s; qemu: %s",
				 fc_why.msg, qemu_why.msg);
	default:
		return bg_errorf(err, EINVAL, "unknown vmm kind %d", (int)kind);
	}
}
