/*
 * test_cli.c - CLI verbs run in-process against a temporary spec dir and
 * state dir (a store written here stands in for bangerd): diff's exit codes,
 * '-f -' edge cases, delete with repeated names, logs --tail, the --wait
 * judgement, and status sampling CPU once for all VMs.
 *
 * stdout and stderr are redirected to files for each run and compared.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "cli/vmview.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/paths.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "reconciler/handles.h"
#include "reconciler/store.h"
#include "spec/spec.h"
#include "tests/lib/testutil.h"

/* cli/main.c is not linked into tests. */
void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("banger: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct fixture {
	char *dir;
	char *spec_dir;
	char *state_dir;
	struct cli_ctx ctx;
};

struct run {
	int rc;
	char *out;
	char *err;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->dir = test_tmpdir("bg-cli");
	f->spec_dir = fs_path_join(f->dir, "vms.d");
	f->state_dir = fs_path_join(f->dir, "state");
	assert_int_equal(mkdir(f->spec_dir, 0755), 0);
	assert_int_equal(mkdir(f->state_dir, 0700), 0);
	f->ctx.spec_dir = f->spec_dir;
	f->ctx.state_dir = f->state_dir;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	test_rmtree(f->dir);
	free(f->dir);
	free(f->spec_dir);
	free(f->state_dir);
	free(f);
	unsetenv("BANGER_EXTERNAL_DIFF");
	return 0;
}

static char *slurp(const char *path)
{
	struct bg_err err = { 0 };
	char *data = NULL;

	if (fs_read_file(path, 4 << 20, &data, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return data;
}

static void run_release(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

typedef int (*verb_fn)(const struct cli_ctx *ctx, int argc, char **argv);

/*
 * Run a verb with ARGS... (argv[0] is the verb) with stdin from stdin_path,
 * or through a pipe from that file when 'piped' (as in 'cat f | banger ...').
 */
static struct run run_verb_v(const struct fixture *f, verb_fn fn, const char *stdin_path,
			     bool piped, va_list ap)
{
	_cleanup_free_ char *out_path = fs_path_join(f->dir, "out");
	_cleanup_free_ char *err_path = fs_path_join(f->dir, "err");
	char *argv[64];
	int argc = 0, saved[3], fd;
	pid_t cat = 0;
	struct run r;

	for (const char *a; (a = va_arg(ap, const char *));) {
		assert_true(argc < 63);
		argv[argc++] = (char *)a;
	}
	argv[argc] = NULL;

	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++)
		saved[i] = dup(i);
	if (piped) {
		const char *cat_argv[] = { "cat", stdin_path, NULL };
		struct proc_spawn_opts o = PROC_SPAWN_OPTS_INIT;
		int p[2];

		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		o.stdout_fd = p[1];
		o.stderr_fd = saved[2];
		assert_int_equal(proc_spawn(cat_argv, &o, &cat, NULL), 0);
		close(p[1]);
		fd = p[0];
	} else {
		fd = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
	}
	assert_true(fd >= 0);
	dup2(fd, 0);
	close(fd);
	fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	dup2(fd, 1);
	close(fd);
	fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	dup2(fd, 2);
	close(fd);

	optind = 0;
	r.rc = fn(&f->ctx, argc, argv);

	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++) {
		dup2(saved[i], i);
		close(saved[i]);
	}
	if (cat > 0) /* the pipe's last reader is gone: cat ends (EPIPE) if it has not */
		assert_int_equal(proc_wait_gone(cat, 0, 10000), 0);
	r.out = slurp(out_path);
	r.err = slurp(err_path);
	return r;
}

static struct run run_verb(const struct fixture *f, verb_fn fn, const char *stdin_path, ...)
{
	struct run r;
	va_list ap;

	va_start(ap, stdin_path);
	r = run_verb_v(f, fn, stdin_path, false, ap);
	va_end(ap);
	return r;
}

static struct run run_verb_piped(const struct fixture *f, verb_fn fn, const char *stdin_path, ...)
{
	struct run r;
	va_list ap;

	va_start(ap, stdin_path);
	r = run_verb_v(f, fn, stdin_path, true, ap);
	va_end(ap);
	return r;
}

/* A valid VM document; the rootfs image carries the name so a mixed-up splice shows. */
static char *vm_doc(const char *name, unsigned mem)
{
	return xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: %s\nspec:\n"
			 "  memoryMiB: %u\n  kernel:\n    path: /k/vmlinux\n  rootfs:\n"
			 "    image: /images/%s.ext4\n",
			 name, mem, name);
}

static char *write_in(const struct fixture *f, const char *name, const char *text)
{
	char *path = fs_path_join(f->dir, name);

	test_write_file(path, text);
	return path;
}

/* ---- diff ------------------------------------------------------------------------------ */

static void test_diff_exit_codes(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *doc = vm_doc("web", 256), *doc2 = vm_doc("web", 512);
	_cleanup_free_ char *live = fs_path_join(f->spec_dir, "web.yaml");
	_cleanup_free_ char *same = write_in(f, "same.yaml", doc);
	_cleanup_free_ char *changed = write_in(f, "changed.yaml", doc2);
	_cleanup_free_ char *broken =
		write_in(f, "broken-diff", "#!/bin/sh\necho 'diff: cannot compare' >&2\nexit 2\n");
	struct run r;

	(void)state;
	test_write_file(live, doc);
	assert_int_equal(chmod(broken, 0755), 0);

	r = run_verb(f, cmd_diff, NULL, "diff", "-f", same, NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "");
	run_release(&r);

	r = run_verb(f, cmd_diff, NULL, "diff", "-f", changed, NULL);
	assert_int_equal(r.rc, 1);
	assert_non_null(strstr(r.out, "-  memoryMiB: 256\n+  memoryMiB: 512\n"));
	assert_string_equal(r.err, "");
	run_release(&r);

	/* diff(1) itself failing (status 2) is an error, not "differs". */
	setenv("BANGER_EXTERNAL_DIFF", broken, 1);
	r = run_verb(f, cmd_diff, NULL, "diff", "-f", changed, NULL);
	assert_int_equal(r.rc, 2);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "diff: cannot compare\n"));
	assert_non_null(strstr(r.err, "failed with status 2"));
	run_release(&r);

	/* A diff program that cannot run at all. */
	setenv("BANGER_EXTERNAL_DIFF", "/nonexistent/banger-diff", 1);
	r = run_verb(f, cmd_diff, NULL, "diff", "-f", changed, NULL);
	assert_int_equal(r.rc, 2);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "exec '/nonexistent/banger-diff'"));
	run_release(&r);

	/* A diff program that answers "differs" with status 1. */
	setenv("BANGER_EXTERNAL_DIFF", "false", 1);
	r = run_verb(f, cmd_diff, NULL, "diff", "-f", changed, NULL);
	assert_int_equal(r.rc, 1);
	run_release(&r);
	unsetenv("BANGER_EXTERNAL_DIFF");
}

/* ---- -f - ------------------------------------------------------------------------------- */

static bool file_has(const char *path, const char *needle)
{
	_cleanup_free_ char *data = NULL;

	if (fs_read_file(path, 4 << 20, &data, NULL, NULL) < 0)
		return false;
	return strstr(data, needle) != NULL;
}

static void test_stdin_twice(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *doc = vm_doc("web", 256);
	_cleanup_free_ char *in = write_in(f, "in.yaml", doc);
	_cleanup_free_ char *target = fs_path_join(f->spec_dir, "web.yaml");
	struct run r;

	/* A usage error (exit 2) before anything is read or written. */
	r = run_verb(f, cmd_apply, in, "apply", "-f", "-", "-f", "-", NULL);
	assert_int_equal(r.rc, 2);
	assert_non_null(strstr(r.err, "'-' (stdin) can be given only once"));
	assert_string_equal(r.out, "");
	assert_false(fs_exists(target));
	run_release(&r);

	r = run_verb(f, cmd_diff, in, "diff", "-f", "-", "-f", "-", NULL);
	assert_int_equal(r.rc, 2);
	run_release(&r);

	r = run_verb(f, cmd_validate, in, "validate", "-f", "-", "-f", "-", NULL);
	assert_int_equal(r.rc, 2);
	run_release(&r);

	test_write_file(target, doc);
	r = run_verb(f, cmd_delete, in, "delete", "-f", "-", "-f", "-", NULL);
	assert_int_equal(r.rc, 2);
	assert_true(fs_exists(target));
	run_release(&r);

	/* Once is fine. */
	r = run_verb(f, cmd_delete, in, "delete", "-f", "-", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "vm/web deleted\n");
	assert_false(fs_exists(target));
	run_release(&r);
}

/*
 * stdin over 1 MiB is an error, and nothing of it is parsed: not even the
 * tail that is left unread after the cap (here a valid document naming a VM
 * of the spec dir, which 'delete -f -' must not delete).
 */
static void test_stdin_too_big(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *victim = vm_doc("victim", 256);
	_cleanup_free_ char *in = fs_path_join(f->dir, "big.yaml");
	_cleanup_free_ char *target = fs_path_join(f->spec_dir, "victim.yaml");
	size_t pad = SPEC_FILE_MAX + SPEC_FILE_MAX / 2;
	char *big = xmalloc(pad + strlen(victim) + 8);
	struct run r;

	memset(big, '\n', pad);
	snprintf(big + pad, strlen(victim) + 8, "---\n%s", victim);
	test_write_file(in, big);
	free(big);
	test_write_file(target, victim);

	r = run_verb_piped(f, cmd_delete, in, "delete", "-f", "-", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "larger than"));
	assert_true(file_has(target, "name: victim"));
	run_release(&r);

	r = run_verb_piped(f, cmd_apply, in, "apply", "-f", "-", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.out, "");
	run_release(&r);

	r = run_verb_piped(f, cmd_validate, in, "validate", "-f", "-", NULL);
	assert_int_equal(r.rc, 1);
	assert_string_equal(r.out, "");
	run_release(&r);
}

/* ---- apply / delete ---------------------------------------------------------------------- */

/* Load a file and return the VM names it defines, "a,b,c" (owned), or "ERR" on errors. */
static char *names_in(const char *path)
{
	struct spec_set set;
	char s[1024] = "";

	spec_set_init(&set);
	if (spec_load_path(&set, path) > 0 || spec_set_finish(&set) > 0) {
		spec_set_release(&set);
		return xstrdup("ERR");
	}
	for (size_t i = 0; i < set.n_specs; i++) {
		size_t len = strlen(s);

		snprintf(s + len, sizeof(s) - len, "%s%s", len ? "," : "", set.specs[i]->name);
	}
	spec_set_release(&set);
	return xstrdup(s);
}

/* A multi-document file of VMs named by the NULL-terminated list. Owned text. */
static char *fleet(const char *first, ...)
{
	char *text = xstrdup("");
	va_list ap;

	va_start(ap, first);
	for (const char *n = first; n; n = va_arg(ap, const char *)) {
		_cleanup_free_ char *doc = vm_doc(n, 256);
		char *next = xasprintf("%s%s%s", text, n == first ? "" : "---\n", doc);

		free(text);
		text = next;
	}
	va_end(ap);
	return text;
}

/* delete -f FILE with many documents: more names than arguments (a heap overflow once). */
static void test_delete_many_from_file(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *text = fleet("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", NULL);
	_cleanup_free_ char *live = fs_path_join(f->spec_dir, "fleet.yaml");
	_cleanup_free_ char *keep = fs_path_join(f->spec_dir, "keep.yaml");
	_cleanup_free_ char *keep_doc = vm_doc("keep", 256);
	_cleanup_free_ char *in = write_in(f, "in.yaml", text);
	struct run r;

	test_write_file(live, text);
	test_write_file(keep, keep_doc);
	r = run_verb(f, cmd_delete, NULL, "delete", "-f", in, NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "vm/a deleted\nvm/b deleted\nvm/c deleted\nvm/d deleted\n"
				   "vm/e deleted\nvm/f deleted\nvm/g deleted\nvm/h deleted\n"
				   "vm/i deleted\nvm/j deleted\n");
	assert_false(fs_exists(live));
	assert_true(fs_exists(keep));
	run_release(&r);
}

/* The same name twice (or on the command line and in -f) deletes that VM once, and only it. */
static void test_delete_repeated_name(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *text = fleet("a", "b", "c", NULL);
	_cleanup_free_ char *live = fs_path_join(f->spec_dir, "abc.yaml");
	_cleanup_free_ char *doc_a = vm_doc("a", 256);
	_cleanup_free_ char *in = write_in(f, "a.yaml", doc_a);
	char *names;
	struct run r;

	test_write_file(live, text);
	r = run_verb(f, cmd_delete, NULL, "delete", "a", "a", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "vm/a deleted\n");
	names = names_in(live);
	assert_string_equal(names, "b,c");
	free(names);
	run_release(&r);

	test_write_file(live, text);
	r = run_verb(f, cmd_delete, NULL, "delete", "a", "-f", in, NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "vm/a deleted\n");
	names = names_in(live);
	assert_string_equal(names, "b,c");
	free(names);
	run_release(&r);

	/* The middle one. */
	test_write_file(live, text);
	r = run_verb(f, cmd_delete, NULL, "delete", "b", "b", "b", NULL);
	assert_int_equal(r.rc, 0);
	names = names_in(live);
	assert_string_equal(names, "a,c");
	free(names);
	run_release(&r);
}

/*
 * A spec file that is a symlink to a file inside the spec dir (a Kubernetes ConfigMap's
 * layout) is edited through: the link stays, its target changes.
 */
static void test_apply_through_symlink(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *text = fleet("a", "b", NULL);
	_cleanup_free_ char *real_dir = fs_path_join(f->spec_dir, "..data");
	_cleanup_free_ char *real = fs_path_join(real_dir, "ab.yaml");
	_cleanup_free_ char *link = fs_path_join(f->spec_dir, "ab.yaml");
	_cleanup_free_ char *doc_b = vm_doc("b", 1024);
	_cleanup_free_ char *in = write_in(f, "b.yaml", doc_b);
	char *names;
	struct stat st;
	struct run r;

	assert_int_equal(mkdir(real_dir, 0755), 0);
	test_write_file(real, text);
	assert_int_equal(chmod(real, 0640), 0);
	assert_int_equal(symlink("..data/ab.yaml", link), 0);

	r = run_verb(f, cmd_apply, NULL, "apply", "-f", in, NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "vm/b configured\n");
	run_release(&r);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat(real, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_true(file_has(real, "memoryMiB: 1024"));
	names = names_in(real);
	assert_string_equal(names, "a,b");
	free(names);

	/* Deleting every VM of the file removes the target; the dangling link is left. */
	r = run_verb(f, cmd_delete, NULL, "delete", "a", "b", NULL);
	assert_int_equal(r.rc, 0);
	run_release(&r);
	assert_false(fs_exists(real));
}

/* ---- a store standing in for bangerd ---------------------------------------------------- */

static struct store *store_rw(const struct fixture *f)
{
	_cleanup_free_ char *db = paths_db(f->state_dir);
	struct bg_err err = { 0 };
	struct store *s = NULL;

	if (store_open(db, STORE_READ_WRITE, &s, &err) < 0)
		fail_msg("%s", err.msg);
	return s;
}

/* Insert a record for 'name' (phase as given) and return it in *rec (owned). */
static void record_add(struct store *s, const char *name, enum vm_phase phase,
		       struct vm_record *rec)
{
	struct bg_err err = { 0 };

	memset(rec, 0, sizeof(*rec));
	rec->name = xstrdup(name);
	rec->phase = phase;
	rec->desired_state = VM_DESIRED_RUNNING;
	rec->generation = 1;
	rec->last_exit = -1;
	if (store_vm_insert(s, rec, &err) < 0)
		fail_msg("%s", err.msg);
}

static void record_update(struct store *s, const struct vm_record *rec)
{
	struct bg_err err = { 0 };

	if (store_vm_update(s, rec, &err) < 0)
		fail_msg("%s", err.msg);
}

/* ---- logs ------------------------------------------------------------------------------ */

static void test_logs_tail(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = store_rw(f);
	_cleanup_free_ char *log = fs_path_join(f->dir, "console.log");
	struct vm_record rec;
	struct run r;

	test_write_file(log, "one\ntwo\nthree\n");
	record_add(s, "web", VM_PHASE_RUNNING, &rec);
	rec.console_log = xstrdup(log);
	record_update(s, &rec);
	vm_record_release(&rec);

	r = run_verb(f, cmd_logs, NULL, "logs", "web", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "one\ntwo\nthree\n");
	run_release(&r);
	r = run_verb(f, cmd_logs, NULL, "logs", "web", "--tail", "2", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "two\nthree\n");
	run_release(&r);
	r = run_verb(f, cmd_logs, NULL, "logs", "web", "--tail", "5", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "one\ntwo\nthree\n");
	run_release(&r);
	/* --tail 0: nothing at all (with -f, only what comes next). */
	r = run_verb(f, cmd_logs, NULL, "logs", "web", "--tail", "0", NULL);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.out, "");
	assert_string_equal(r.err, "");
	run_release(&r);
	/* A last line without a newline is a line. */
	test_write_file(log, "one\ntwo");
	r = run_verb(f, cmd_logs, NULL, "logs", "web", "--tail", "1", NULL);
	assert_string_equal(r.out, "two");
	run_release(&r);
	r = run_verb(f, cmd_logs, NULL, "logs", "web", "--tail", "0", NULL);
	assert_string_equal(r.out, "");
	run_release(&r);
}

/*
 * apply --wait reads each VM's failure count before it writes: a VM that is
 * Failed with this very spec and no newer failure is waited for, not
 * reported with its old error.
 */
static void test_apply_wait_old_failure(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = store_rw(f);
	_cleanup_free_ char *doc = vm_doc("web", 256);
	_cleanup_free_ char *live = fs_path_join(f->spec_dir, "web.yaml");
	_cleanup_free_ char *in = write_in(f, "in.yaml", doc);
	struct spec_set set;
	struct vm_record rec;
	struct run r;

	test_write_file(live, doc);
	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, in), 0);
	record_add(s, "web", VM_PHASE_FAILED, &rec);
	spec_hash(set.specs[0], rec.spec_hash);
	spec_set_release(&set);
	rec.failures = 2;
	rec.last_error = xstrdup("old error");
	record_update(s, &rec);
	vm_record_release(&rec);

	r = run_verb(f, cmd_apply, NULL, "apply", "-f", in, "--wait", "--timeout", "1s", NULL);
	assert_int_equal(r.rc, 1);
	assert_null(strstr(r.out, "old error"));
	assert_non_null(strstr(r.out, "vm/web unchanged\nvm/web Failed (0.0s)\n"));
	assert_non_null(strstr(r.err, "timed out after 1s waiting for vm/web (Failed)"));
	run_release(&r);
}

/* ---- status ---------------------------------------------------------------------------- */

/*
 * status -o json|yaml|wide gives each running VM's CPU averaged over its life
 * and its RSS from /proc/<pid>/stat, without a sampling window to sleep in.
 */
static void test_status_no_sample(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = store_rw(f);
	struct vm_handles h = { .pid = getpid() };
	struct bg_err err = { 0 };
	const char *outputs[] = { "json", "yaml", "wide" };
	struct run r;

	assert_int_equal(proc_start_time(h.pid, &h.start_time, &err), 0);
	for (int i = 0; i < 5; i++) {
		_cleanup_free_ char *name = xasprintf("vm-%d", i);
		struct vm_record rec;

		record_add(s, name, VM_PHASE_RUNNING, &rec);
		rec.vm_dir = fs_path_join(f->state_dir, rec.id);
		assert_int_equal(mkdir(rec.vm_dir, 0700), 0);
		assert_int_equal(handles_save(rec.vm_dir, &h, &err), 0);
		record_update(s, &rec);
		vm_record_release(&rec);
	}
	for (size_t i = 0; i < ARRAY_SIZE(outputs); i++) {
		int64_t t0 = now_mono_ms(), took;

		r = run_verb(f, cmd_status, NULL, "status", "-o", outputs[i], NULL);
		took = now_mono_ms() - t0;
		assert_int_equal(r.rc, 0);
		print_message("status -o %s with 5 running VMs: %lld ms\n", outputs[i],
			      (long long)took);
		/* The old 200 ms sample took at least 200 ms; five stat reads take far less. */
		assert_true(took < 200);
		if (i == 0) {
			const char *p = r.out;
			int n = 0;

			while ((p = strstr(p, "\"cpuPercentAvg\""))) {
				const char *v = strchr(p, ':');
				double pct;

				assert_non_null(v);
				pct = strtod(v + 1, NULL); /* strtod skips the spacing */

				/* Of one CPU: at most all of them. */
				assert_true(pct >= 0 &&
					    pct <= 100.0 * sysconf(_SC_NPROCESSORS_ONLN));
				n++;
				p++;
			}
			assert_int_equal(n, 5);
			assert_null(strstr(r.out, "\"cpuPercent\""));
			assert_non_null(strstr(r.out, "\"rssBytes\""));
		}
		if (i == 2)
			assert_non_null(strstr(r.out, "AVGCPU%"));
		run_release(&r);
	}
}

/*
 * describe samples one VM over a window: a VMM that spins gets a CPU share
 * well above zero and its resident size, from /proc/<pid>/stat.
 */
static void test_describe_samples(void **state)
{
	struct vm_record rec = { .name = (char *)"busy" };
	struct vm_view v;
	struct bg_err err = { 0 };
	pid_t pid = fork();
	int status;

	(void)state;
	assert_true(pid >= 0);
	if (pid == 0) {
		for (;;)
			;
	}
	memset(&v, 0, sizeof(v));
	v.rec = &rec;
	v.cpu_percent = -1;
	v.handles.pid = pid;
	assert_int_equal(proc_start_time(pid, &v.handles.start_time, &err), 0);
	v.liveness = VM_LIVENESS_ALIVE;
	vm_view_measure(&v, 300);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_false(v.cpu_lifetime);
	assert_true(v.cpu_percent > 10 && v.cpu_percent < 250);
	assert_true(v.rss_bytes > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_diff_exit_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logs_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stdin_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stdin_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_many_from_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_repeated_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_through_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_wait_old_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_no_sample, setup, teardown),
		cmocka_unit_test(test_describe_samples),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
