/*
 * test_wait.c - cli/wait.c, what 'apply --wait' and 'delete --wait' make of
 * the records bangerd writes: the judgement as a table (the .c is included
 * to reach judge_applied()), then cli_wait() against a real store that this
 * test updates while a forked child waits, as bangerd would.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/wait.c"
#include "common/fs.h"
#include "common/paths.h"
#include "common/proc.h"
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

#define OURS "1111111111111111111111111111111111111111111111111111111111111111"
#define OLD "2222222222222222222222222222222222222222222222222222222222222222"

/* ---- the judgement ------------------------------------------------------------------- */

struct row {
	const char *what;
	const char *hash;
	enum vm_phase phase;
	const char *action; /* and step */
	int failures;
	int64_t generation, observed;
	enum tstate want;
};

static void run_rows(const struct wait_target *t, const struct row *rows, size_t n)
{
	int base = t->failures_before;

	for (size_t i = 0; i < n; i++) {
		const struct row *w = &rows[i];
		struct vm_record rec = { .phase = w->phase, .failures = w->failures };
		enum tstate got;

		snprintf(rec.spec_hash, sizeof(rec.spec_hash), "%s", w->hash);
		rec.action = (char *)w->action;
		rec.step = (char *)(w->action ? "boot" : NULL);
		rec.generation = w->generation;
		rec.observed_generation = w->observed;
		got = judge_applied(t, &rec, &base);
		if (got != w->want)
			fail_msg("row %zu (%s): got %d, want %d", i, w->what, got, w->want);
	}
}

static void test_judge(void **state)
{
	struct wait_target t = { .name = "web",
				 .goal = WAIT_APPLIED,
				 .hash = OURS,
				 .state = VM_DESIRED_RUNNING,
				 .failures_before = 2 };
	/* A Failed VM gets a fixed spec: bangerd takes the hash while it is still Failed. */
	static const struct row fixed[] = {
		{ "old spec, still failed", OLD, VM_PHASE_FAILED, NULL, 2, 1, 1, T_WAITING },
		{ "new hash, old failure", OURS, VM_PHASE_FAILED, NULL, 2, 2, 1, T_WAITING },
		{ "restarting", OURS, VM_PHASE_STARTING, "restart", 2, 2, 1, T_WAITING },
		{ "up, not yet with this generation", OURS, VM_PHASE_RUNNING, NULL, 2, 2, 1,
		  T_WAITING },
		{ "running this spec", OURS, VM_PHASE_RUNNING, NULL, 2, 2, 2, T_DONE },
	};
	/* The new spec fails too. */
	static const struct row fails[] = {
		{ "new hash, old failure", OURS, VM_PHASE_FAILED, NULL, 2, 2, 1, T_WAITING },
		{ "failed, but a step is in progress", OURS, VM_PHASE_FAILED, "restart", 3, 2, 1,
		  T_WAITING },
		{ "failed with this spec", OURS, VM_PHASE_FAILED, NULL, 3, 2, 1, T_FAILED },
	};
	/* The old spec fails once more before bangerd takes the new one. */
	static const struct row old_fails_again[] = {
		{ "old spec fails again", OLD, VM_PHASE_FAILED, NULL, 3, 1, 1, T_WAITING },
		{ "new hash, that old failure", OURS, VM_PHASE_FAILED, NULL, 3, 2, 1, T_WAITING },
		{ "failed with this spec", OURS, VM_PHASE_FAILED, NULL, 4, 2, 1, T_FAILED },
	};
	/* Failures forgiven after a stable run, then a failure of this spec. */
	static const struct row forgiven[] = {
		{ "running, forgiven", OURS, VM_PHASE_STARTING, NULL, 0, 2, 1, T_WAITING },
		{ "failed with this spec", OURS, VM_PHASE_FAILED, NULL, 1, 2, 1, T_FAILED },
	};
	/* A new VM: no record before (-1). */
	static const struct row fresh[] = {
		{ "first attempt failed", OURS, VM_PHASE_FAILED, NULL, 1, 1, 0, T_FAILED },
	};
	static const struct row stopped[] = {
		{ "stopping", OURS, VM_PHASE_STOPPING, "stop", 0, 1, 1, T_WAITING },
		{ "stopped", OURS, VM_PHASE_STOPPED, NULL, 0, 1, 1, T_DONE },
	};

	(void)state;
	run_rows(&t, fixed, ARRAY_SIZE(fixed));
	run_rows(&t, fails, ARRAY_SIZE(fails));
	run_rows(&t, old_fails_again, ARRAY_SIZE(old_fails_again));
	run_rows(&t, forgiven, ARRAY_SIZE(forgiven));
	t.failures_before = -1;
	run_rows(&t, fresh, ARRAY_SIZE(fresh));
	t.state = VM_DESIRED_STOPPED;
	run_rows(&t, stopped, ARRAY_SIZE(stopped));
}

/* ---- cli_wait() against a store ------------------------------------------------------ */

struct fixture {
	char *dir;
	char *out;
	struct cli_ctx ctx;
	struct store *s;
	struct vm_record rec;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	_cleanup_free_ char *db = NULL;
	struct bg_err err = { 0 };

	f->dir = test_tmpdir("bg-wait");
	f->out = fs_path_join(f->dir, "out");
	f->ctx.spec_dir = f->dir;
	f->ctx.state_dir = f->dir;
	db = paths_db(f->dir);
	if (store_open(db, STORE_READ_WRITE, &f->s, &err) < 0)
		fail_msg("%s", err.msg);
	f->rec.name = xstrdup("web");
	f->rec.phase = VM_PHASE_FAILED;
	f->rec.desired_state = VM_DESIRED_RUNNING;
	f->rec.generation = 1;
	f->rec.last_exit = -1;
	f->rec.failures = 2;
	f->rec.last_error = xstrdup("old error");
	snprintf(f->rec.spec_hash, sizeof(f->rec.spec_hash), "%s", OLD);
	if (store_vm_insert(f->s, &f->rec, &err) < 0)
		fail_msg("%s", err.msg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vm_record_release(&f->rec);
	store_free(f->s);
	test_rmtree(f->dir);
	free(f->dir);
	free(f->out);
	free(f);
	return 0;
}

static void update(struct fixture *f)
{
	struct bg_err err = { 0 };

	if (store_vm_update(f->s, &f->rec, &err) < 0)
		fail_msg("%s", err.msg);
}

/* Start cli_wait() in a child, its stdout and stderr into f->out. */
static pid_t wait_in_child(const struct fixture *f, const struct wait_target *t, int64_t timeout_ms)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(f->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		dup2(fd, 1);
		dup2(fd, 2);
		_exit(cli_wait(&f->ctx, t, 1, timeout_ms));
	}
	return pid;
}

static int child_rc(pid_t pid)
{
	int status;

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static char *out_of(const struct fixture *f)
{
	char *data = NULL;

	if (fs_read_file(f->out, 1 << 20, &data, NULL, NULL) < 0)
		return xstrdup("");
	return data;
}

struct seen {
	const struct fixture *f;
	const char *text;
};

static bool out_has(void *arg)
{
	const struct seen *w = arg;
	_cleanup_free_ char *out = out_of(w->f);

	return strstr(out, w->text) != NULL;
}

/*
 * A Failed VM gets a fixed spec: bangerd writes the new hash while the phase
 * is still Failed with the old error. That old failure is not the new spec's
 * (it once printed "Failed: old error" and exited 1); then the VM runs.
 */
static void test_old_failure_is_not_ours(void **state)
{
	struct fixture *f = *state;
	struct wait_target t = { .name = "web",
				 .goal = WAIT_APPLIED,
				 .hash = OURS,
				 .state = VM_DESIRED_RUNNING,
				 .failures_before = 2 };
	struct seen first = { f, "vm/web Failed (0.0s)\n" };
	pid_t pid;

	pid = wait_in_child(f, &t, 1500);
	assert_true(test_wait_for(out_has, &first, 10000));
	/* bangerd takes the new spec; the record still says Failed: old error. */
	snprintf(f->rec.spec_hash, sizeof(f->rec.spec_hash), "%s", OURS);
	f->rec.generation = 2;
	update(f);
	assert_int_equal(child_rc(pid), CLI_EXIT_FAIL);
	{
		_cleanup_free_ char *out = out_of(f);

		assert_null(strstr(out, "old error"));
		assert_non_null(strstr(out, "timed out after 2s waiting for vm/web (Failed)"));
	}

	/* Then it restarts and runs this spec. */
	pid = wait_in_child(f, &t, 10000);
	assert_true(test_wait_for(out_has, &first, 10000));
	f->rec.phase = VM_PHASE_RUNNING;
	f->rec.observed_generation = 2;
	update(f);
	assert_int_equal(child_rc(pid), CLI_EXIT_OK);
	{
		_cleanup_free_ char *out = out_of(f);

		assert_non_null(strstr(out, "vm/web Running ("));
	}
}

/* A failure counted after the spec was written is the new spec's. */
static void test_new_failure_is_ours(void **state)
{
	struct fixture *f = *state;
	struct wait_target t = { .name = "web",
				 .goal = WAIT_APPLIED,
				 .hash = OURS,
				 .state = VM_DESIRED_RUNNING,
				 .failures_before = 2 };
	struct seen first = { f, "vm/web Failed (0.0s)\n" };
	pid_t pid;

	pid = wait_in_child(f, &t, 10000);
	assert_true(test_wait_for(out_has, &first, 10000));
	snprintf(f->rec.spec_hash, sizeof(f->rec.spec_hash), "%s", OURS);
	f->rec.failures = 3;
	free(f->rec.last_error);
	f->rec.last_error = xstrdup("restart boot: new error");
	update(f);
	assert_int_equal(child_rc(pid), CLI_EXIT_FAIL);
	{
		_cleanup_free_ char *out = out_of(f);

		assert_non_null(strstr(out, "): restart boot: new error\n"));
	}
}

/* delete --wait: only "no such record" means gone; a store error is an error. */
static void test_gone(void **state)
{
	struct fixture *f = *state;
	struct wait_target t = { .name = "web", .goal = WAIT_GONE };
	_cleanup_free_ char *db = paths_db(f->dir);
	const char *rename_table[] = { "sqlite3", db, "ALTER TABLE vms RENAME TO vms_elsewhere",
				       NULL };
	struct bg_err err = { 0 };
	pid_t pid;

	/* The record goes: deleted. */
	pid = wait_in_child(f, &t, 10000);
	assert_int_equal(store_vm_delete(f->s, f->rec.id, &err), 0);
	assert_int_equal(child_rc(pid), CLI_EXIT_OK);
	{
		_cleanup_free_ char *out = out_of(f);

		assert_non_null(strstr(out, "vm/web deleted ("));
	}

	/* The store cannot answer: an error, never "deleted". */
	store_free(f->s);
	f->s = NULL;
	assert_int_equal(proc_run(rename_table, 10000, NULL, &err), 0);
	pid = wait_in_child(f, &t, 10000);
	assert_int_equal(child_rc(pid), CLI_EXIT_FAIL);
	{
		_cleanup_free_ char *out = out_of(f);

		assert_null(strstr(out, "deleted"));
		assert_non_null(strstr(out, "banger: vm/web: "));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_judge),
		cmocka_unit_test_setup_teardown(test_old_failure_is_not_ours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_failure_is_ours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gone, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
