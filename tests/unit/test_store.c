/*
 * test_store.c - reconciler/store.c on a temp dir: connection settings,
 * migrations (atomic, crash mid-way, refusing newer/foreign files), every
 * query, read-only access next to and after a writer, BUSY retry, IPAM,
 * events, the daemon row.
 *
 * Includes store.c to reach its knobs (busy timeout, write deadline, events
 * cap, migration list and hook) and the raw connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "reconciler/store.c"

#include "common/fs.h"
#include "tests/lib/testutil.h"

struct fixture {
	char *dir;
	char *db;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->dir = test_tmpdir("bg-store");
	f->db = fs_path_join(f->dir, "banger.db");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	test_rmtree(f->dir);
	free(f->dir);
	free(f->db);
	free(f);
	/* Tests that swap these put them back, but never leak one into the next test. */
	migrations = schema_steps;
	n_migrations = ARRAY_SIZE(schema_steps);
	migrate_hook = NULL;
	return 0;
}

static struct store *open_rw(const char *db)
{
	struct bg_err err = { 0 };
	struct store *s = NULL;
	int r = store_open(db, STORE_READ_WRITE, &s, &err);

	if (r < 0)
		fail_msg("store_open(%s): %s", db, err.msg);
	return s;
}

static struct store *open_ro(const char *db)
{
	struct bg_err err = { 0 };
	struct store *s = NULL;
	int r = store_open(db, STORE_READ_ONLY, &s, &err);

	if (r < 0)
		fail_msg("store_open(%s, read-only): %s", db, err.msg);
	return s;
}

static int64_t pragma(struct store *s, const char *name)
{
	int64_t v = -1;

	assert_int_equal(pragma_int(s, name, &v, NULL), 0);
	return v;
}

/* A raw connection that knows nothing of store.c, for setting up odd files. */
static void raw_exec(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	char *msg = NULL;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("raw_exec '%s': %s", sql, msg);
	sqlite3_close(h);
}

static int64_t raw_int(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

static void new_vm(struct vm_record *rec, const char *name)
{
	memset(rec, 0, sizeof(*rec));
	rec->name = xstrdup(name);
	rec->phase = VM_PHASE_PENDING;
	rec->desired_state = VM_DESIRED_RUNNING;
	rec->last_exit = -1;
}

static void insert_vm(struct store *s, const char *name, struct vm_record *ret)
{
	struct bg_err err = { 0 };
	struct vm_record rec;

	new_vm(&rec, name);
	if (store_vm_insert(s, &rec, &err) < 0)
		fail_msg("insert %s: %s", name, err.msg);
	if (ret)
		*ret = rec;
	else
		vm_record_release(&rec);
}

/* ---- opening and migrations ----------------------------------------------------------- */

static void test_open_creates_schema(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = NULL;
	_cleanup_(store_freep) struct store *ro = NULL;

	s = open_rw(f->db);
	assert_true(store_schema_version() >= 1);
	assert_int_equal(pragma(s, "user_version"), store_schema_version());
	assert_int_equal(pragma(s, "application_id"), STORE_APPLICATION_ID);
	/* Per-connection settings. */
	assert_int_equal(pragma(s, "foreign_keys"), 1);
	assert_int_equal(pragma(s, "synchronous"), 2); /* FULL */
	assert_int_equal(pragma(s, "busy_timeout"), STORE_BUSY_TIMEOUT_MS);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
					"AND name IN ('vms', 'ip_leases', 'events', 'daemon')"),
			 4);
	/* WAL is a property of the file, seen by any other connection. */
	assert_int_equal(raw_int(f->db, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);

	ro = open_ro(f->db);
	assert_int_equal(pragma(ro, "foreign_keys"), 1);
	assert_int_equal(pragma(ro, "synchronous"), 2);
	assert_int_equal(pragma(ro, "busy_timeout"), STORE_BUSY_TIMEOUT_MS);
}

static void test_reopen_keeps_data(void **state)
{
	struct fixture *f = *state;
	struct store *s = open_rw(f->db);
	struct vm_record rec = { 0 };

	insert_vm(s, "keep", NULL);
	store_free(s);
	s = open_rw(f->db);
	assert_int_equal(pragma(s, "user_version"), store_schema_version());
	assert_int_equal(store_vm_get_by_name(s, "keep", &rec, NULL), 0);
	vm_record_release(&rec);
	store_free(s);
}

static void test_refuses_newer_schema(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct store *s = open_rw(f->db);
	char sql[64];

	store_free(s);
	s = NULL;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_schema_version() + 1);
	raw_exec(f->db, sql);
	assert_int_equal(store_open(f->db, STORE_READ_WRITE, &s, &err), -EPROTO);
	assert_null(s);
	assert_non_null(strstr(err.msg, "newer"));
	assert_int_equal(store_open(f->db, STORE_READ_ONLY, &s, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "newer"));
	/* Refusing never touches the file. */
	assert_int_equal(raw_int(f->db, "PRAGMA user_version"), store_schema_version() + 1);
}

static void test_refuses_foreign_files(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct store *s = NULL;
	_cleanup_free_ char *junk = fs_path_join(f->dir, "junk.db");

	/* Some other program's database: never adopted, never migrated. */
	raw_exec(f->db, "CREATE TABLE photos (x)");
	assert_int_equal(store_open(f->db, STORE_READ_ONLY, &s, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "not a banger database"));
	assert_int_equal(store_open(f->db, STORE_READ_WRITE, &s, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "not a banger database"));
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema"), 1);
	raw_exec(f->db, "PRAGMA application_id = 1234");
	assert_int_equal(store_open(f->db, STORE_READ_ONLY, &s, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "not a banger database"));

	/* Not SQLite at all. */
	test_write_file(junk, "this is not a database, just text that is long enough to matter "
			      "because sqlite looks at the first 100 bytes of a file header\n");
	assert_int_equal(store_open(junk, STORE_READ_WRITE, &s, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "not a database"));
	assert_null(s);
}

/* The real schema steps (NREAL of them) followed by test steps. */
#define NREAL ARRAY_SIZE(schema_steps)

static void test_migration_is_atomic(void **state)
{
	struct fixture *f = *state;
	const char *list[NREAL + 1];
	struct bg_err err = { 0 };
	struct store *s = open_rw(f->db);
	char name[32];

	store_free(s);
	s = NULL;
	memcpy(list, schema_steps, sizeof(schema_steps));
	list[NREAL] = "CREATE TABLE extra (x); INSERT INTO no_such_table VALUES (1)";
	migrations = list;
	n_migrations = NREAL + 1;
	assert_int_equal(store_open(f->db, STORE_READ_WRITE, &s, &err), -EIO);
	assert_non_null(strstr(err.msg, "no such table"));
	snprintf(name, sizeof(name), "schema step %zu -> %zu", NREAL, NREAL + 1);
	assert_non_null(strstr(err.msg, name));
	/* Nothing of the failed step stuck, and the version is the old one. */
	assert_int_equal(raw_int(f->db, "PRAGMA user_version"), (int64_t)NREAL);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'"),
			 0);

	/* A good next step applies, and the version follows. */
	list[NREAL] = "CREATE TABLE extra (x)";
	s = open_rw(f->db);
	assert_int_equal(store_schema_version(), (int)NREAL + 1);
	assert_int_equal(pragma(s, "user_version"), (int64_t)NREAL + 1);
	store_free(s);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'"),
			 1);
}

static void kill_self(int version)
{
	if (version == (int)NREAL + 1)
		raise(SIGKILL);
}

/* kill -9 in the middle of a migration leaves the old version, whole. */
static void test_migration_crash(void **state)
{
	struct fixture *f = *state;
	static const char *steps[NREAL + 2];
	struct store *s = open_rw(f->db);
	int status;
	pid_t pid;

	insert_vm(s, "survivor", NULL);
	store_free(s);
	memcpy(steps, schema_steps, sizeof(schema_steps));
	steps[NREAL] = "CREATE TABLE step2 (x); INSERT INTO step2 VALUES (1)";
	steps[NREAL + 1] = "CREATE TABLE step3 (x)";
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A fresh process: no SQLite state is shared with the parent (closed above). */
		migrations = steps;
		n_migrations = NREAL + 2;
		migrate_hook = kill_self;
		(void)store_open(f->db, STORE_READ_WRITE, &s, NULL);
		_exit(0); /* not reached */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(raw_int(f->db, "PRAGMA user_version"), (int64_t)NREAL);
	assert_int_equal(
		raw_int(f->db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'step%'"), 0);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM vms WHERE name = 'survivor'"), 1);
	/* The next start migrates for real. */
	migrations = steps;
	n_migrations = NREAL + 2;
	s = open_rw(f->db);
	assert_int_equal(pragma(s, "user_version"), (int64_t)NREAL + 2);
	store_free(s);
}

/* A damaged page is reported by quick_check (or by SQLite itself), never served. */
static void test_corrupt_db_refused(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct store *s = open_rw(f->db);
	char garbage[4096];
	int fd;

	for (int i = 0; i < 50; i++) {
		char name[48];

		snprintf(name, sizeof(name), "vm-%02d-with-a-longish-name", i);
		insert_vm(s, name, NULL);
	}
	store_free(s);
	s = NULL;
	/* Checkpointed at close: the rows are in the main file. Trash page 3 onwards. */
	memset(garbage, 0xa5, sizeof(garbage));
	fd = open(f->db, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, garbage, sizeof(garbage), 2 * 4096), (ssize_t)sizeof(garbage));
	close(fd);
	assert_int_equal(store_open(f->db, STORE_READ_WRITE, &s, &err), -EBADMSG);
	assert_null(s);
	assert_true(strlen(err.msg) > 0);
	print_message("corrupt db: %s\n", err.msg);
}

/* ---- vms ------------------------------------------------------------------------------ */

static void fill_record(struct vm_record *rec, const char *name, int salt)
{
	char buf[64];

	new_vm(rec, name);
	rec->source_file = xasprintf("/etc/banger/vms.d/%s.yaml", name);
	rec->spec_json = xasprintf("{\"name\":\"%s\",\"salt\":%d}", name, salt);
	memset(rec->spec_hash, 'a' + salt % 6, SPEC_HASH_LEN);
	rec->spec_hash[SPEC_HASH_LEN] = '\0';
	rec->generation = 7 + salt;
	rec->observed_generation = 6 + salt;
	rec->phase = (enum vm_phase)(salt % VM_PHASE_MAX);
	rec->desired_state = (enum vm_desired_state)(salt % VM_DESIRED_MAX);
	snprintf(buf, sizeof(buf), "172.30.0.%d", 10 + salt);
	rec->ip = xstrdup(buf);
	assert_int_equal(ipam_mac_from_ip(buf, rec->mac), 0);
	rec->vmm = xstrdup(salt % 2 ? "qemu" : "firecracker");
	rec->disk_mode = xstrdup("dm-snapshot");
	rec->vm_dir = xasprintf("/var/lib/banger/vms/%d", salt);
	rec->api_sock = xasprintf("/run/banger/%d.sock", salt);
	rec->console_log = xasprintf("/var/lib/banger/vms/%d/console.log", salt);
	rec->cow_disk = xasprintf("/var/lib/banger/vms/%d/cow", salt);
	rec->work_disk = salt % 2 ? NULL : xasprintf("/var/lib/banger/vms/%d/work", salt);
	rec->last_error = xasprintf("error 'number' %d: ünïcode", salt);
	rec->net_error = xasprintf("host port 127.0.0.1:%d/tcp is already forwarded", 1000 + salt);
	rec->restarts = 3 + salt;
	rec->failures = 2 + salt;
	rec->backoff_until = 1700000000000LL + salt;
	rec->running_since = 1600000000000LL + salt;
	rec->last_exit = 137;
	rec->action = xstrdup("create");
	rec->step = xasprintf("step-%d", salt);
}

static void assert_str_or_null(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_records_equal(const struct vm_record *a, const struct vm_record *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->name, b->name);
	assert_str_or_null(a->source_file, b->source_file);
	assert_str_or_null(a->spec_json, b->spec_json);
	assert_string_equal(a->spec_hash, b->spec_hash);
	assert_int_equal(a->generation, b->generation);
	assert_int_equal(a->observed_generation, b->observed_generation);
	assert_int_equal(a->phase, b->phase);
	assert_int_equal(a->desired_state, b->desired_state);
	assert_str_or_null(a->ip, b->ip);
	assert_string_equal(a->mac, b->mac);
	assert_int_equal(a->cid, b->cid);
	assert_str_or_null(a->vmm, b->vmm);
	assert_str_or_null(a->disk_mode, b->disk_mode);
	assert_str_or_null(a->vm_dir, b->vm_dir);
	assert_str_or_null(a->api_sock, b->api_sock);
	assert_str_or_null(a->console_log, b->console_log);
	assert_str_or_null(a->cow_disk, b->cow_disk);
	assert_str_or_null(a->work_disk, b->work_disk);
	assert_str_or_null(a->last_error, b->last_error);
	assert_str_or_null(a->net_error, b->net_error);
	assert_int_equal(a->restarts, b->restarts);
	assert_int_equal(a->failures, b->failures);
	assert_int_equal(a->backoff_until, b->backoff_until);
	assert_int_equal(a->running_since, b->running_since);
	assert_int_equal(a->last_exit, b->last_exit);
	assert_str_or_null(a->action, b->action);
	assert_str_or_null(a->step, b->step);
}

static void test_vm_insert_get_update(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_record rec, got = { 0 }, upd;
	int64_t before = now_real_ms();

	fill_record(&rec, "web-1", 1);
	assert_int_equal(store_vm_insert(s, &rec, &err), 0);
	assert_true(valid_id(rec.id));
	assert_int_equal(rec.cid, 3);
	assert_true(rec.created_at >= before && rec.created_at <= now_real_ms());
	assert_int_equal(rec.updated_at, rec.created_at);

	assert_int_equal(store_vm_get(s, rec.id, &got, &err), 0);
	assert_records_equal(&got, &rec);
	assert_int_equal(got.created_at, rec.created_at);
	vm_record_release(&got);
	assert_int_equal(store_vm_get_by_name(s, "web-1", &got, &err), 0);
	assert_records_equal(&got, &rec);
	vm_record_release(&got);

	/* Every column can change (but id and created_at). */
	fill_record(&upd, "web-1-renamed", 2);
	memcpy(upd.id, rec.id, sizeof(upd.id));
	upd.cid = 42;
	assert_int_equal(store_vm_update(s, &upd, &err), 0);
	assert_int_equal(store_vm_get(s, rec.id, &got, &err), 0);
	assert_records_equal(&got, &upd);
	assert_int_equal(got.created_at, rec.created_at);
	assert_true(got.updated_at >= rec.updated_at);
	vm_record_release(&got);
	assert_int_equal(store_vm_get_by_name(s, "web-1", &got, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "web-1"));

	/* NULL strings stay NULL. */
	free(upd.source_file);
	upd.source_file = NULL;
	free(upd.last_error);
	upd.last_error = NULL;
	assert_int_equal(store_vm_update(s, &upd, &err), 0);
	assert_int_equal(store_vm_get(s, rec.id, &got, &err), 0);
	assert_null(got.source_file);
	assert_null(got.last_error);
	vm_record_release(&got);

	/* Updating a row that is not there. */
	memcpy(upd.id, "00000000", 9);
	assert_int_equal(store_vm_update(s, &upd, &err), -ENOENT);
	vm_record_release(&upd);
	vm_record_release(&rec);
}

/*
 * A group is one transaction: nothing is visible to another connection (nor
 * durable) before its commit, a write that fails inside it is undone alone,
 * and an abort undoes all of it.
 */
static void test_group_commit(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	_cleanup_(store_freep) struct store *ro = open_ro(f->db);
	struct bg_err err = { 0 };
	struct vm_record a, b, dup, got;
	unsigned commits;

	commits = store_commit_count(s);
	assert_int_equal(store_group_begin(s, &err), 0);
	assert_int_equal(store_group_begin(s, &err), -EBUSY);
	insert_vm(s, "a", &a);
	assert_int_equal(store_vm_set_step(s, a.id, "create", "tap", &err), 0);
	new_vm(&dup, "a");
	assert_int_equal(store_vm_insert(s, &dup, &err), -EEXIST);
	/* Read through the group's own connection: there; through another: not yet. */
	assert_int_equal(store_vm_get(s, a.id, &got, &err), 0);
	assert_string_equal(got.step, "tap");
	vm_record_release(&got);
	assert_int_equal(store_vm_get(ro, a.id, &got, &err), -ENOENT);
	assert_int_equal(store_commit_count(s), commits);
	assert_int_equal(store_group_commit(s, &err), 0);
	assert_int_equal(store_commit_count(s), commits + 1);
	assert_int_equal(store_vm_get(ro, a.id, &got, &err), 0);
	assert_string_equal(got.step, "tap");
	vm_record_release(&got);

	/* Aborted: gone, and the connection writes normally again. */
	assert_int_equal(store_group_begin(s, &err), 0);
	insert_vm(s, "b", &b);
	store_group_abort(s);
	assert_int_equal(store_vm_get(s, b.id, &got, &err), -ENOENT);
	assert_int_equal(store_vm_set_step(s, a.id, "create", "launch", &err), 0);
	assert_int_equal(store_commit_count(s), commits + 2);
	assert_int_equal(store_vm_get(ro, a.id, &got, &err), 0);
	assert_string_equal(got.step, "launch");
	vm_record_release(&got);
	/* A read-only connection cannot open a group. */
	assert_int_equal(store_group_begin(ro, &err), -EROFS);
	vm_record_release(&a);
	vm_record_release(&b);
	vm_record_release(&dup);
}

/*
 * A full disk inside a group (SQLITE_FULL, made real with max_page_count):
 * whatever SQLite undoes, a later write of the group is never kept without
 * an earlier one.
 */
static void test_group_full_disk(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	_cleanup_(store_freep) struct store *ro = open_ro(f->db);
	_cleanup_free_ char *big = xcalloc(1, 256 * 1024 + 1);
	struct bg_err err = { 0 };
	struct vm_record a, huge, c, got;
	char sql[96];
	int pages = 0, r;

	assert_int_equal(store_group_begin(s, &err), 0);
	insert_vm(s, "a", &a);
	{
		sqlite3_stmt *st = NULL;

		assert_int_equal(sqlite3_prepare_v2(s->db, "PRAGMA page_count", -1, &st, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		pages = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %d", pages + 2);
	assert_int_equal(exec_sql(s, sql, &err), 0);
	memset(big, 'x', 256 * 1024);
	new_vm(&huge, "huge");
	huge.spec_json = xstrdup(big);
	assert_true(store_vm_insert(s, &huge, &err) < 0);
	print_message("full disk: %s (transaction %s)\n", err.msg,
		      sqlite3_get_autocommit(s->db) ? "rolled back" : "kept");
	bg_err_clear(&err);
	new_vm(&c, "c");
	r = store_vm_insert(s, &c, &err);
	if (store_group_commit(s, &err) < 0)
		r = -1;
	/* c durable implies a durable. */
	if (store_vm_get_by_name(ro, "c", &got, NULL) == 0) {
		vm_record_release(&got);
		assert_int_equal(r, 0);
		assert_int_equal(store_vm_get_by_name(ro, "a", &got, NULL), 0);
		vm_record_release(&got);
	}
	vm_record_release(&a);
	vm_record_release(&huge);
	vm_record_release(&c);
}

/* SQLite rolled the group back (as it may on a full disk): the rest of it fails. */
static void test_group_rolled_back_fails(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	_cleanup_(store_freep) struct store *ro = open_ro(f->db);
	struct bg_err err = { 0 };
	struct vm_record a, c, got;

	assert_int_equal(store_group_begin(s, &err), 0);
	insert_vm(s, "a", &a);
	assert_int_equal(sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	new_vm(&c, "c");
	assert_int_equal(store_vm_insert(s, &c, &err), -EIO);
	assert_int_equal(store_group_commit(s, &err), -EIO);
	assert_int_equal(store_vm_get_by_name(ro, "c", &got, NULL), -ENOENT);
	assert_int_equal(store_vm_get_by_name(ro, "a", &got, NULL), -ENOENT);
	/* The next group works. */
	assert_int_equal(store_group_begin(s, &err), 0);
	assert_int_equal(store_vm_insert(s, &c, &err), 0);
	assert_int_equal(store_group_commit(s, &err), 0);
	assert_int_equal(store_vm_get_by_name(ro, "c", &got, NULL), 0);
	vm_record_release(&got);
	vm_record_release(&a);
	vm_record_release(&c);
}

/* A checkpoint makes what the group holds durable; a failed one leaves a broken group. */
static void test_group_checkpoint(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	_cleanup_(store_freep) struct store *ro = open_ro(f->db);
	struct bg_err err = { 0 };
	struct vm_record a, b, c, got;
	unsigned seq;

	assert_int_equal(store_group_checkpoint(s, &err), -EINVAL);
	seq = store_group_seq(s);
	assert_int_equal(store_group_begin(s, &err), 0);
	insert_vm(s, "a", &a);
	assert_int_equal(store_group_checkpoint(s, &err), 0);
	assert_true(store_group_seq(s) > seq);
	assert_int_equal(store_vm_get_by_name(ro, "a", &got, NULL), 0);
	vm_record_release(&got);
	insert_vm(s, "b", &b);
	store_group_abort(s);
	assert_int_equal(store_vm_get_by_name(ro, "b", &got, NULL), -ENOENT);
	assert_int_equal(store_vm_get_by_name(s, "a", &got, NULL), 0);
	vm_record_release(&got);

	/* SQLite threw the group away (as on a full disk): the checkpoint fails, and so
	 * does everything after it in that group; nothing of it is kept. */
	seq = store_group_seq(s);
	assert_int_equal(store_group_begin(s, &err), 0);
	insert_vm(s, "b2", NULL);
	assert_int_equal(sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	assert_true(store_group_checkpoint(s, &err) < 0);
	new_vm(&c, "c");
	assert_int_equal(store_vm_insert(s, &c, &err), -EIO);
	assert_int_equal(store_group_commit(s, &err), -EIO);
	assert_int_equal(store_group_seq(s), seq);
	assert_int_equal(store_vm_get_by_name(ro, "c", &got, NULL), -ENOENT);
	assert_int_equal(store_vm_get_by_name(ro, "b2", &got, NULL), -ENOENT);
	vm_record_release(&a);
	vm_record_release(&b);
	vm_record_release(&c);
}

static void test_vm_insert_conflicts(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_record a, b, c, d;

	insert_vm(s, "a", &a);
	insert_vm(s, "b", &b);

	new_vm(&c, "a");
	assert_int_equal(store_vm_insert(s, &c, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "a VM named 'a' already exists"));
	assert_string_equal(c.id, ""); /* outputs untouched on failure */

	/* An explicit id: kept when free, -EEXIST when taken, -EINVAL when malformed. */
	free(c.name);
	c.name = xstrdup("c");
	memcpy(c.id, a.id, sizeof(c.id));
	assert_int_equal(store_vm_insert(s, &c, &err), -EEXIST);
	memcpy(c.id, "0123abcd", 9);
	assert_int_equal(store_vm_insert(s, &c, &err), 0);
	assert_string_equal(c.id, "0123abcd");
	new_vm(&d, "d");
	memcpy(d.id, "0123ABCD", 9);
	assert_int_equal(store_vm_insert(s, &d, &err), -EINVAL);
	memcpy(d.id, "0123abc", 8);
	assert_int_equal(store_vm_insert(s, &d, &err), -EINVAL);
	d.id[0] = '\0';

	/* Explicit CIDs: taken -> -EEXIST naming the holder; < 3 -> -EINVAL. */
	d.cid = b.cid;
	assert_int_equal(store_vm_insert(s, &d, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "'b'"));
	d.cid = 2;
	assert_int_equal(store_vm_insert(s, &d, &err), -EINVAL);
	d.cid = 0;

	/* Renaming onto another VM's name, or taking its CID. */
	free(b.name);
	b.name = xstrdup("a");
	assert_int_equal(store_vm_update(s, &b, &err), -EEXIST);
	free(b.name);
	b.name = xstrdup("b");
	b.cid = a.cid;
	assert_int_equal(store_vm_update(s, &b, &err), -EEXIST);

	/* Bad records. */
	d.phase = VM_PHASE_MAX;
	assert_int_equal(store_vm_insert(s, &d, &err), -EINVAL);
	d.phase = VM_PHASE_PENDING;
	free(d.name);
	d.name = NULL;
	assert_int_equal(store_vm_insert(s, &d, &err), -EINVAL);

	vm_record_release(&a);
	vm_record_release(&b);
	vm_record_release(&c);
	vm_record_release(&d);
}

static void test_vm_ids_and_cids(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct vm_record recs[40], again;
	struct bg_err err = { 0 };

	for (int i = 0; i < 40; i++) {
		char name[16];

		snprintf(name, sizeof(name), "vm-%d", i);
		insert_vm(s, name, &recs[i]);
		/* CIDs are handed out lowest first, from 3. */
		assert_int_equal(recs[i].cid, 3 + i);
		assert_true(valid_id(recs[i].id));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(recs[i].id, recs[j].id);
	}
	/* Free CIDs 5 and 9: the next VMs get 5, then 9, then 43. */
	assert_int_equal(store_vm_delete(s, recs[2].id, &err), 0);
	assert_int_equal(store_vm_delete(s, recs[6].id, &err), 0);
	insert_vm(s, "next-1", &again);
	assert_int_equal(again.cid, 5);
	vm_record_release(&again);
	insert_vm(s, "next-2", &again);
	assert_int_equal(again.cid, 9);
	vm_record_release(&again);
	insert_vm(s, "next-3", &again);
	assert_int_equal(again.cid, 43);
	vm_record_release(&again);
	for (int i = 0; i < 40; i++)
		vm_record_release(&recs[i]);
}

static void test_vm_list_set_step_delete(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_record *list = NULL, rec, got = { 0 };
	size_t n = 99;

	assert_int_equal(store_vm_list(s, &list, &n, &err), 0);
	assert_int_equal(n, 0);
	vm_record_array_free(list, n);
	insert_vm(s, "zeta", NULL);
	insert_vm(s, "alpha", &rec);
	insert_vm(s, "mid", NULL);
	assert_int_equal(store_vm_list(s, &list, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].name, "alpha");
	assert_string_equal(list[1].name, "mid");
	assert_string_equal(list[2].name, "zeta");
	assert_string_equal(list[0].id, rec.id);
	vm_record_array_free(list, n);

	/* The intent log. */
	assert_int_equal(store_vm_set_step(s, rec.id, "create", "tap", &err), 0);
	assert_int_equal(store_vm_get(s, rec.id, &got, &err), 0);
	assert_string_equal(got.action, "create");
	assert_string_equal(got.step, "tap");
	vm_record_release(&got);
	assert_int_equal(store_vm_set_step(s, rec.id, NULL, NULL, &err), 0);
	assert_int_equal(store_vm_get(s, rec.id, &got, &err), 0);
	assert_null(got.action);
	assert_null(got.step);
	vm_record_release(&got);
	assert_int_equal(store_vm_set_step(s, "deadbeef", "x", "y", &err), -ENOENT);
	assert_int_equal(store_vm_set_step(s, "nope", "x", "y", &err), -EINVAL);

	/* Delete: gone, and deleting again is fine. */
	assert_int_equal(store_vm_delete(s, rec.id, &err), 0);
	assert_int_equal(store_vm_get(s, rec.id, &got, &err), -ENOENT);
	assert_int_equal(store_vm_delete(s, rec.id, &err), 0);
	assert_int_equal(store_vm_list(s, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	vm_record_array_free(list, n);
	vm_record_release(&rec);
}

/* A row this build can't read is reported, not half-read. */
static void test_vm_corrupt_row(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_record rec, got = { 0 };
	struct vm_record *list = NULL;
	size_t n = 0;
	char sql[128];

	insert_vm(s, "odd", &rec);
	snprintf(sql, sizeof(sql), "UPDATE vms SET phase = 'Exploded' WHERE id = '%s'", rec.id);
	raw_exec(f->db, sql);
	assert_int_equal(store_vm_get(s, rec.id, &got, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "Exploded"));
	assert_int_equal(store_vm_list(s, &list, &n, &err), -EBADMSG);
	vm_record_release(&rec);
}

/* ---- readers and writers ---------------------------------------------------------------- */

static void test_read_only_missing(void **state)
{
	struct fixture *f = *state;
	struct bg_err err = { 0 };
	struct store *s = NULL;

	assert_int_equal(store_open(f->db, STORE_READ_ONLY, &s, &err), -ENOENT);
	assert_null(s);
	assert_non_null(strstr(err.msg, "no state database"));
	/* ...and it did not create one. */
	assert_false(fs_exists(f->db));

	/* An empty file (a daemon that died before its first commit) is "not yet". */
	test_write_file(f->db, "");
	assert_int_equal(store_open(f->db, STORE_READ_ONLY, &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "not been initialised"));
}

static void test_read_only_next_to_writer(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *rw = open_rw(f->db);
	_cleanup_(store_freep) struct store *ro = NULL;
	struct bg_err err = { 0 };
	struct vm_record *list = NULL, rec;
	size_t n = 0;
	int64_t t0;

	insert_vm(rw, "one", NULL);
	ro = open_ro(f->db);
	assert_int_equal(store_vm_list(ro, &list, &n, &err), 0);
	assert_int_equal(n, 1);
	vm_record_array_free(list, n);

	/* Writes are refused on a read-only handle. */
	new_vm(&rec, "nope");
	assert_int_equal(store_vm_insert(ro, &rec, &err), -EROFS);
	assert_int_equal(store_event_add(ro, NULL, "Normal", "X", "y", &err), -EROFS);
	vm_record_release(&rec);

	/* The writer holds an open write transaction: the reader is not blocked and sees the
	 * last committed state. */
	assert_int_equal(exec_sql(rw, "BEGIN IMMEDIATE", &err), 0);
	assert_int_equal(exec_sql(rw,
				  "UPDATE vms SET phase = 'Running'; "
				  "INSERT INTO events (time, type, reason, message) "
				  "VALUES (1, 'Normal', 'Uncommitted', 'x')",
				  &err),
			 0);
	t0 = now_mono_ms();
	assert_int_equal(store_vm_get_by_name(ro, "one", &rec, &err), 0);
	assert_int_equal(rec.phase, VM_PHASE_PENDING);
	vm_record_release(&rec);
	assert_true(now_mono_ms() - t0 < STORE_BUSY_TIMEOUT_MS / 2);
	assert_int_equal(exec_sql(rw, "COMMIT", &err), 0);
	assert_int_equal(store_vm_get_by_name(ro, "one", &rec, &err), 0);
	assert_int_equal(rec.phase, VM_PHASE_RUNNING);
	vm_record_release(&rec);
}

static void read_as(const char *db, uid_t uid, gid_t gid)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *s = NULL;
		struct vm_record rec = { 0 };
		struct bg_err err = { 0 };

		if (setgid(gid) < 0 || setuid(uid) < 0)
			_exit(10);
		if (store_open(db, STORE_READ_ONLY, &s, &err) < 0) {
			fprintf(stderr, "read-only open as uid %d: %s\n", (int)uid, err.msg);
			_exit(11);
		}
		if (store_vm_get_by_name(s, "persisted", &rec, &err) < 0) {
			fprintf(stderr, "read as uid %d: %s\n", (int)uid, err.msg);
			_exit(12);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The daemon stopped cleanly; the CLI still reads, also as a user who may not write. */
static void test_read_only_after_writer_closed(void **state)
{
	struct fixture *f = *state;
	struct store *rw = open_rw(f->db);
	struct store *ro;
	struct vm_record rec = { 0 };
	_cleanup_free_ char *wal = xasprintf("%s-wal", f->db);
	_cleanup_free_ char *shm = xasprintf("%s-shm", f->db);

	insert_vm(rw, "persisted", NULL);
	store_free(rw);
	/* Kept on purpose (SQLITE_FCNTL_PERSIST_WAL) so readers need not create them. */
	assert_true(fs_exists(wal));
	assert_true(fs_exists(shm));
	ro = open_ro(f->db);
	assert_int_equal(store_vm_get_by_name(ro, "persisted", &rec, NULL), 0);
	vm_record_release(&rec);
	store_free(ro);

	if (geteuid() == 0) {
		/* A group-readable state dir, as for a 'banger' group: nobody can't write it. */
		struct passwd *pw = getpwnam("nobody");

		assert_non_null(pw);
		assert_int_equal(chmod(f->dir, 0755), 0);
		assert_int_equal(chmod(f->db, 0644), 0);
		assert_int_equal(chmod(wal, 0644), 0);
		assert_int_equal(chmod(shm, 0644), 0);
		read_as(f->db, pw->pw_uid, pw->pw_gid);
	} else {
		test_skip_reason("not root: can't check a read-only open by a user who may not "
				 "write the state dir");
	}

	/* Without -wal/-shm (a copied db) a reader that may create them still reads. */
	assert_int_equal(unlink(wal), 0);
	assert_int_equal(unlink(shm), 0);
	ro = open_ro(f->db);
	assert_int_equal(store_vm_get_by_name(ro, "persisted", &rec, NULL), 0);
	vm_record_release(&rec);
	store_free(ro);
}

/*
 * A child process that opens its own connection (after fork, before any
 * connection of the parent to this file) and holds BEGIN IMMEDIATE for
 * hold_ms (forever when < 0) once the parent writes a byte to *ret_go.
 * It writes a byte to *ret_ready once it holds the lock.
 */
static pid_t spawn_locker(const char *db, int hold_ms, int *ret_go, int *ret_ready)
{
	int go[2], ready[2];
	pid_t pid;

	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sqlite3 *h = NULL;
		char c;

		close(go[1]);
		close(ready[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
			_exit(2);
		sqlite3_busy_timeout(h, 10000);
		if (sqlite3_exec(h,
				 "BEGIN IMMEDIATE; INSERT INTO events (time, type, reason, "
				 "message) VALUES (1, 'Normal', 'Locker', 'held')",
				 NULL, NULL, NULL) != SQLITE_OK)
			_exit(3);
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		if (hold_ms < 0)
			pause();
		sleep_ms(hold_ms);
		if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			_exit(5);
		sqlite3_close(h);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	*ret_go = go[1];
	*ret_ready = ready[0];
	return pid;
}

static void wait_ready(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	assert_int_equal(poll(&pfd, 1, 30000), 1);
	assert_int_equal(read(fd, &c, 1), 1);
}

static void test_busy_retry(void **state)
{
	struct fixture *f = *state;
	struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_event *ev = NULL;
	size_t n = 0;
	int go, ready, status;
	int64_t t0, waited;
	pid_t pid;

	store_free(s); /* no connection to this file while forking */
	pid = spawn_locker(f->db, 400, &go, &ready);
	s = open_rw(f->db);
	/* A short busy timeout, so the retry loop (not SQLite's handler) does the waiting. */
	s->busy_timeout_ms = 20;
	assert_int_equal(sqlite3_busy_timeout(s->db, s->busy_timeout_ms), SQLITE_OK);
	assert_int_equal(write(go, "g", 1), 1);
	wait_ready(ready);
	t0 = now_mono_ms();
	assert_int_equal(store_event_add(s, NULL, "Normal", "AfterLock", "waited", &err), 0);
	waited = now_mono_ms() - t0;
	print_message("write waited %" PRId64 " ms, %u retries\n", waited, s->busy_retries);
	assert_true(s->busy_retries > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Both writes are there, in commit order. */
	assert_int_equal(store_event_list(s, NULL, 0, &ev, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].reason, "Locker");
	assert_string_equal(ev[1].reason, "AfterLock");
	vm_event_array_free(ev, n);
	close(go);
	close(ready);
	store_free(s);
}

static void test_busy_gives_up(void **state)
{
	struct fixture *f = *state;
	struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_record rec;
	int go, ready, status;
	int64_t t0, took;
	pid_t pid;

	store_free(s);
	pid = spawn_locker(f->db, -1, &go, &ready);
	s = open_rw(f->db);
	s->busy_timeout_ms = 20;
	s->write_deadline_ms = 300;
	assert_int_equal(sqlite3_busy_timeout(s->db, s->busy_timeout_ms), SQLITE_OK);
	assert_int_equal(write(go, "g", 1), 1);
	wait_ready(ready);
	new_vm(&rec, "late");
	t0 = now_mono_ms();
	assert_int_equal(store_vm_insert(s, &rec, &err), -EBUSY);
	took = now_mono_ms() - t0;
	assert_non_null(strstr(err.msg, "locked"));
	assert_true(took >= 250 && took < 10000);
	assert_true(sqlite3_get_autocommit(s->db)); /* rolled back, no transaction left open */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* The lock died with its holder; the same write now goes through. */
	assert_int_equal(store_vm_insert(s, &rec, &err), 0);
	vm_record_release(&rec);
	close(go);
	close(ready);
	store_free(s);
}

/* Several processes (daemon + CLIs, or two daemons by mistake) write at once: every write
 * lands, none surfaces SQLITE_BUSY, and no address is handed out twice. */
static void test_concurrent_writers(void **state)
{
	enum {
		WRITERS = 4,
		EACH = 25
	};
	struct fixture *f = *state;
	struct store *s = open_rw(f->db);
	struct vm_record recs[WRITERS];
	struct ip_lease *leases = NULL;
	size_t n = 0;
	pid_t pids[WRITERS];
	int64_t t0 = now_mono_ms();

	for (int w = 0; w < WRITERS; w++) {
		char name[16];

		snprintf(name, sizeof(name), "w%d", w);
		insert_vm(s, name, &recs[w]);
	}
	store_free(s);
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			struct bg_err err = { 0 };
			char ip[16];

			if (store_open(f->db, STORE_READ_WRITE, &s, &err) < 0)
				_exit(1);
			for (int i = 0; i < EACH; i++)
				if (store_event_add(s, recs[w].name, "Normal", "Tick", "x", &err) <
					    0 ||
				    store_vm_set_step(s, recs[w].id, "create", "tap", &err) < 0) {
					fprintf(stderr, "writer %d: %s\n", w, err.msg);
					_exit(2);
				}
			if (store_ip_lease(s, "172.29.0.1/24", recs[w].id, NULL, ip, &err) < 0)
				_exit(3);
			store_free(s);
			_exit(0);
		}
	}
	for (int w = 0; w < WRITERS; w++) {
		int status;

		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	print_message("%d writers x %d transactions: %" PRId64 " ms\n", WRITERS, 2 * EACH + 1,
		      now_mono_ms() - t0);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM events"), WRITERS * EACH);
	s = open_rw(f->db);
	assert_int_equal(store_ip_list(s, &leases, &n, NULL), 0);
	assert_int_equal(n, WRITERS);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(leases[i].ip, leases[j].ip);
	free(leases);
	store_free(s);
	for (int w = 0; w < WRITERS; w++)
		vm_record_release(&recs[w]);
}

/* ---- IPAM ------------------------------------------------------------------------------- */

static void test_ipam_helpers(void **state)
{
	static const struct {
		const char *cidr;
		int r;
		uint32_t gw, net;
		unsigned prefix;
	} cases[] = {
		{ "172.30.0.1/24", 0, 0xac1e0001, 0xac1e0000, 24 },
		{ "10.0.0.5/8", 0, 0x0a000005, 0x0a000000, 8 },
		{ "192.168.7.9/30", 0, 0xc0a80709, 0xc0a80708, 30 },
		{ "10.1.2.3/29", 0, 0x0a010203, 0x0a010200, 29 },
		{ "10.0.0.1/7", -EINVAL, 0, 0, 0 },
		{ "10.0.0.1/31", -EINVAL, 0, 0, 0 },
		{ "10.0.0.1/32", -EINVAL, 0, 0, 0 },
		{ "10.0.0.0/24", -EINVAL, 0, 0, 0 },   /* network address as gateway */
		{ "10.0.0.255/24", -EINVAL, 0, 0, 0 }, /* broadcast as gateway */
		{ "10.0.0.1", -EINVAL, 0, 0, 0 },
		{ "10.0.0.1/", -EINVAL, 0, 0, 0 },
		{ "10.0.0.1/24x", -EINVAL, 0, 0, 0 },
		{ "10.0.0.1/-4", -EINVAL, 0, 0, 0 },
		{ "10.0.0.1/024", -EINVAL, 0, 0, 0 },
		{ "256.0.0.1/24", -EINVAL, 0, 0, 0 },
		{ "10.0.1/24", -EINVAL, 0, 0, 0 },
		{ " 10.0.0.1/24", -EINVAL, 0, 0, 0 },
		{ "", -EINVAL, 0, 0, 0 },
	};
	char mac[18];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		uint32_t gw = 0, net = 0;
		unsigned prefix = 0;
		int r = ipam_parse_subnet(cases[i].cidr, &gw, &net, &prefix);

		if (r != cases[i].r)
			fail_msg("ipam_parse_subnet('%s') = %d, want %d", cases[i].cidr, r,
				 cases[i].r);
		if (r == 0) {
			assert_int_equal(gw, cases[i].gw);
			assert_int_equal(net, cases[i].net);
			assert_int_equal(prefix, cases[i].prefix);
		}
	}
	assert_int_equal(ipam_parse_subnet(NULL, NULL, NULL, NULL), -EINVAL);

	assert_int_equal(ipam_mac_from_ip("172.30.0.10", mac), 0);
	assert_string_equal(mac, "02:bb:ac:1e:00:0a");
	assert_int_equal(ipam_mac_from_ip("255.1.0.254", mac), 0);
	assert_string_equal(mac, "02:bb:ff:01:00:fe");
	assert_int_equal(ipam_mac_from_ip("172.30.0", mac), -EINVAL);
	assert_int_equal(ipam_mac_from_ip("172.30.0.256", mac), -EINVAL);
	assert_int_equal(ipam_mac_from_ip(NULL, mac), -EINVAL);
}

static void lease_ok(struct store *s, const char *subnet, const char *vm_id, const char *st,
		     const char *want)
{
	struct bg_err err = { 0 };
	char ip[16] = "";

	if (store_ip_lease(s, subnet, vm_id, st, ip, &err) < 0)
		fail_msg("lease %s in %s: %s", vm_id, subnet, err.msg);
	assert_string_equal(ip, want);
}

static void test_ipam_lease(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	const char *net = "172.30.0.1/24";
	struct vm_record a, b, c, d, e;
	struct bg_err err = { 0 };
	struct ip_lease *leases = NULL;
	size_t n = 0;
	char ip[16] = "";

	insert_vm(s, "a", &a);
	insert_vm(s, "b", &b);
	insert_vm(s, "c", &c);
	insert_vm(s, "d", &d);
	insert_vm(s, "e", &e);

	/* Lowest free, skipping network (.0) and gateway (.1). */
	lease_ok(s, net, a.id, NULL, "172.30.0.2");
	lease_ok(s, net, b.id, NULL, "172.30.0.3");
	lease_ok(s, net, c.id, "172.30.0.10", "172.30.0.10");
	lease_ok(s, net, d.id, NULL, "172.30.0.4");
	/* Idempotent. */
	lease_ok(s, net, a.id, NULL, "172.30.0.2");
	lease_ok(s, net, c.id, "172.30.0.10", "172.30.0.10");

	/* Static conflicts name the holder. */
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.0.10", ip, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "172.30.0.10 is already leased to VM 'c'"));
	assert_string_equal(ip, "");
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.0.3", ip, &err), -EADDRINUSE);
	assert_non_null(strstr(err.msg, "'b'"));
	/* Addresses a VM can't have. */
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.1.5", ip, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "outside the subnet"));
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.0.0", ip, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "network address"));
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.0.1", ip, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "gateway"));
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.0.255", ip, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "broadcast"));
	assert_int_equal(store_ip_lease(s, net, e.id, "172.30.0.x", ip, &err), -EINVAL);
	assert_int_equal(store_ip_lease(s, "172.30.0.1/31", e.id, NULL, ip, &err), -EINVAL);
	assert_int_equal(store_ip_lease(s, net, "0badc0de", NULL, ip, &err), -ENOENT);

	/* Release, then reuse of the lowest hole. */
	assert_int_equal(store_ip_release(s, b.id, &err), 0);
	assert_int_equal(store_ip_release(s, b.id, &err), 0);
	lease_ok(s, net, e.id, NULL, "172.30.0.3");

	/* A new static IP moves the lease; dropping 'static' keeps the address. */
	lease_ok(s, net, a.id, "172.30.0.20", "172.30.0.20");
	lease_ok(s, net, a.id, NULL, "172.30.0.20");
	lease_ok(s, net, b.id, NULL, "172.30.0.2");

	assert_int_equal(store_ip_list(s, &leases, &n, &err), 0);
	assert_int_equal(n, 5);
	/* Sorted by address (numerically: .10 before .20, .2 first). */
	assert_string_equal(leases[0].ip, "172.30.0.2");
	assert_string_equal(leases[0].vm_id, b.id);
	assert_string_equal(leases[1].ip, "172.30.0.3");
	assert_string_equal(leases[2].ip, "172.30.0.4");
	assert_string_equal(leases[3].ip, "172.30.0.10");
	assert_true(leases[3].is_static);
	assert_string_equal(leases[4].ip, "172.30.0.20");
	assert_string_equal(leases[4].vm_id, a.id);
	assert_false(leases[4].is_static);
	free(leases);

	/* Deleting a VM frees its address (ON DELETE CASCADE and explicitly). */
	assert_int_equal(store_vm_delete(s, c.id, &err), 0);
	lease_ok(s, net, e.id, "172.30.0.10", "172.30.0.10");

	/* Another subnet for a VM moves its lease there. */
	lease_ok(s, "10.99.0.1/24", d.id, NULL, "10.99.0.2");
	assert_int_equal(store_ip_list(s, &leases, &n, &err), 0);
	assert_int_equal(n, 4);
	free(leases);

	vm_record_release(&a);
	vm_record_release(&b);
	vm_record_release(&c);
	vm_record_release(&d);
	vm_record_release(&e);
}

static void test_ipam_full_and_gateway_in_middle(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct vm_record recs[7];
	struct bg_err err = { 0 };
	const char *want[] = { "10.88.0.1", "10.88.0.2", "10.88.0.3", "10.88.0.4", "10.88.0.6" };
	char ip[16];

	for (int i = 0; i < 7; i++) {
		char name[16];

		snprintf(name, sizeof(name), "vm-%d", i);
		insert_vm(s, name, &recs[i]);
	}
	/* /29 with the gateway at .5: .1-.4 and .6 are usable, .0 and .7 are not. */
	for (int i = 0; i < 5; i++)
		lease_ok(s, "10.88.0.5/29", recs[i].id, NULL, want[i]);
	assert_int_equal(store_ip_lease(s, "10.88.0.5/29", recs[5].id, NULL, ip, &err), -ENOSPC);
	assert_non_null(strstr(err.msg, "full"));
	/* A hole appears: it is used. */
	assert_int_equal(store_ip_release(s, recs[2].id, &err), 0);
	lease_ok(s, "10.88.0.5/29", recs[5].id, NULL, "10.88.0.3");
	assert_int_equal(store_ip_lease(s, "10.88.0.5/29", recs[6].id, NULL, ip, &err), -ENOSPC);
	for (int i = 0; i < 7; i++)
		vm_record_release(&recs[i]);
}

/* A lease is committed before the address is returned: kill -9 right after cannot
 * make the next daemon hand the same address out again. */
static void test_ipam_never_twice_across_crash(void **state)
{
	struct fixture *f = *state;
	struct store *s = open_rw(f->db);
	struct vm_record a, b;
	struct ip_lease *leases = NULL;
	size_t n = 0;
	int pipefd[2], status;
	char ip_child[16] = "";
	pid_t pid;

	insert_vm(s, "a", &a);
	insert_vm(s, "b", &b);
	store_free(s);
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char ip[16];

		close(pipefd[0]);
		if (store_open(f->db, STORE_READ_WRITE, &s, NULL) < 0 ||
		    store_ip_lease(s, "172.31.5.1/24", a.id, NULL, ip, NULL) < 0)
			_exit(1);
		if (write(pipefd[1], ip, sizeof(ip)) != (ssize_t)sizeof(ip))
			_exit(2);
		raise(SIGKILL); /* no close, no checkpoint */
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], ip_child, sizeof(ip_child)), (ssize_t)sizeof(ip_child));
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_string_equal(ip_child, "172.31.5.2");

	s = open_rw(f->db);
	assert_int_equal(store_ip_list(s, &leases, &n, NULL), 0);
	assert_int_equal(n, 1);
	assert_string_equal(leases[0].ip, "172.31.5.2");
	assert_string_equal(leases[0].vm_id, a.id);
	free(leases);
	lease_ok(s, "172.31.5.1/24", b.id, NULL, "172.31.5.3");
	lease_ok(s, "172.31.5.1/24", a.id, NULL, "172.31.5.2");
	store_free(s);
	/* And across a clean close/reopen. */
	s = open_rw(f->db);
	lease_ok(s, "172.31.5.1/24", b.id, NULL, "172.31.5.3");
	store_free(s);
	vm_record_release(&a);
	vm_record_release(&b);
}

/* ---- events and the daemon row --------------------------------------------------------- */

static void test_events(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_event *ev = NULL;
	size_t n = 0;
	char big[STORE_EVENT_MESSAGE_MAX + 100];

	assert_int_equal(store_event_list(s, NULL, 10, &ev, &n, &err), 0);
	assert_int_equal(n, 0);
	vm_event_array_free(ev, n);
	assert_int_equal(store_event_add(s, "web", "Normal", "Created", "one", &err), 0);
	assert_int_equal(store_event_add(s, NULL, "Warning", "SpecError", "two", &err), 0);
	assert_int_equal(store_event_add(s, "web", "Normal", "Started", "three", &err), 0);
	assert_int_equal(store_event_add(s, "db", "Warning", "ProcessDied", NULL, &err), 0);
	assert_int_equal(store_event_add(s, "web", NULL, "X", "y", &err), -EINVAL);
	assert_int_equal(store_event_add(s, "web", "Normal", "", "y", &err), -EINVAL);

	assert_int_equal(store_event_list(s, NULL, 0, &ev, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(ev[0].message, "one");
	assert_null(ev[1].vm);
	assert_string_equal(ev[1].type, "Warning");
	assert_string_equal(ev[3].message, "");
	assert_true(ev[0].time <= ev[3].time && ev[0].time > 0);
	vm_event_array_free(ev, n);

	/* The newest 'limit' of one VM, oldest first. */
	assert_int_equal(store_event_list(s, "web", 2, &ev, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].message, "one");
	assert_string_equal(ev[1].message, "three");
	vm_event_array_free(ev, n);
	assert_int_equal(store_event_list(s, NULL, 2, &ev, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ev[0].message, "three");
	assert_string_equal(ev[1].reason, "ProcessDied");
	vm_event_array_free(ev, n);

	/* Long messages are cut, not refused; a UTF-8 sequence is not split. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big + STORE_EVENT_MESSAGE_MAX - 1, "\xc3\xa9", 2); /* é straddles the cut */
	assert_int_equal(store_event_add(s, "web", "Normal", "Big", big, &err), 0);
	assert_int_equal(store_event_list(s, "web", 1, &ev, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(strlen(ev[0].message), STORE_EVENT_MESSAGE_MAX - 1 + 3);
	assert_string_equal(ev[0].message + STORE_EVENT_MESSAGE_MAX - 1, "...");
	vm_event_array_free(ev, n);
}

static void test_events_pruned_at_cap(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	struct bg_err err = { 0 };
	struct vm_event *ev = NULL;
	size_t n = 0;
	char sql[256];

	/* Fill to exactly the cap in one transaction (2000 fsyncs would be slow). */
	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d) "
		 "INSERT INTO events (time, vm, type, reason, message) "
		 "SELECT i, 'old', 'Normal', 'Filler', 'filler-' || i FROM c",
		 STORE_EVENTS_MAX);
	assert_int_equal(exec_sql(s, sql, &err), 0);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM events"), STORE_EVENTS_MAX);
	for (int i = 1; i <= 5; i++) {
		char msg[32];

		snprintf(msg, sizeof(msg), "new-%d", i);
		assert_int_equal(store_event_add(s, "new", "Normal", "Fresh", msg, &err), 0);
		/* Never more than the cap, and the oldest went first. */
		assert_int_equal(raw_int(f->db, "SELECT count(*) FROM events"), STORE_EVENTS_MAX);
		assert_int_equal(raw_int(f->db, "SELECT min(time) FROM events"), 1 + i);
	}
	assert_int_equal(store_event_list(s, NULL, 0, &ev, &n, &err), 0);
	assert_int_equal(n, STORE_EVENTS_MAX);
	assert_string_equal(ev[0].message, "filler-6");
	assert_string_equal(ev[n - 1].message, "new-5");
	assert_string_equal(ev[n - 5].message, "new-1");
	vm_event_array_free(ev, n);
}

static void test_daemon_row(void **state)
{
	struct fixture *f = *state;
	_cleanup_(store_freep) struct store *s = open_rw(f->db);
	_cleanup_(store_freep) struct store *ro = NULL;
	struct bg_err err = { 0 };
	struct daemon_info in = {
		.pid = 4242,
		.version = (char *)"0.1.0",
		.spec_dir = (char *)"/etc/banger/vms.d",
		.bridge = (char *)"banger0",
		.subnet = (char *)"172.30.0.1/24",
		.disk_mode = (char *)"copy",
		.started_at = 1000,
		.heartbeat = 2000,
		.last_resync = 1500,
		.resync_ms = 30000,
		.spec_errors = (char *)"a.yaml:3:5: bad\nb.yaml:1:1: worse",
	};
	struct daemon_info out = { 0 };

	assert_int_equal(store_daemon_get(s, &out, &err), -ENOENT);
	assert_int_equal(store_daemon_put(s, &in, &err), 0);
	ro = open_ro(f->db);
	assert_int_equal(store_daemon_get(ro, &out, &err), 0);
	assert_int_equal(out.pid, 4242);
	assert_string_equal(out.version, "0.1.0");
	assert_string_equal(out.spec_dir, in.spec_dir);
	assert_string_equal(out.bridge, "banger0");
	assert_string_equal(out.subnet, in.subnet);
	assert_string_equal(out.disk_mode, "copy");
	assert_int_equal(out.started_at, 1000);
	assert_int_equal(out.heartbeat, 2000);
	assert_int_equal(out.last_resync, 1500);
	assert_int_equal(out.resync_ms, 30000);
	assert_string_equal(out.spec_errors, in.spec_errors);
	daemon_info_release(&out);

	/* Replaced, not added. */
	in.heartbeat = 3000;
	in.spec_errors = NULL;
	assert_int_equal(store_daemon_put(s, &in, &err), 0);
	assert_int_equal(store_daemon_get(ro, &out, &err), 0);
	assert_int_equal(out.heartbeat, 3000);
	assert_null(out.spec_errors);
	daemon_info_release(&out);
	assert_int_equal(raw_int(f->db, "SELECT count(*) FROM daemon"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_foreign_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_is_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_db_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_insert_get_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_insert_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_full_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_rolled_back_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_ids_and_cids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_list_set_step_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_corrupt_row, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_next_to_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only_after_writer_closed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_busy_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test(test_ipam_helpers),
		cmocka_unit_test_setup_teardown(test_ipam_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipam_full_and_gateway_in_middle, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ipam_never_twice_across_crash, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_pruned_at_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemon_row, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
