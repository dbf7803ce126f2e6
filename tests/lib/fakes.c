/*
 * fakes.c - a recording fake host layer and a fake VMM; see fakes.h.
 */
#include "tests/lib/fakes.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/proc.h"
#include "tests/lib/testutil.h"

struct buf fake_calls;
const char *fake_fail_op;
void (*fake_call_hook)(const char *op);
enum vmm_guest_state fake_probe_says = VMM_GUEST_RUNNING;
const char *fake_vmm_script = "exec sleep 600";
pid_t fake_last_pid;
char fake_last_args[4096];
char fake_last_seed[4096];
const char *fake_netrules_holder;
bool fake_vmm_ignores_shutdown;

void fakes_reset(void)
{
	buf_release(&fake_calls);
	buf_init(&fake_calls);
	fake_fail_op = NULL;
	fake_call_hook = NULL;
	fake_probe_says = VMM_GUEST_RUNNING;
	fake_vmm_script = "exec sleep 600";
	fake_last_pid = 0;
	fake_last_args[0] = '\0';
	fake_last_seed[0] = '\0';
	fake_netrules_holder = NULL;
	fake_vmm_ignores_shutdown = false;
	fake_rules_gen = -1;
}

void fakes_release(void)
{
	buf_release(&fake_calls);
}

static int call(const char *op, struct bg_err *err)
{
	buf_addf(&fake_calls, "%s ", op);
	if (fake_call_hook)
		fake_call_hook(op);
	if (fake_fail_op && strcmp(fake_fail_op, op) == 0) {
		fake_fail_op = NULL;
		return bg_errorf(err, EIO, "%s failed (injected)", op);
	}
	return 0;
}

static int f_bridge(const struct host_net *n, struct bg_err *e)
{
	(void)n;
	return call("bridge", e);
}

static int f_tap(const struct host_net *n, const char *name, uid_t u, gid_t g, struct bg_err *e)
{
	(void)n, (void)u, (void)g;
	if (strncmp(name, "bg", 2) != 0 || strlen(name) != 10)
		return bg_errorf(e, EINVAL, "bad tap name '%s'", name);
	return call("tap", e);
}

static int f_tap_remove(const char *name, struct bg_err *e)
{
	(void)name;
	return call("tap-remove", e);
}

static int f_antispoof(const struct host_net *n, const char *tap, const char *mac, const char *ip,
		       struct bg_err *e)
{
	(void)n;
	if (strncmp(tap, "bg", 2) != 0 || strlen(tap) != 10 || strlen(mac) != 17 || !ip || !*ip)
		return bg_errorf(e, EINVAL, "bad filter for '%s' '%s' '%s'", tap, mac, ip);
	return call("antispoof", e);
}

static int f_antispoof_remove(const struct host_net *n, const char *tap, struct bg_err *e)
{
	(void)n, (void)tap;
	return call("antispoof-remove", e);
}

static int f_netrules_base(const struct host_net *n, struct bg_err *e)
{
	(void)n;
	return call("netrules-base", e);
}

/* Records "netrules" (with the forwards: "netrules:tcp/8080>80,..."); fake_netrules_holder conflicts. */
static int f_netrules(const struct host_net *n, const char *tap, const char *ip, bool egress_nat,
		      const struct host_forward *fwd, size_t n_fwd,
		      struct host_forward_conflict **ret_c, size_t *ret_n, struct bg_err *e)
{
	struct buf b = { 0 };
	int r;

	(void)n;
	*ret_c = NULL;
	*ret_n = 0;
	if (strncmp(tap, "bg", 2) != 0 || !ip || !*ip)
		return bg_errorf(e, EINVAL, "bad netrules for '%s' '%s'", tap, ip ? ip : "");
	buf_init(&b);
	buf_addf(&b, "netrules:%s", egress_nat ? "nat" : "none");
	for (size_t i = 0; i < n_fwd; i++)
		buf_addf(&b, "%s%s/%u>%u", i ? "," : ":", host_proto_to_string(fwd[i].proto),
			 fwd[i].host_port, fwd[i].guest_port);
	r = call(b.data, e);
	buf_release(&b);
	if (r < 0 || !fake_netrules_holder || !n_fwd)
		return r;
	*ret_c = calloc(1, sizeof(**ret_c));
	if (!*ret_c)
		return -ENOMEM;
	(*ret_c)[0].fwd = fwd[0];
	snprintf((*ret_c)[0].holder_tap, sizeof((*ret_c)[0].holder_tap), "%s",
		 fake_netrules_holder);
	*ret_n = 1;
	return 0;
}

static int f_netrules_remove(const struct host_net *n, const char *tap, struct bg_err *e)
{
	(void)n, (void)tap;
	return call("netrules-remove", e);
}

static int f_netrules_show(const struct host_net *n, const char *tap, char **ret, struct bg_err *e)
{
	(void)n, (void)tap, (void)e;
	*ret = strdup("");
	return *ret ? 0 : -ENOMEM;
}

static int f_detect(const char *dir, enum disk_mode *ret, struct bg_err *e)
{
	(void)dir, (void)e;
	*ret = DISK_MODE_COPY;
	return 0;
}

static int f_rootdisk(const struct host_vm *vm, enum disk_mode mode, struct host_disk *ret,
		      struct bg_err *e)
{
	int r = call("rootdisk", e);

	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->mode = mode;
	snprintf(ret->path, sizeof(ret->path), "%s", vm->cow_disk);
	test_write_file(vm->cow_disk, "disk");
	return 0;
}

static int f_rootdisk_deactivate(const struct host_vm *vm, struct bg_err *e)
{
	(void)vm;
	return call("rootdisk-deactivate", e);
}

static int f_rootdisk_remove(const struct host_vm *vm, struct bg_err *e)
{
	(void)unlink(vm->cow_disk);
	return call("rootdisk-remove", e);
}

static int f_workdisk(const struct host_vm *vm, struct bg_err *e)
{
	(void)vm;
	return call("workdisk", e);
}

static int f_workdisk_remove(const struct host_vm *vm, struct bg_err *e)
{
	(void)vm;
	return call("workdisk-remove", e);
}

/* Every image is raw to the fake: it resolves to itself. */
static int f_baseimg(const char *state_dir, const char *image, int image_fd, char ret_path[4096],
		     struct bg_err *e)
{
	int r = call("baseimg", e);

	(void)state_dir;
	(void)image_fd;
	if (r < 0)
		return r;
	snprintf(ret_path, 4096, "%s", image ? image : "");
	return 0;
}

/* Nothing to grow. */
static int f_rootfs_grow(const char *path, struct bg_err *e)
{
	(void)path;
	return call("rootfs-grow", e);
}

static int f_gc_scan(const char *d, const char *const *ids, size_t n, struct host_orphan **ret,
		     size_t *ret_n, struct bg_err *e)
{
	(void)d, (void)ids, (void)n, (void)e;
	*ret = NULL;
	*ret_n = 0;
	return 0;
}

static int f_gc_remove(const struct host_orphan *o, struct bg_err *e)
{
	(void)o, (void)e;
	return 0;
}

int64_t fake_rules_gen = -1;

static int f_rules_generation(uint32_t *ret, struct bg_err *e)
{
	if (fake_rules_gen < 0)
		return bg_errorf(e, ENOTSUP, "fake: no nftables generation");
	*ret = (uint32_t)fake_rules_gen;
	return 0;
}

const struct host_ops fake_host = {
	.bridge_ensure = f_bridge,
	.tap_ensure = f_tap,
	.tap_remove = f_tap_remove,
	.antispoof_ensure = f_antispoof,
	.antispoof_remove = f_antispoof_remove,
	.netrules_base_ensure = f_netrules_base,
	.netrules_ensure = f_netrules,
	.netrules_remove = f_netrules_remove,
	.netrules_show = f_netrules_show,
	.rules_generation = f_rules_generation,
	.disk_mode_detect = f_detect,
	.rootdisk_ensure = f_rootdisk,
	.rootdisk_deactivate = f_rootdisk_deactivate,
	.rootdisk_remove = f_rootdisk_remove,
	.workdisk_ensure = f_workdisk,
	.workdisk_remove = f_workdisk_remove,
	.baseimg_resolve = f_baseimg,
	.rootfs_grow = f_rootfs_grow,
	.gc_scan = f_gc_scan,
	.gc_remove = f_gc_remove,
};

static bool v_available(const char *bin, struct bg_err *why)
{
	(void)bin, (void)why;
	return true;
}

static int v_start(const struct vmm_config *cfg, struct vmm_process *ret, struct bg_err *err)
{
	/* The control socket path is in argv, so rediscovery could find the process. */
	const char *argv[] = { "sh", "-c", fake_vmm_script, "fake-vmm", cfg->ctl_sock, NULL };
	pid_t pid;
	int r;

	r = call("launch", err);
	if (r < 0)
		return r;
	snprintf(fake_last_args, sizeof(fake_last_args), "%s", cfg->guest_args);
	snprintf(fake_last_seed, sizeof(fake_last_seed), "%s",
		 cfg->seed_disk ? cfg->seed_disk : "");
	r = proc_spawn(argv, NULL, &pid, err);
	if (r < 0)
		return r;
	fake_last_pid = pid;
	ret->pid = pid;
	return proc_start_time(pid, &ret->start_time, err);
}

static int v_probe(const struct vmm_config *cfg, const struct vmm_process *p,
		   enum vmm_guest_state *ret, struct bg_err *err)
{
	(void)cfg, (void)p, (void)err;
	*ret = fake_probe_says;
	return 0;
}

/* The guest shuts down at once, unless told to ignore the request. */
static int v_shutdown(const struct vmm_config *cfg, const struct vmm_process *p, struct bg_err *err)
{
	(void)cfg;
	(void)call("shutdown", NULL);
	if (fake_vmm_ignores_shutdown)
		return 0;
	if (proc_signal(p->pid, p->start_time, SIGKILL, err) < 0 && err->code != -ESRCH)
		return err->code;
	return proc_wait_gone(p->pid, p->start_time, 5000);
}

static int v_stop(const struct vmm_config *cfg, const struct vmm_process *p, int grace_ms,
		  struct bg_err *err)
{
	(void)cfg, (void)grace_ms;
	(void)call("stop", NULL);
	if (proc_signal(p->pid, p->start_time, SIGKILL, err) < 0 && err->code != -ESRCH)
		return err->code;
	return proc_wait_gone(p->pid, p->start_time, 5000);
}

const struct vmm_driver fake_driver = {
	.name = "qemu",
	.available = v_available,
	.start = v_start,
	.probe = v_probe,
	.shutdown = v_shutdown,
	.stop = v_stop,
};

int fake_driver_for(void *ctx, enum vmm_kind kind, const char *recorded,
		    const struct vmm_driver **ret, struct bg_err *err)
{
	(void)ctx, (void)kind, (void)recorded, (void)err;
	*ret = &fake_driver;
	return 0;
}
