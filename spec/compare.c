/*
 * compare.c - struct vm_spec values: enum names, copy, free, and how two
 * versions of a spec differ.
 *
 * Pure: no I/O and no third-party library, so the planner can link it alone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "spec/spec.h"

static const char *const state_names[VM_DESIRED_MAX] = {
	[VM_DESIRED_RUNNING] = "running",
	[VM_DESIRED_STOPPED] = "stopped",
};

static const char *const vmm_names[VMM_KIND_MAX] = {
	[VMM_AUTO] = "auto",
	[VMM_FIRECRACKER] = "firecracker",
	[VMM_QEMU] = "qemu",
};

static const char *const restart_names[RESTART_POLICY_MAX] = {
	[RESTART_ALWAYS] = "always",
	[RESTART_ON_FAILURE] = "on-failure",
	[RESTART_NEVER] = "never",
};

static const char *const guest_config_names[GUEST_CONFIG_MAX] = {
	[GUEST_CONFIG_AUTO] = "auto",
	[GUEST_CONFIG_CLOUDINIT] = "cloudinit",
	[GUEST_CONFIG_CMDLINE] = "cmdline",
};

static const char *const egress_names[SPEC_EGRESS_MAX] = {
	[SPEC_EGRESS_DEFAULT] = "",
	[SPEC_EGRESS_NAT] = "nat",
	[SPEC_EGRESS_NONE] = "none",
};

static const char *const proto_names[SPEC_PROTO_MAX] = {
	[SPEC_PROTO_TCP] = "tcp",
	[SPEC_PROTO_UDP] = "udp",
};

static int lookup(const char *const *names, int n, const char *s)
{
	if (!s)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -EINVAL;
}

const char *vm_desired_state_to_string(enum vm_desired_state s)
{
	return (unsigned)s < VM_DESIRED_MAX ? state_names[s] : NULL;
}

const char *vmm_kind_to_string(enum vmm_kind k)
{
	return (unsigned)k < VMM_KIND_MAX ? vmm_names[k] : NULL;
}

const char *restart_policy_to_string(enum restart_policy p)
{
	return (unsigned)p < RESTART_POLICY_MAX ? restart_names[p] : NULL;
}

const char *guest_config_to_string(enum guest_config c)
{
	return (unsigned)c < GUEST_CONFIG_MAX ? guest_config_names[c] : NULL;
}

const char *spec_egress_to_string(enum spec_egress e)
{
	return e > SPEC_EGRESS_DEFAULT && e < SPEC_EGRESS_MAX ? egress_names[e] : NULL;
}

const char *spec_proto_to_string(enum spec_proto p)
{
	return (unsigned)p < SPEC_PROTO_MAX ? proto_names[p] : NULL;
}

int spec_egress_from_string(const char *s)
{
	int v = lookup(egress_names, SPEC_EGRESS_MAX, s);

	return v == SPEC_EGRESS_DEFAULT ? -EINVAL : v;
}

int spec_proto_from_string(const char *s)
{
	return lookup(proto_names, SPEC_PROTO_MAX, s);
}

int guest_config_from_string(const char *s)
{
	return lookup(guest_config_names, GUEST_CONFIG_MAX, s);
}

int vm_desired_state_from_string(const char *s)
{
	return lookup(state_names, VM_DESIRED_MAX, s);
}

int vmm_kind_from_string(const char *s)
{
	return lookup(vmm_names, VMM_KIND_MAX, s);
}

int restart_policy_from_string(const char *s)
{
	return lookup(restart_names, RESTART_POLICY_MAX, s);
}

void vm_spec_free(struct vm_spec *spec)
{
	if (!spec)
		return;
	free(spec->name);
	for (size_t i = 0; i < spec->n_labels; i++) {
		free(spec->labels[i].key);
		free(spec->labels[i].value);
	}
	free(spec->labels);
	free(spec->kernel_path);
	free(spec->kernel_initrd);
	free(spec->kernel_args);
	free(spec->rootfs_image);
	free(spec->ip);
	free(spec->ports);
	free(spec->ssh_user);
	for (size_t i = 0; i < spec->n_ssh_keys; i++)
		free(spec->ssh_keys[i]);
	free(spec->ssh_keys);
	free(spec->cloudinit_user_data);
	free(spec->cloudinit_user_data_file);
	free(spec->source_file);
	free(spec);
}

struct vm_spec *vm_spec_dup(const struct vm_spec *spec)
{
	struct vm_spec *d;

	if (!spec)
		return NULL;
	d = xmalloc(sizeof(*d));
	*d = *spec;
	d->name = xstrdup_null(spec->name);
	d->labels = NULL;
	if (spec->n_labels) {
		d->labels = xcalloc(spec->n_labels, sizeof(*d->labels));
		for (size_t i = 0; i < spec->n_labels; i++) {
			d->labels[i].key = xstrdup(spec->labels[i].key);
			d->labels[i].value = xstrdup(spec->labels[i].value);
		}
	}
	d->kernel_path = xstrdup_null(spec->kernel_path);
	d->kernel_initrd = xstrdup_null(spec->kernel_initrd);
	d->kernel_args = xstrdup_null(spec->kernel_args);
	d->rootfs_image = xstrdup_null(spec->rootfs_image);
	d->ip = xstrdup_null(spec->ip);
	d->ports = NULL;
	if (spec->n_ports) {
		d->ports = xcalloc(spec->n_ports, sizeof(*d->ports));
		memcpy(d->ports, spec->ports, spec->n_ports * sizeof(*d->ports));
	}
	d->ssh_user = xstrdup_null(spec->ssh_user);
	d->ssh_keys = NULL;
	if (spec->n_ssh_keys) {
		d->ssh_keys = xcalloc(spec->n_ssh_keys, sizeof(*d->ssh_keys));
		for (size_t i = 0; i < spec->n_ssh_keys; i++)
			d->ssh_keys[i] = xstrdup(spec->ssh_keys[i]);
	}
	d->cloudinit_user_data = xstrdup_null(spec->cloudinit_user_data);
	d->cloudinit_user_data_file = xstrdup_null(spec->cloudinit_user_data_file);
	d->source_file = xstrdup_null(spec->source_file);
	return d;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* NULL and "" mean the same for optional strings. */
static bool opt_eq(const char *a, const char *b)
{
	return str_eq(a && *a ? a : NULL, b && *b ? b : NULL);
}

static const char *user_of(const struct vm_spec *s)
{
	return s->ssh_user ? s->ssh_user : "root";
}

static bool labels_eq(const struct vm_spec *a, const struct vm_spec *b)
{
	if (a->n_labels != b->n_labels)
		return false;
	for (size_t i = 0; i < a->n_labels; i++)
		if (!str_eq(a->labels[i].key, b->labels[i].key) ||
		    !str_eq(a->labels[i].value, b->labels[i].value))
			return false;
	return true;
}

static bool keys_eq(const struct vm_spec *a, const struct vm_spec *b)
{
	if (a->n_ssh_keys != b->n_ssh_keys)
		return false;
	for (size_t i = 0; i < a->n_ssh_keys; i++)
		if (!str_eq(a->ssh_keys[i], b->ssh_keys[i]))
			return false;
	return true;
}

bool spec_ports_equal(const struct vm_spec *a, const struct vm_spec *b)
{
	if (a->n_ports != b->n_ports)
		return false;
	for (size_t i = 0; i < a->n_ports; i++) {
		const struct spec_port *x = &a->ports[i], *y = &b->ports[i];

		if (x->host_port != y->host_port || x->guest_port != y->guest_port ||
		    x->protocol != y->protocol || strcmp(x->host_ip, y->host_ip) != 0)
			return false;
	}
	return true;
}

enum spec_change spec_compare(const struct vm_spec *a, const struct vm_spec *b)
{
	if (!a || !b)
		return a == b ? SPEC_SAME : SPEC_REBOOT;
	/* What the guest sees at boot, and the VM's identity. */
	if (!str_eq(a->name, b->name) || a->vmm != b->vmm || a->vcpus != b->vcpus ||
	    a->memory_mib != b->memory_mib || !str_eq(a->kernel_path, b->kernel_path) ||
	    !opt_eq(a->kernel_initrd, b->kernel_initrd) ||
	    !opt_eq(a->kernel_args, b->kernel_args) || !str_eq(a->rootfs_image, b->rootfs_image) ||
	    a->rootfs_size_mib != b->rootfs_size_mib || a->work_disk_mib != b->work_disk_mib ||
	    !opt_eq(a->ip, b->ip) || !str_eq(user_of(a), user_of(b)) || !keys_eq(a, b) ||
	    a->guest_config != b->guest_config ||
	    !str_eq(a->cloudinit_user_data, b->cloudinit_user_data))
		return SPEC_REBOOT;
	/*
	 * Only the name of a userDataFile whose content is the same: nothing to
	 * boot again. Egress and port forwards are host rules, changed live.
	 */
	if (!labels_eq(a, b) || a->restart_policy != b->restart_policy || a->egress != b->egress ||
	    !spec_ports_equal(a, b) ||
	    !str_eq(a->cloudinit_user_data_file, b->cloudinit_user_data_file))
		return SPEC_UPDATE;
	return SPEC_SAME;
}
