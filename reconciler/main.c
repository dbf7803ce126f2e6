/*
 * main.c - bangerd: options, the single-instance lock, and the event loop.
 *
 * One thread, one epoll loop over: inotify on the spec dir (the first change
 * after a quiet spell is a pass at once; what arrives during a pass is the
 * next one), a periodic timerfd (full resync), a one-shot timerfd (requeue:
 * backoffs ending, stop deadlines, booting guests to look at), the
 * readiness prober's epoll fd (prober.h: probes run beside the loop),
 * a signalfd (TERM/INT stop the loop and leave VMs running, HUP forces a
 * resync, CHLD reaps VMMs we started) and a pidfd per alive VMM, however
 * many (pidwatch.h: a VMM that dies, even one adopted from an earlier
 * daemon, wakes the loop at once) and
 * the DNS responder's epoll fd (its names are replaced after every pass).
 *
 * Init order: options -> logging -> lock -> daemon (store, keys, disk mode) ->
 * watch -> loop; teardown in reverse.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/converge.h"
#include "reconciler/daemon.h"
#include "reconciler/dns/dns.h"
#include "reconciler/failpoint.h"
#include "reconciler/notify.h"
#include "reconciler/pidwatch.h"
#include "reconciler/watch.h"

#ifndef BANGER_VERSION
#define BANGER_VERSION "0.1.0"
#endif

#define STOP_TIMEOUT_MAX_MS (60 * 60 * 1000)

enum {
	TAG_INOTIFY = 1,
	TAG_RESYNC,
	TAG_WAKE,
	TAG_SIGNAL,
	TAG_DNS,
	TAG_PROBE,
	TAG_PIDFD,
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bangerd [OPTIONS]\n\n"
		"Reconcile VMs on this host with the spec files in the spec directory.\n\n"
		"  --spec-dir DIR        spec directory (env BANGER_SPEC_DIR)\n"
		"  --state-dir DIR       state directory (env BANGER_STATE_DIR)\n"
		"  --bridge NAME         bridge for guests (default %s)\n"
		"  --subnet CIDR         bridge address and prefix (default %s)\n"
		"  --nat                 masquerade guest traffic (default off)\n"
		"  --dns-port PORT       answer <name>.vm on the bridge address, forward the rest\n"
		"                        (default 53, the guests' nameserver; 0: off)\n"
		"  --dns-resolv FILE     the resolvers names are forwarded to (default %s)\n"
		"  --resync SECONDS      full resync period (default %d)\n"
		"  --vmm auto|firecracker|qemu   VMM for specs that say auto (default auto)\n"
		"  --firecracker PATH    firecracker binary (default: firecracker in PATH)\n"
		"  --qemu PATH           qemu-system-x86_64 binary (default: in PATH)\n"
		"  --vmm-uids START:COUNT|off  a VMM runs as a uid of its own from this range\n"
		"                        (default " VMM_SANDBOX_DEFAULT_UIDS "); off: as root\n"
		"  --image-dir DIR       spec images, kernels and initrds must be below DIR\n"
		"                        (repeatable; default " IMGPATH_DEFAULT_ROOT ")\n"
		"  --skip-kvm-check      accept the firecracker binary without usable KVM\n"
		"                        (for the test stand-in only)\n"
		"  --stop-timeout SECONDS  graceful shutdown deadline for guests (default %d)\n"
		"  --once                run one full pass and exit\n"
		"  --list-failpoints     print the names BANGER_FAILPOINT accepts\n"
		"  -v, --verbose         more logging (env BANGER_LOG_LEVEL)\n"
		"  -h, --help, --version\n",
		DAEMON_DEFAULT_BRIDGE, DAEMON_DEFAULT_SUBNET, DNS_DEFAULT_RESOLV,
		DAEMON_DEFAULT_RESYNC_MS / 1000, DAEMON_DEFAULT_STOP_GRACE_MS / 1000);
}

/* SQLite must never get fds 0-2 (see its "how to corrupt" notes): keep them open. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (open("/dev/null", O_RDWR) < 0)
			abort();
	}
}

/* Take <state>/bangerd.lock or explain who holds it. The fd is O_CLOEXEC. */
static int take_lock(const char *state_dir, int *ret_fd, struct bg_err *err)
{
	_cleanup_free_ char *path = paths_daemon_lock(state_dir);
	_cleanup_close_ int fd = -1;
	char pid[32];
	int n;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return bg_error(err, errno, "open '%s'", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		if (e != EWOULDBLOCK)
			return bg_error(err, e, "lock '%s'", path);
		n = (int)pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		return bg_errorf(err, EBUSY,
				 "another bangerd (pid %s) is running on state directory '%s'",
				 pid[0] ? pid : "?", state_dir);
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		return bg_error(err, errno, "write '%s'", path);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

static int arm_timer(int fd, int64_t first_ms, int64_t interval_ms)
{
	struct itimerspec its = { 0 };

	if (first_ms > 0) {
		its.it_value.tv_sec = first_ms / 1000;
		its.it_value.tv_nsec = (first_ms % 1000) * 1000000;
	}
	if (interval_ms > 0) {
		its.it_interval.tv_sec = interval_ms / 1000;
		its.it_interval.tv_nsec = (interval_ms % 1000) * 1000000;
	}
	return timerfd_settime(fd, 0, &its, NULL);
}

/* Arm the one-shot wake timer for ms from now (-1: not at all), unless it goes off sooner. */
static void wake_sooner(int fd, int64_t ms)
{
	struct itimerspec cur;
	int64_t left;

	if (ms < 0)
		return;
	if (timerfd_gettime(fd, &cur) == 0 && (cur.it_value.tv_sec || cur.it_value.tv_nsec)) {
		left = (int64_t)cur.it_value.tv_sec * 1000 + cur.it_value.tv_nsec / 1000000;
		if (left <= ms)
			return;
	}
	(void)arm_timer(fd, ms > 10 ? ms : 10, 0);
}

static void drain_fd(int fd)
{
	char buf[512];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Watch every VMM the pass found alive (pidwatch.h). */
static void sync_pidfds(struct pidwatch *w, const struct daemon *d)
{
	struct pidwatch_proc *procs = xcalloc(d->n_alive ? d->n_alive : 1, sizeof(*procs));
	size_t watched;

	for (size_t k = 0; k < d->n_alive; k++)
		procs[k] = (struct pidwatch_proc){ d->alive[k].pid, d->alive[k].start_time };
	watched = pidwatch_sync(w, procs, d->n_alive);
	if (watched < d->n_alive)
		log_warn("watching %zu of %zu VMMs (out of fds?); the others are seen at resyncs",
			 watched, d->n_alive);
	free(procs);
}

/*
 * A pidfd per VMM, a tap, disk and socket per VM: the default soft limit of
 * 1024 fds would stop at a few hundred VMs. Take what the hard limit allows.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warn("cannot raise the fd limit to %llu: %s", (unsigned long long)rl.rlim_max,
			 strerror(errno));
}

/* Reap every exited child; true when one of them was a VMM (a probe worker is not news). */
static bool reap_children(struct daemon *d)
{
	bool vmm = false;

	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			break;
		vmm |= daemon_reaped(d, pid, status);
	}
	return vmm;
}

struct loop {
	int ep;
	int sfd;
	int resync_fd;
	int wake_fd;
	struct spec_watch *watch;
	struct pidwatch *pids;
	struct dns_server *dns; /* NULL: --dns-port 0 */
	bool resolved;		/* systemd-resolved runs: point its bridge link at us */
	bool resolved_set, resolved_failed;
	char dns_ip[16];
};

static void loop_close(struct loop *l)
{
	dns_server_free(l->dns);
	pidwatch_free(l->pids);
	spec_watch_free(l->watch);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	if (l->resync_fd >= 0)
		close(l->resync_fd);
	if (l->sfd >= 0)
		close(l->sfd);
	if (l->ep >= 0)
		close(l->ep);
}

static int epoll_add(int ep, int fd, uint64_t tag, struct bg_err *err)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return bg_error(err, errno, "epoll_ctl");
	return 0;
}

static int loop_open(struct loop *l, const struct daemon_config *cfg, struct bg_err *err)
{
	sigset_t mask;
	int r;

	memset(l, 0, sizeof(*l));
	l->ep = l->sfd = l->resync_fd = l->wake_fd = -1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return bg_error(err, errno, "sigprocmask");
	l->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->resync_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	l->wake_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (l->sfd < 0 || l->ep < 0 || l->resync_fd < 0 || l->wake_fd < 0)
		return bg_error(err, errno, "event loop setup");
	r = spec_watch_new(cfg->spec_dir, &l->watch, err);
	if (r < 0)
		return r;
	if (arm_timer(l->resync_fd, cfg->resync_ms, cfg->resync_ms) < 0)
		return bg_error(err, errno, "timerfd_settime");
	if (epoll_add(l->ep, l->sfd, TAG_SIGNAL, err) < 0 ||
	    epoll_add(l->ep, l->resync_fd, TAG_RESYNC, err) < 0 ||
	    epoll_add(l->ep, l->wake_fd, TAG_WAKE, err) < 0 ||
	    epoll_add(l->ep, spec_watch_fd(l->watch), TAG_INOTIFY, err) < 0)
		return -EIO;
	l->pids = pidwatch_new(l->ep, TAG_PIDFD);
	return 0;
}

/* The responder answers for every VM with an address; and resolved learns of it. */
static void dns_sync(struct daemon *d, struct loop *l)
{
	_cleanup_free_ char *sys = NULL;
	_cleanup_free_ struct dns_name *names = NULL;
	struct vm_record *vms = NULL;
	struct bg_err err = { 0 };
	size_t n = 0, k = 0;

	if (!l->dns)
		return;
	if (store_vm_list(d->store, &vms, &n, &err) < 0) {
		log_warn("dns: %s, keeping the old names", err.msg);
		return;
	}
	names = xcalloc(n + 1, sizeof(*names));
	for (size_t i = 0; i < n; i++)
		if (vms[i].ip && *vms[i].ip)
			names[k++] = (struct dns_name){ vms[i].name, vms[i].ip };
	dns_server_set_names(l->dns, names, k);
	vm_record_array_free(vms, n);

	/* The link exists from the first VM's converge on; resolved forgets it with the link. */
	sys = xasprintf("/sys/class/net/%s", d->cfg.bridge);
	if (access(sys, F_OK) < 0)
		l->resolved_set = false;
	else if (l->resolved && !l->resolved_set && !l->resolved_failed) {
		if (dns_resolved_set(d->cfg.bridge, l->dns_ip, &err) < 0) {
			log_warn("dns: %s; the host does not resolve *.vm", err.msg);
			l->resolved_failed = true;
		} else {
			log_info("dns: resolved sends *.vm to %s on '%s'", l->dns_ip,
				 d->cfg.bridge);
			l->resolved_set = true;
		}
	}
}

/* Read the spec dir's events; the paths they name are hints for the next pass. */
static bool watch_take(struct daemon *d, struct loop *l)
{
	char **paths;
	size_t n_paths;
	bool all;

	if (!spec_watch_drain(l->watch))
		return false;
	paths = spec_watch_take_paths(l->watch, &n_paths, &all);
	daemon_hint_paths(d, (const char *const *)paths, n_paths, all);
	spec_watch_paths_free(paths, n_paths);
	return true;
}

/* The spec cache asks whether a spec file is being written (watch.h). */
static bool watch_writing(void *ctx, const char *path)
{
	return spec_watch_is_writing(ctx, path, now_mono_ms());
}

static void run_pass(struct daemon *d, struct loop *l, bool full)
{
	struct bg_err err = { 0 };
	int64_t wake;

	/* The set of files being written is as fresh as the last drain: a write begun
	 * since (while the loop did other work) is taken in now, so this pass sees it. */
	(void)watch_take(d, l);
	if (daemon_pass(d, full, &err) < 0)
		log_err("pass failed: %s", err.msg);
	/* Give back what a burst freed: glibc keeps freed heap resident (at 1,000 VMs,
	 * 15 MiB free of a 25 MiB heap; bench/README.md, P3). Once per resync is enough. */
	if (full)
		(void)malloc_trim(0);
	dns_sync(d, l);
	sync_pidfds(l->pids, d);
	wake = d->next_wakeup ? d->next_wakeup - now_real_ms() : 0;
	if (d->next_wakeup && wake < 10)
		wake = 10;
	(void)arm_timer(l->wake_fd, d->next_wakeup ? wake : 0, 0);
}

static int run_loop(struct daemon *d, struct loop *l)
{
	char status[128];

	run_pass(d, l, true);
	snprintf(status, sizeof(status), "STATUS=watching %s", d->cfg.spec_dir);
	(void)notify_send("READY=1");
	(void)notify_send(status);
	log_notice("ready: watching '%s', state in '%s'", d->cfg.spec_dir, d->cfg.state_dir);

	for (;;) {
		struct epoll_event evs[16];
		bool pass = false, full = false;
		int n = epoll_wait(l->ep, evs, (int)ARRAY_SIZE(evs), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return log_err_errno(-errno, "epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_INOTIFY) {
				/* The first change after a quiet spell is a pass at once; what
				 * arrives during a pass waits in the queue and is one pass. The
				 * paths the events named tell the pass which files to read. */
				if (watch_take(d, l))
					pass = true;
			} else if (tag == TAG_RESYNC) {
				drain_fd(l->resync_fd);
				/* Also catch a spec dir that was removed and made again. */
				spec_watch_resync(l->watch);
				pass = full = true;
			} else if (tag == TAG_WAKE) {
				drain_fd(l->wake_fd);
				pass = true;
			} else if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;

				while (read(l->sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
						log_notice("signal %d: stopping; VMs keep running",
							   (int)si.ssi_signo);
						(void)notify_send("STOPPING=1");
						return 0;
					}
					if (si.ssi_signo == SIGHUP) {
						log_notice("SIGHUP: resync");
						pass = full = true;
					}
					if (si.ssi_signo == SIGCHLD && reap_children(d))
						pass = true;
				}
			} else if (tag == TAG_DNS) {
				dns_server_dispatch(l->dns);
			} else if (tag == TAG_PROBE) {
				/* A readiness probe has news: the pass takes it. Else the
				 * next probe's pass comes when one is due. */
				if (prober_dispatch(d->prober))
					pass = true;
				else
					wake_sooner(l->wake_fd, prober_next_due(d->prober));
			} else if (tag == TAG_PIDFD) {
				/* A VMM ended. The pass re-syncs (and closes) the watch. */
				pass = true;
			}
		}
		if (pass)
			run_pass(d, l, full);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "spec-dir", required_argument, NULL, 'S' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "subnet", required_argument, NULL, 'n' },
		{ "nat", no_argument, NULL, 'N' },
		{ "dns-port", required_argument, NULL, 'D' },
		{ "dns-resolv", required_argument, NULL, 'R' },
		{ "resync", required_argument, NULL, 'r' },
		{ "vmm", required_argument, NULL, 'm' },
		{ "firecracker", required_argument, NULL, 'f' },
		{ "qemu", required_argument, NULL, 'q' },
		{ "image-dir", required_argument, NULL, 'I' },
		{ "skip-kvm-check", no_argument, NULL, 'K' },
		{ "vmm-uids", required_argument, NULL, 'U' },
		{ "stop-timeout", required_argument, NULL, 't' },
		{ "once", no_argument, NULL, '1' },
		{ "list-failpoints", no_argument, NULL, 'L' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct daemon_config cfg = {
		.bridge = DAEMON_DEFAULT_BRIDGE,
		.subnet = DAEMON_DEFAULT_SUBNET,
		.resync_ms = DAEMON_DEFAULT_RESYNC_MS,
		.vmm = VMM_AUTO,
		.stop_grace_ms = DAEMON_DEFAULT_STOP_GRACE_MS,
		.dns_port = DNS_DEFAULT_PORT,
	};
	const char *dns_resolv = DNS_DEFAULT_RESOLV;
	struct dns_server *dns = NULL;
	const char *spec_flag = NULL, *state_flag = NULL;
	_cleanup_strv_free_ char **image_dirs = NULL;
	size_t n_image_dirs = 0;
	_cleanup_free_ char *spec_dir = NULL, *state_dir = NULL;
	struct daemon d;
	struct loop l;
	struct bg_err err = { 0 };
	bool once = false;
	int verbosity = 0, lock_fd = -1, c, r;
	uint32_t gw, net;
	unsigned prefix;
	char gw_ip[16];
	int64_t ms;

	ensure_std_fds();
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'S':
			spec_flag = optarg;
			break;
		case 's':
			state_flag = optarg;
			break;
		case 'b':
			cfg.bridge = optarg;
			break;
		case 'n':
			cfg.subnet = optarg;
			break;
		case 'N':
			cfg.nat = true;
			break;
		case 'D': {
			char *end;
			unsigned long port = strtoul(optarg, &end, 10);

			if (!*optarg || *end || port > 65535 || optarg[0] == '-') {
				fprintf(stderr, "bangerd: invalid --dns-port '%s' (0-65535)\n",
					optarg);
				return 2;
			}
			cfg.dns_port = (uint16_t)port;
			break;
		}
		case 'R':
			dns_resolv = optarg;
			break;
		case 'r':
		case 't':
			if (parse_duration_ms(optarg, &ms) < 0 || ms < (c == 'r' ? 1000 : 0) ||
			    (c == 't' && ms > STOP_TIMEOUT_MAX_MS)) {
				fprintf(stderr, "bangerd: invalid %s '%s'\n",
					c == 'r' ? "--resync" : "--stop-timeout", optarg);
				return 2;
			}
			if (c == 'r')
				cfg.resync_ms = ms;
			else
				cfg.stop_grace_ms = (int)ms;
			break;
		case 'm':
			r = vmm_kind_from_string(optarg);
			if (r < 0) {
				fprintf(stderr,
					"bangerd: invalid --vmm '%s' (auto|firecracker|qemu)\n",
					optarg);
				return 2;
			}
			cfg.vmm = (enum vmm_kind)r;
			break;
		case 'f':
			cfg.binaries[VMM_FIRECRACKER] = optarg;
			break;
		case 'q':
			cfg.binaries[VMM_QEMU] = optarg;
			break;
		case 'I':
			image_dirs = xreallocarray(image_dirs, n_image_dirs + 2, sizeof(char *));
			image_dirs[n_image_dirs++] = paths_absolute(xstrdup(optarg));
			image_dirs[n_image_dirs] = NULL;
			break;
		case 'K':
			cfg.skip_kvm_check = true;
			break;
		case 'U': {
			struct bg_err uerr = { 0 };
			uid_t first, count;

			if (vmm_sandbox_parse_uids(optarg, &first, &count, &uerr) < 0) {
				fprintf(stderr, "bangerd: %s\n", uerr.msg);
				return 2;
			}
			cfg.vmm_uids = optarg;
			break;
		}
		case '1':
			once = true;
			break;
		case 'L':
			for (const char *const *p = converge_failpoints; *p; p++)
				printf("%s\n", *p);
			return 0;
		case 'v':
			verbosity++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("bangerd %s\n", BANGER_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bangerd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	log_setup("bangerd", verbosity);
	if (ipam_parse_subnet(cfg.subnet, &gw, &net, &prefix) < 0) {
		log_err("invalid --subnet '%s': want the bridge address and prefix, e.g. %s",
			cfg.subnet, DAEMON_DEFAULT_SUBNET);
		return 2;
	}
	snprintf(gw_ip, sizeof(gw_ip), "%u.%u.%u.%u", gw >> 24, (gw >> 16) & 0xff, (gw >> 8) & 0xff,
		 gw & 0xff);
	/* Everything bangerd creates is private unless it says otherwise (the spec dir). */
	umask(077);
	/* Relative directories would move with every chdir of a child and name nothing
	 * useful in handles, logs and the store: made absolute once, here. */
	spec_dir = paths_absolute(paths_spec_dir(spec_flag));
	state_dir = paths_absolute(paths_state_dir(state_flag));
	cfg.spec_dir = spec_dir;
	cfg.state_dir = state_dir;
	if (!n_image_dirs) {
		image_dirs = xcalloc(2, sizeof(char *));
		image_dirs[n_image_dirs++] = xstrdup(IMGPATH_DEFAULT_ROOT);
	}
	cfg.image_dirs = (const char *const *)image_dirs;
	cfg.n_image_dirs = n_image_dirs;
	if (failpoint_armed())
		log_warn("failpoint '%s' is armed", failpoint_armed());
	raise_fd_limit();

	r = fs_mkdir_p(state_dir, 0700, &err);
	if (r >= 0 && !fs_exists(spec_dir))
		r = fs_mkdir_p(spec_dir, 0755, &err);
	if (r >= 0)
		r = take_lock(state_dir, &lock_fd, &err);
	if (r < 0) {
		log_err("%s", err.msg);
		return 1;
	}
	if (cfg.dns_port && !once) {
		struct dns_config dc = { .port = cfg.dns_port,
					 .subnet = net,
					 .subnet_prefix = prefix,
					 .resolv_conf = dns_resolv };
		dc.listen_ip = gw_ip;
		/* A port taken by another resolver costs the names, not the VMs. */
		if (dns_server_new(&dc, &dns, &err) < 0) {
			log_err("%s: no DNS for guests (--dns-port 0 turns it off)", err.msg);
			bg_err_clear(&err);
			cfg.dns_port = 0;
		} else {
			log_info("dns: answering *.vm on %s:%u, forwarding to the resolvers in "
				 "'%s'",
				 gw_ip, (unsigned)cfg.dns_port, dns_resolv);
		}
	}
	r = daemon_init(&d, &cfg, &err);
	if (r < 0) {
		log_err("%s", err.msg);
		dns_server_free(dns);
		close(lock_fd);
		return 1;
	}
	if (once) {
		r = daemon_pass(&d, true, &err);
		if (r < 0)
			log_err("%s", err.msg);
		daemon_fini(&d);
		close(lock_fd);
		return r < 0 ? 1 : 0;
	}
	r = loop_open(&l, &cfg, &err);
	if (r >= 0)
		r = epoll_add(l.ep, prober_fd(d.prober), TAG_PROBE, &err);
	l.dns = TAKE_PTR(dns);
	if (r >= 0 && l.dns) {
		snprintf(l.dns_ip, sizeof(l.dns_ip), "%s", gw_ip);
		l.resolved = dns_resolved_present();
		r = epoll_add(l.ep, dns_server_fd(l.dns), TAG_DNS, &err);
	}
	if (r < 0) {
		log_err("%s", err.msg);
	} else {
		daemon_set_writing(&d, watch_writing, l.watch);
		r = run_loop(&d, &l);
		daemon_set_writing(&d, NULL, NULL);
	}
	if (l.resolved_set && dns_resolved_revert(cfg.bridge, &err) < 0)
		log_warn("dns: %s, ignoring", err.msg);
	loop_close(&l);
	daemon_fini(&d);
	close(lock_fd);
	return r < 0 ? 1 : 0;
}
