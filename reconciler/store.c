/*
 * store.c - the durable state in SQLite (<state>/banger.db): connection
 * setup, schema migrations, VM records, IP leases, events and the daemon
 * row; see store.h. The only file that includes sqlite3.h.
 *
 * Every connection (daemon or CLI) gets a busy timeout, foreign_keys=ON and
 * synchronous=FULL. Writes go through write_txn(): BEGIN IMMEDIATE, the
 * work, COMMIT; ROLLBACK on any error, and the whole transaction retried
 * with backoff (bounded by a deadline) when SQLite says BUSY or LOCKED.
 * Inside a group (store_group_begin) a write is a savepoint of the group's
 * transaction instead, made durable by store_group_commit().
 * Strings SQLite lends us (sqlite3_column_text) are copied before the next
 * step, and SQLite errors become -errno plus sqlite3_errmsg() text here.
 */
#include "reconciler/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

/* PRAGMA application_id of a banger database: "BNGR". */
#define STORE_APPLICATION_ID 0x424e4752
/* How long one statement waits for a lock held by another connection. */
#define STORE_BUSY_TIMEOUT_MS 5000
/* How long a write transaction keeps retrying after SQLITE_BUSY/LOCKED. */
#define STORE_WRITE_DEADLINE_MS 30000
#define STORE_BACKOFF_MIN_MS 5
#define STORE_BACKOFF_MAX_MS 500
/* Cap on any value SQLite hands us (SQLITE_LIMIT_LENGTH): a corrupt row can't exhaust memory. */
#define STORE_VALUE_MAX (8 * 1024 * 1024)
/* Event messages longer than this are cut (on a UTF-8 boundary). */
#define STORE_EVENT_MESSAGE_MAX 4096
#define STORE_QUICK_CHECK_ROWS 10

struct store {
	sqlite3 *db;
	char *path;
	enum store_mode mode;
	int busy_timeout_ms;
	int write_deadline_ms;
	int events_max;
	unsigned busy_retries; /* write transactions retried after BUSY/LOCKED (tests read it) */
	unsigned commits;      /* write transactions committed (store_commit_count) */
	bool in_group;	       /* between store_group_begin() and its commit or abort */
	bool group_broken;     /* SQLite rolled the group's transaction back (group_write) */
	int group_changes;     /* sqlite3_total_changes() when the group began */
	unsigned group_seq;    /* groups committed (store_group_seq) */
	int last_rc;	       /* primary SQLite code of the last failed call, SQLITE_OK if none */
};

/* ---- schema ------------------------------------------------------------------ */

/*
 * Step i brings the schema from version i to i + 1. Steps are append-only:
 * never edit a released step, add a new one. All pending steps and the new
 * user_version are one transaction, so a crash leaves the old version whole.
 * A step that must rebuild a table (SQLite's 12-step ALTER procedure) needs
 * foreign_keys=OFF, which is a no-op inside a transaction: give migrate()
 * a way to do that before adding such a step.
 */
static const char *const schema_steps[] = {
	/* 1: initial schema */
	"CREATE TABLE vms ("
	"  id TEXT PRIMARY KEY NOT NULL"
	"    CHECK (length(id) = 8 AND id NOT GLOB '*[^0-9a-f]*'),"
	"  name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),"
	"  source_file TEXT,"
	"  spec_json TEXT,"
	"  spec_hash TEXT NOT NULL DEFAULT '',"
	"  generation INTEGER NOT NULL DEFAULT 1,"
	"  observed_generation INTEGER NOT NULL DEFAULT 0,"
	"  phase TEXT NOT NULL,"
	"  desired_state TEXT NOT NULL,"
	"  ip TEXT,"
	"  mac TEXT NOT NULL DEFAULT '',"
	"  cid INTEGER NOT NULL UNIQUE CHECK (cid >= 3 AND cid < 4294967295),"
	"  vmm TEXT,"
	"  disk_mode TEXT,"
	"  vm_dir TEXT,"
	"  api_sock TEXT,"
	"  console_log TEXT,"
	"  cow_disk TEXT,"
	"  work_disk TEXT,"
	"  last_error TEXT,"
	"  restarts INTEGER NOT NULL DEFAULT 0,"
	"  failures INTEGER NOT NULL DEFAULT 0,"
	"  backoff_until INTEGER NOT NULL DEFAULT 0,"
	"  running_since INTEGER NOT NULL DEFAULT 0,"
	"  last_exit INTEGER NOT NULL DEFAULT -1,"
	"  action TEXT,"
	"  step TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL"
	") STRICT;"
	"CREATE TABLE ip_leases ("
	"  ip TEXT NOT NULL,"
	"  subnet TEXT NOT NULL,"
	"  addr INTEGER NOT NULL,"
	"  vm_id TEXT NOT NULL UNIQUE REFERENCES vms(id) ON DELETE CASCADE,"
	"  is_static INTEGER NOT NULL DEFAULT 0 CHECK (is_static IN (0, 1)),"
	"  created_at INTEGER NOT NULL,"
	"  UNIQUE (subnet, ip),"
	"  UNIQUE (subnet, addr)"
	") STRICT;"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY,"
	"  time INTEGER NOT NULL,"
	"  vm TEXT,"
	"  type TEXT NOT NULL,"
	"  reason TEXT NOT NULL,"
	"  message TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX events_vm ON events (vm, id);"
	"CREATE TABLE daemon ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  pid INTEGER NOT NULL,"
	"  version TEXT,"
	"  spec_dir TEXT,"
	"  bridge TEXT,"
	"  subnet TEXT,"
	"  disk_mode TEXT,"
	"  started_at INTEGER NOT NULL,"
	"  heartbeat INTEGER NOT NULL,"
	"  last_resync INTEGER NOT NULL,"
	"  resync_ms INTEGER NOT NULL,"
	"  spec_errors TEXT"
	") STRICT;",
	/*
	 * 2: what keeps a VM's network rules from being whole (a port another VM
	 * holds); the daemon's default egress (--nat), for status
	 */
	"ALTER TABLE vms ADD COLUMN net_error TEXT;"
	"ALTER TABLE daemon ADD COLUMN nat INTEGER NOT NULL DEFAULT 0 CHECK (nat IN (0, 1));",
	/*
	 * 3: a stop in progress: how far it has escalated (1 graceful request
	 * sent, 2 SIGTERM, 3 SIGKILL) and until when that stage waits (epoch
	 * ms), so a restarted daemon keeps the deadline
	 */
	"ALTER TABLE vms ADD COLUMN stop_stage INTEGER NOT NULL DEFAULT 0"
	"  CHECK (stop_stage BETWEEN 0 AND 3);"
	"ALTER TABLE vms ADD COLUMN stop_deadline INTEGER NOT NULL DEFAULT 0;",
};

/* The steps migrate() applies; a test may point these at its own list. */
static const char *const *migrations = schema_steps;
static size_t n_migrations = ARRAY_SIZE(schema_steps);
/* Called after each applied step with the version it reached (tests inject crashes here). */
static void (*migrate_hook)(int version);

int store_schema_version(void)
{
	return (int)n_migrations;
}

/* ---- errors and statements -------------------------------------------------------- */

static int rc_to_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return EBUSY;
	case SQLITE_NOMEM:
		return ENOMEM;
	case SQLITE_READONLY:
		return EROFS;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return EACCES;
	case SQLITE_FULL:
		return ENOSPC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return EBADMSG;
	case SQLITE_TOOBIG:
		return EFBIG;
	case SQLITE_PROTOCOL:
		return EPROTO;
	case SQLITE_CANTOPEN:
		return ENOENT;
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
			return EEXIST;
		return EINVAL;
	default:
		return EIO;
	}
}

/* Record a SQLite failure: "<context>: <sqlite3_errmsg>", as -errno. */
static int sql_fail(struct store *s, int rc, struct bg_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int sql_fail(struct store *s, int rc, struct bg_err *err, const char *fmt, ...)
{
	char ctx[512];
	const char *msg = NULL;
	int errnum = rc_to_errno(rc);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	s->last_rc = rc & 0xff;
	if (s->db && sqlite3_errcode(s->db) != SQLITE_OK)
		msg = sqlite3_errmsg(s->db);
	if (!msg || !*msg)
		msg = sqlite3_errstr(rc);
	/* CANTOPEN and IOERR hide an errno that says more (EACCES, EROFS, ENOSPC). */
	if (s->db && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR) &&
	    sqlite3_system_errno(s->db) > 0)
		errnum = sqlite3_system_errno(s->db);
	return bg_errorf(err, errnum, "%s: %s", ctx, msg);
}

static void stmt_finalizep(sqlite3_stmt **st)
{
	if (*st)
		(void)sqlite3_finalize(*st);
}
#define _cleanup_stmt_ _cleanup_(stmt_finalizep)

static int prepare(struct store *s, const char *sql, sqlite3_stmt **ret, struct bg_err *err)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, ret, NULL);

	if (rc != SQLITE_OK)
		return sql_fail(s, rc, err, "prepare '%.48s...'", sql);
	return 0;
}

/* Run SQL without results (several statements allowed). */
static int exec_sql(struct store *s, const char *sql, struct bg_err *err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		int r = bg_errorf(err, rc_to_errno(rc), "'%.48s': %s", sql,
				  msg ? msg : sqlite3_errstr(rc));

		s->last_rc = rc & 0xff;
		sqlite3_free(msg);
		return r;
	}
	return 0;
}

/* Bind parameters left to right, keeping the first failure. */
struct binder {
	sqlite3_stmt *st;
	int idx;
	int rc;
};

static void bind_text(struct binder *b, const char *v)
{
	b->idx++;
	if (b->rc != SQLITE_OK)
		return;
	if (v)
		b->rc = sqlite3_bind_text(b->st, b->idx, v, -1, SQLITE_STATIC);
	else
		b->rc = sqlite3_bind_null(b->st, b->idx);
}

static void bind_int(struct binder *b, int64_t v)
{
	b->idx++;
	if (b->rc == SQLITE_OK)
		b->rc = sqlite3_bind_int64(b->st, b->idx, v);
}

static int bind_check(struct store *s, const struct binder *b, struct bg_err *err)
{
	if (b->rc != SQLITE_OK)
		return sql_fail(s, b->rc, err, "bind parameter %d", b->idx);
	return 0;
}

/* Step a statement that returns no rows. */
static int step_done(struct store *s, sqlite3_stmt *st, const char *what, struct bg_err *err)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		return sql_fail(s, rc, err, "%s", what);
	return 0;
}

/*
 * Step for the next row: 1 with a row, 0 at the end, or -errno. Use in a
 * loop: while ((r = step_row(...)) > 0) { ... }.
 */
static int step_row(struct store *s, sqlite3_stmt *st, const char *what, struct bg_err *err)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_fail(s, rc, err, "%s", what);
}

/* Owned copy of a text column; NULL for SQL NULL. */
static char *col_strdup(sqlite3_stmt *st, int i)
{
	const unsigned char *t;

	if (sqlite3_column_type(st, i) == SQLITE_NULL)
		return NULL;
	t = sqlite3_column_text(st, i);
	if (!t)
		return NULL; /* out of memory inside SQLite: treated as NULL */
	return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, i));
}

/* Copy a text column into a fixed buffer; -EBADMSG when it does not fit. */
static int col_fixed(sqlite3_stmt *st, int i, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);

	if (!t) {
		buf[0] = '\0';
		return 0;
	}
	if (n < 0 || (size_t)n >= size)
		return -EBADMSG;
	memcpy(buf, t, (size_t)n);
	buf[n] = '\0';
	return 0;
}

static int pragma_int(struct store *s, const char *pragma, int64_t *ret, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *sql = xasprintf("PRAGMA %s", pragma);
	int r;

	r = prepare(s, sql, &st, err);
	if (r < 0)
		return r;
	r = step_row(s, st, sql, err);
	if (r < 0)
		return r;
	*ret = r > 0 ? sqlite3_column_int64(st, 0) : 0;
	return 0;
}

/* ---- transactions ------------------------------------------------------------------ */

typedef int (*txn_fn)(struct store *s, void *arg, struct bg_err *err);

static bool rc_is_busy(int rc)
{
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/*
 * One write inside an open group: a savepoint, undone alone on error. SQLite
 * may instead have rolled back the whole transaction (SQLITE_FULL, IOERR,
 * NOMEM): then the group is broken, every later write of it fails, and so
 * does its commit; a SAVEPOINT outside a transaction would commit on its own
 * and make a later write durable without the earlier ones.
 */
static int group_write(struct store *s, const char *what, txn_fn fn, void *arg, struct bg_err *err)
{
	int r, ret = 0;

	if (s->group_broken || sqlite3_get_autocommit(s->db)) {
		s->group_broken = true;
		return bg_errorf(
			err, EIO,
			"%s: the group's transaction ended early (rolled back, or not begun again)",
			what);
	}
	r = exec_sql(s, "SAVEPOINT w", err);
	if (r >= 0) {
		r = ret = fn(s, arg, err);
		if (r >= 0)
			r = exec_sql(s, "RELEASE w", err);
	}
	if (r >= 0)
		return ret;
	if (sqlite3_get_autocommit(s->db)) {
		s->group_broken = true;
	} else {
		(void)sqlite3_exec(s->db, "ROLLBACK TO w", NULL, NULL, NULL);
		(void)sqlite3_exec(s->db, "RELEASE w", NULL, NULL, NULL);
	}
	(void)bg_err_wrap(err, "%s", what);
	return r;
}

/* BEGIN IMMEDIATE, retried with backoff while another connection holds the lock. */
static int begin_immediate(struct store *s, const char *what, int64_t deadline, struct bg_err *err)
{
	int64_t backoff = STORE_BACKOFF_MIN_MS;

	for (;;) {
		int r;

		s->last_rc = SQLITE_OK;
		r = exec_sql(s, "BEGIN IMMEDIATE", err);
		if (r >= 0)
			return 0;
		if (!rc_is_busy(s->last_rc) || now_mono_ms() + backoff > deadline)
			return bg_err_wrap(err, "%s", what);
		bg_err_clear(err);
		s->busy_retries++;
		sleep_ms(backoff);
		backoff = backoff * 2 > STORE_BACKOFF_MAX_MS ? STORE_BACKOFF_MAX_MS : backoff * 2;
	}
}

/*
 * Run fn inside BEGIN IMMEDIATE ... COMMIT. On any error roll back; when the
 * error was SQLITE_BUSY/LOCKED (another connection holds the write lock past
 * our busy timeout) retry the whole transaction with exponential backoff
 * until write_deadline_ms. fn must only touch *arg's outputs in a way that a
 * retry overwrites. Inside a group: group_write(). Returns fn's result or
 * -errno.
 */
static int write_txn(struct store *s, const char *what, txn_fn fn, void *arg, struct bg_err *err)
{
	int64_t deadline = now_mono_ms() + s->write_deadline_ms;
	int64_t backoff = STORE_BACKOFF_MIN_MS;

	if (s->mode != STORE_READ_WRITE)
		return bg_errorf(err, EROFS, "%s: the state database '%s' is open read-only", what,
				 s->path);
	if (s->in_group)
		return group_write(s, what, fn, arg, err);
	for (;;) {
		int r, ret = 0, changes = sqlite3_total_changes(s->db);

		s->last_rc = SQLITE_OK;
		r = exec_sql(s, "BEGIN IMMEDIATE", err);
		if (r >= 0) {
			r = ret = fn(s, arg, err);
			if (r >= 0)
				r = exec_sql(s, "COMMIT", err);
		}
		if (r >= 0) {
			if (sqlite3_total_changes(s->db) != changes)
				s->commits++;
			return ret;
		}
		if (!sqlite3_get_autocommit(s->db))
			(void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		if (!rc_is_busy(s->last_rc) || now_mono_ms() + backoff > deadline) {
			(void)bg_err_wrap(err, "%s", what);
			return r;
		}
		s->busy_retries++;
		sleep_ms(backoff);
		backoff = backoff * 2 > STORE_BACKOFF_MAX_MS ? STORE_BACKOFF_MAX_MS : backoff * 2;
	}
}

int store_group_begin(struct store *s, struct bg_err *err)
{
	int r;

	if (s->mode != STORE_READ_WRITE)
		return bg_errorf(err, EROFS,
				 "group commit: the state database '%s' is open read-only",
				 s->path);
	if (s->in_group)
		return bg_errorf(err, EBUSY, "group commit: a group is already open");
	r = begin_immediate(s, "group commit: begin", now_mono_ms() + s->write_deadline_ms, err);
	if (r < 0)
		return r;
	s->in_group = true;
	s->group_broken = false;
	s->group_changes = sqlite3_total_changes(s->db);
	return 0;
}

int store_group_commit(struct store *s, struct bg_err *err)
{
	int r;

	if (!s->in_group)
		return 0;
	s->in_group = false;
	if (s->group_broken || sqlite3_get_autocommit(s->db))
		return bg_errorf(err, EIO, "group commit: the transaction was rolled back");
	r = exec_sql(s, "COMMIT", err);
	if (r < 0) {
		if (!sqlite3_get_autocommit(s->db))
			(void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return bg_err_wrap(err, "group commit");
	}
	if (sqlite3_total_changes(s->db) != s->group_changes)
		s->commits++; /* an empty group wrote nothing and synced nothing */
	s->group_seq++;
	return 0;
}

int store_group_checkpoint(struct store *s, struct bg_err *err)
{
	int r;

	if (!s->in_group)
		return bg_errorf(err, EINVAL, "group commit: no group is open");
	r = store_group_commit(s, err);
	if (r >= 0)
		r = store_group_begin(s, err);
	if (r < 0) {
		/* Still a group, a broken one: what it held is gone (a failed COMMIT) or on
		 * disk (a failed BEGIN after it), and either way a later write must fail
		 * rather than be kept on its own, outside a transaction. */
		if (!sqlite3_get_autocommit(s->db))
			(void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->in_group = true;
		s->group_broken = true;
	}
	return r;
}

void store_group_abort(struct store *s)
{
	if (!s->in_group)
		return;
	s->in_group = false;
	if (!sqlite3_get_autocommit(s->db))
		(void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

unsigned store_group_seq(const struct store *s)
{
	return s->group_seq;
}

unsigned store_commit_count(const struct store *s)
{
	return s->commits;
}

/* ---- open, migrate, close ------------------------------------------------------------- */

static int quick_check(struct store *s, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_buf_ struct buf problems = { 0 };
	char sql[64];
	int r;

	buf_init(&problems);
	snprintf(sql, sizeof(sql), "PRAGMA quick_check(%d)", STORE_QUICK_CHECK_ROWS);
	r = prepare(s, sql, &st, err);
	if (r < 0)
		return r;
	while ((r = step_row(s, st, "quick_check", err)) > 0) {
		const char *t = (const char *)sqlite3_column_text(st, 0);

		if (t && strcmp(t, "ok") == 0)
			continue;
		if (problems.len)
			buf_adds(&problems, "; ");
		buf_adds(&problems, t ? t : "(null)");
	}
	if (r < 0)
		return r;
	if (problems.len)
		return bg_errorf(err, EBADMSG, "'%s' failed PRAGMA quick_check: %s", s->path,
				 problems.data);
	return 0;
}

/* Refuse files that are not ours, and schemas newer than this build. */
static int check_identity(struct store *s, int64_t version, int64_t app_id, struct bg_err *err)
{
	if (app_id != STORE_APPLICATION_ID && (app_id != 0 || version != 0))
		return bg_errorf(err, EPROTO,
				 "'%s' is not a banger database (application_id 0x%08" PRIx64 ")",
				 s->path, (uint64_t)(uint32_t)app_id);
	if (version > (int64_t)n_migrations)
		return bg_errorf(
			err, EPROTO,
			"'%s' has schema version %" PRId64
			", newer than the %zu this banger knows: it was written by a newer "
			"banger; upgrade banger (refusing to open it)",
			s->path, version, n_migrations);
	return 0;
}

/* A file without our application_id must be empty: never adopt someone else's database. */
static int check_empty(struct store *s, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int64_t n_objects;
	int r;

	r = prepare(s, "SELECT count(*) FROM sqlite_schema", &st, err);
	if (r >= 0)
		r = step_row(s, st, "count schema objects", err);
	if (r < 0)
		return r;
	n_objects = sqlite3_column_int64(st, 0);
	if (n_objects > 0)
		return bg_errorf(err, EPROTO,
				 "'%s' is not a banger database (it has %" PRId64
				 " foreign schema objects)",
				 s->path, n_objects);
	return 0;
}

static int migrate_txn(struct store *s, void *arg, struct bg_err *err)
{
	int64_t version, app_id;
	int *ret_from = arg;
	char sql[96];
	int r;

	r = pragma_int(s, "user_version", &version, err);
	if (r >= 0)
		r = pragma_int(s, "application_id", &app_id, err);
	if (r < 0)
		return r;
	r = check_identity(s, version, app_id, err);
	if (r < 0)
		return r;
	if (app_id == 0) {
		r = check_empty(s, err);
		if (r < 0)
			return r;
	}
	*ret_from = (int)version;
	if (version == (int64_t)n_migrations)
		return 0;
	for (int64_t v = version; v < (int64_t)n_migrations; v++) {
		r = exec_sql(s, migrations[v], err);
		if (r < 0)
			return bg_err_wrap(err, "schema step %" PRId64 " -> %" PRId64, v, v + 1);
		if (migrate_hook)
			migrate_hook((int)v + 1);
	}
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", STORE_APPLICATION_ID);
	r = exec_sql(s, sql, err);
	if (r < 0)
		return r;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu", n_migrations);
	return exec_sql(s, sql, err);
}

/* Settings every connection needs, read-only or not. */
static int configure(struct store *s, struct bg_err *err)
{
	int rc;

	sqlite3_extended_result_codes(s->db, 1);
	(void)sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, STORE_VALUE_MAX);
	/* No schema tricks through SQL (writable_schema etc.), no code from the schema. */
	(void)sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	(void)sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	rc = sqlite3_busy_timeout(s->db, s->busy_timeout_ms);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, err, "set busy timeout on '%s'", s->path);
	/* Per connection, not stored in the file: set them every time. */
	if (exec_sql(s, "PRAGMA foreign_keys = ON", err) < 0 ||
	    exec_sql(s, "PRAGMA synchronous = FULL", err) < 0)
		return bg_err_wrap(err, "configure '%s'", s->path);
	return 0;
}

static int open_read_write(struct store *s, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	const char *mode;
	int on = 1, from = 0, r;

	/* journal_mode=WAL is persistent in the file; this is a no-op after the first time. */
	r = prepare(s, "PRAGMA journal_mode = WAL", &st, err);
	if (r >= 0)
		r = step_row(s, st, "set WAL mode", err);
	if (r < 0)
		return bg_err_wrap(err, "open '%s'", s->path);
	mode = (const char *)sqlite3_column_text(st, 0);
	if (!mode || strcmp(mode, "wal") != 0)
		return bg_errorf(err, EIO,
				 "open '%s': could not switch to WAL mode (got '%s'); is the state "
				 "dir on a network filesystem?",
				 s->path, mode ? mode : "?");
	/* A statement still in progress would make the migration's COMMIT fail. */
	sqlite3_finalize(TAKE_PTR(st));
	/*
	 * Keep -wal and -shm when the daemon closes, so a read-only CLI (which
	 * may not be allowed to create them) can still open the database.
	 * journal_size_limit truncates the kept WAL on close.
	 */
	(void)sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &on);
	r = exec_sql(s, "PRAGMA journal_size_limit = 4194304", err);
	if (r < 0)
		return bg_err_wrap(err, "open '%s'", s->path);
	r = quick_check(s, err);
	if (r < 0)
		return r;
	r = write_txn(s, "migrate", migrate_txn, &from, err);
	if (r < 0)
		return bg_err_wrap(err, "open '%s'", s->path);
	return 0;
}

static int open_read_only(struct store *s, struct bg_err *err)
{
	int64_t version, app_id;
	int r;

	r = pragma_int(s, "user_version", &version, err);
	if (r >= 0)
		r = pragma_int(s, "application_id", &app_id, err);
	if (r < 0)
		return bg_err_wrap(err, "open '%s' read-only", s->path);
	r = check_identity(s, version, app_id, err);
	if (r < 0)
		return r;
	if (version == 0 && check_empty(s, err) < 0)
		return -EPROTO;
	if (version == 0)
		return bg_errorf(err, ENOENT,
				 "'%s' has not been initialised yet (bangerd has not finished its "
				 "first start)",
				 s->path);
	if (version < (int64_t)n_migrations)
		return bg_errorf(err, EPROTO,
				 "'%s' has schema version %" PRId64
				 ", older than this banger's %zu: start the new bangerd once to "
				 "migrate it",
				 s->path, version, n_migrations);
	return 0;
}

int store_open(const char *db_path, enum store_mode mode, struct store **ret, struct bg_err *err)
{
	_cleanup_(store_freep) struct store *s = NULL;
	int flags, rc, r;

	if (!db_path || !*db_path || (unsigned)mode >= STORE_MODE_MAX)
		return bg_errorf(err, EINVAL, "store_open: invalid arguments");
	s = xcalloc(1, sizeof(*s));
	s->path = xstrdup(db_path);
	s->mode = mode;
	s->busy_timeout_ms = STORE_BUSY_TIMEOUT_MS;
	s->write_deadline_ms = STORE_WRITE_DEADLINE_MS;
	s->events_max = STORE_EVENTS_MAX;

	if (mode == STORE_READ_ONLY) {
		struct stat st;

		/* SQLite would say "unable to open database file"; say what it means. */
		if (stat(db_path, &st) < 0) {
			if (errno == ENOENT)
				return bg_errorf(err, ENOENT,
						 "no state database at '%s' (bangerd has not run "
						 "with this state dir yet)",
						 db_path);
			return bg_error(err, errno, "stat '%s'", db_path);
		}
		flags = SQLITE_OPEN_READONLY;
	} else {
		flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	}
	rc = sqlite3_open_v2(db_path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc, err, "open '%s'%s", db_path,
				mode == STORE_READ_ONLY ? " read-only" : "");
	r = configure(s, err);
	if (r < 0)
		return r;
	r = mode == STORE_READ_WRITE ? open_read_write(s, err) : open_read_only(s, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	/* close_v2: never fails with BUSY; unfinalized statements are a bug we don't have. */
	(void)sqlite3_close_v2(s->db);
	free(s->path);
	free(s);
}

/* ---- vms ---------------------------------------------------------------------------- */

#define VM_COLUMNS                                                                               \
	"id, name, source_file, spec_json, spec_hash, generation, observed_generation, phase, "  \
	"desired_state, ip, mac, cid, vmm, disk_mode, vm_dir, api_sock, console_log, cow_disk, " \
	"work_disk, last_error, restarts, failures, backoff_until, running_since, last_exit, "   \
	"action, step, created_at, updated_at, net_error, stop_stage, stop_deadline"

enum {
	COL_ID,
	COL_NAME,
	COL_SOURCE_FILE,
	COL_SPEC_JSON,
	COL_SPEC_HASH,
	COL_GENERATION,
	COL_OBSERVED_GENERATION,
	COL_PHASE,
	COL_DESIRED_STATE,
	COL_IP,
	COL_MAC,
	COL_CID,
	COL_VMM,
	COL_DISK_MODE,
	COL_VM_DIR,
	COL_API_SOCK,
	COL_CONSOLE_LOG,
	COL_COW_DISK,
	COL_WORK_DISK,
	COL_LAST_ERROR,
	COL_RESTARTS,
	COL_FAILURES,
	COL_BACKOFF_UNTIL,
	COL_RUNNING_SINCE,
	COL_LAST_EXIT,
	COL_ACTION,
	COL_STEP,
	COL_CREATED_AT,
	COL_UPDATED_AT,
	COL_NET_ERROR,
	COL_STOP_STAGE,
	COL_STOP_DEADLINE,
	COL_MAX
};

static bool valid_id(const char *id)
{
	if (!id || strlen(id) != VM_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static int check_record(const struct vm_record *rec, struct bg_err *err)
{
	if (!rec->name || !*rec->name)
		return bg_errorf(err, EINVAL, "VM record without a name");
	if (!vm_phase_to_string(rec->phase))
		return bg_errorf(err, EINVAL, "vm '%s': invalid phase %d", rec->name,
				 (int)rec->phase);
	if (!vm_desired_state_to_string(rec->desired_state))
		return bg_errorf(err, EINVAL, "vm '%s': invalid desired state %d", rec->name,
				 (int)rec->desired_state);
	if (rec->cid != 0 && (rec->cid < 3 || rec->cid == UINT32_MAX))
		return bg_errorf(err, EINVAL, "vm '%s': invalid vsock CID %" PRIu32, rec->name,
				 rec->cid);
	return 0;
}

/* Bind all VM_COLUMNS in order as ?1..?32. */
static void bind_vm(struct binder *b, const struct vm_record *rec, int64_t created_at,
		    int64_t updated_at)
{
	bind_text(b, rec->id);
	bind_text(b, rec->name);
	bind_text(b, rec->source_file);
	bind_text(b, rec->spec_json);
	bind_text(b, rec->spec_hash);
	bind_int(b, rec->generation);
	bind_int(b, rec->observed_generation);
	bind_text(b, vm_phase_to_string(rec->phase));
	bind_text(b, vm_desired_state_to_string(rec->desired_state));
	bind_text(b, rec->ip);
	bind_text(b, rec->mac);
	bind_int(b, rec->cid);
	bind_text(b, rec->vmm);
	bind_text(b, rec->disk_mode);
	bind_text(b, rec->vm_dir);
	bind_text(b, rec->api_sock);
	bind_text(b, rec->console_log);
	bind_text(b, rec->cow_disk);
	bind_text(b, rec->work_disk);
	bind_text(b, rec->last_error);
	bind_int(b, rec->restarts);
	bind_int(b, rec->failures);
	bind_int(b, rec->backoff_until);
	bind_int(b, rec->running_since);
	bind_int(b, rec->last_exit);
	bind_text(b, rec->action);
	bind_text(b, rec->step);
	bind_int(b, created_at);
	bind_int(b, updated_at);
	bind_text(b, rec->net_error);
	bind_int(b, rec->stop_stage);
	bind_int(b, rec->stop_deadline);
}

/* Read one row of VM_COLUMNS into *ret (owned). -EBADMSG for a row this build can't trust. */
static int read_vm(sqlite3_stmt *st, struct vm_record *ret, struct bg_err *err)
{
	struct vm_record rec = { 0 };
	const char *phase = (const char *)sqlite3_column_text(st, COL_PHASE);
	int64_t cid = sqlite3_column_int64(st, COL_CID);
	int p, d;

	if (col_fixed(st, COL_ID, rec.id, sizeof(rec.id)) < 0 || !valid_id(rec.id))
		return bg_errorf(err, EBADMSG, "corrupt VM row: bad id");
	p = vm_phase_from_string(phase);
	if (p < 0)
		return bg_errorf(err, EBADMSG, "corrupt VM row %s: unknown phase '%s'", rec.id,
				 phase ? phase : "");
	d = vm_desired_state_from_string((const char *)sqlite3_column_text(st, COL_DESIRED_STATE));
	if (d < 0)
		return bg_errorf(err, EBADMSG, "corrupt VM row %s: unknown desired state", rec.id);
	if (cid < 3 || cid >= UINT32_MAX)
		return bg_errorf(err, EBADMSG, "corrupt VM row %s: bad CID %" PRId64, rec.id, cid);
	if (col_fixed(st, COL_SPEC_HASH, rec.spec_hash, sizeof(rec.spec_hash)) < 0 ||
	    col_fixed(st, COL_MAC, rec.mac, sizeof(rec.mac)) < 0)
		return bg_errorf(err, EBADMSG, "corrupt VM row %s: spec_hash or mac too long",
				 rec.id);
	rec.phase = (enum vm_phase)p;
	rec.desired_state = (enum vm_desired_state)d;
	rec.cid = (uint32_t)cid;
	rec.name = col_strdup(st, COL_NAME);
	rec.source_file = col_strdup(st, COL_SOURCE_FILE);
	rec.spec_json = col_strdup(st, COL_SPEC_JSON);
	rec.generation = sqlite3_column_int64(st, COL_GENERATION);
	rec.observed_generation = sqlite3_column_int64(st, COL_OBSERVED_GENERATION);
	rec.ip = col_strdup(st, COL_IP);
	rec.vmm = col_strdup(st, COL_VMM);
	rec.disk_mode = col_strdup(st, COL_DISK_MODE);
	rec.vm_dir = col_strdup(st, COL_VM_DIR);
	rec.api_sock = col_strdup(st, COL_API_SOCK);
	rec.console_log = col_strdup(st, COL_CONSOLE_LOG);
	rec.cow_disk = col_strdup(st, COL_COW_DISK);
	rec.work_disk = col_strdup(st, COL_WORK_DISK);
	rec.last_error = col_strdup(st, COL_LAST_ERROR);
	rec.restarts = sqlite3_column_int(st, COL_RESTARTS);
	rec.failures = sqlite3_column_int(st, COL_FAILURES);
	rec.backoff_until = sqlite3_column_int64(st, COL_BACKOFF_UNTIL);
	rec.running_since = sqlite3_column_int64(st, COL_RUNNING_SINCE);
	rec.last_exit = sqlite3_column_int(st, COL_LAST_EXIT);
	rec.action = col_strdup(st, COL_ACTION);
	rec.step = col_strdup(st, COL_STEP);
	rec.created_at = sqlite3_column_int64(st, COL_CREATED_AT);
	rec.updated_at = sqlite3_column_int64(st, COL_UPDATED_AT);
	rec.net_error = col_strdup(st, COL_NET_ERROR);
	rec.stop_stage = (int)sqlite3_column_int64(st, COL_STOP_STAGE);
	rec.stop_deadline = sqlite3_column_int64(st, COL_STOP_DEADLINE);
	if (!rec.name) {
		int r = bg_errorf(err, EBADMSG, "corrupt VM row %s: no name", rec.id);

		vm_record_release(&rec);
		return r;
	}
	*ret = rec;
	return 0;
}

int store_vm_list(struct store *s, struct vm_record **ret, size_t *ret_n, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct vm_record *recs = NULL;
	size_t n = 0;
	int r;

	r = prepare(s, "SELECT " VM_COLUMNS " FROM vms ORDER BY name", &st, err);
	if (r < 0)
		return bg_err_wrap(err, "list VMs");
	while ((r = step_row(s, st, "list VMs", err)) > 0) {
		recs = xreallocarray(recs, n + 1, sizeof(*recs));
		r = read_vm(st, &recs[n], err);
		if (r < 0)
			break;
		n++;
	}
	if (r < 0) {
		vm_record_array_free(recs, n);
		return r;
	}
	*ret = recs;
	*ret_n = n;
	return 0;
}

static int vm_get_by(struct store *s, const char *column, const char *key, struct vm_record *ret,
		     struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *sql = xasprintf("SELECT " VM_COLUMNS " FROM vms WHERE %s = ?", column);
	struct binder b;
	int r;

	if (!key)
		return bg_errorf(err, EINVAL, "no VM %s given", column);
	r = prepare(s, sql, &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, key);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	r = step_row(s, st, "get VM", err);
	if (r < 0)
		return r;
	if (r == 0)
		return bg_errorf(err, ENOENT, "no VM with %s '%s'", column, key);
	return read_vm(st, ret, err);
}

int store_vm_get_by_name(struct store *s, const char *name, struct vm_record *ret,
			 struct bg_err *err)
{
	return vm_get_by(s, "name", name, ret, err);
}

int store_vm_get(struct store *s, const char *id, struct vm_record *ret, struct bg_err *err)
{
	return vm_get_by(s, "id", id, ret, err);
}

/* Is there a row in 'sql' (one text parameter)? 1 yes, 0 no, or -errno. Name of a text column
 * of the row into ret_name when non-NULL. */
static int row_exists(struct store *s, const char *sql, const char *param, int64_t iparam,
		      char **ret_text, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct binder b;
	int r;

	r = prepare(s, sql, &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	if (param)
		bind_text(&b, param);
	else
		bind_int(&b, iparam);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	r = step_row(s, st, sql, err);
	if (r > 0 && ret_text)
		*ret_text = col_strdup(st, 0);
	return r;
}

/* Lowest CID >= 3 no row uses. */
static int free_cid(struct store *s, uint32_t *ret, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	uint64_t want = 3;
	int r;

	r = prepare(s, "SELECT cid FROM vms WHERE cid >= 3 ORDER BY cid", &st, err);
	if (r < 0)
		return r;
	while ((r = step_row(s, st, "list CIDs", err)) > 0) {
		uint64_t cid = (uint64_t)sqlite3_column_int64(st, 0);

		if (cid > want)
			break;
		if (cid == want)
			want++;
	}
	if (r < 0)
		return r;
	if (want >= UINT32_MAX)
		return bg_errorf(err, ENOSPC, "no free vsock CID");
	*ret = (uint32_t)want;
	return 0;
}

static void random_id(char out[VM_ID_LEN + 1])
{
	uint8_t raw[VM_ID_LEN / 2];

	if (random_bytes(raw, sizeof(raw)) < 0)
		abort(); /* getrandom() only fails for programming errors */
	hex_encode(raw, sizeof(raw), out);
}

struct insert_arg {
	const struct vm_record *rec;
	char id[VM_ID_LEN + 1];
	uint32_t cid;
	int64_t generation;
	int64_t now;
};

static int insert_txn(struct store *s, void *arg, struct bg_err *err)
{
	struct insert_arg *a = arg;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *holder = NULL;
	struct vm_record row;
	struct binder b;
	int r;

	r = row_exists(s, "SELECT id FROM vms WHERE name = ?", a->rec->name, 0, &holder, err);
	if (r < 0)
		return r;
	if (r > 0)
		return bg_errorf(err, EEXIST, "a VM named '%s' already exists (id %s)",
				 a->rec->name, holder ? holder : "?");
	if (a->rec->id[0]) {
		memcpy(a->id, a->rec->id, sizeof(a->id));
		r = row_exists(s, "SELECT 1 FROM vms WHERE id = ?", a->id, 0, NULL, err);
		if (r < 0)
			return r;
		if (r > 0)
			return bg_errorf(err, EEXIST, "VM id %s is already taken", a->id);
	} else {
		/* 2^32 ids: a collision is rare, but checked, not hoped away. */
		for (int tries = 0;; tries++) {
			if (tries == 64)
				return bg_errorf(err, EEXIST, "could not find a free VM id");
			random_id(a->id);
			r = row_exists(s, "SELECT 1 FROM vms WHERE id = ?", a->id, 0, NULL, err);
			if (r < 0)
				return r;
			if (r == 0)
				break;
		}
	}
	if (a->rec->cid) {
		a->cid = a->rec->cid;
		r = row_exists(s, "SELECT name FROM vms WHERE cid = ?", NULL, a->cid, &holder, err);
		if (r < 0)
			return r;
		if (r > 0)
			return bg_errorf(err, EEXIST, "vsock CID %" PRIu32 " is used by VM '%s'",
					 a->cid, holder ? holder : "?");
	} else {
		r = free_cid(s, &a->cid, err);
		if (r < 0)
			return r;
	}
	row = *a->rec;
	memcpy(row.id, a->id, sizeof(row.id));
	row.cid = a->cid;
	row.generation = a->generation;
	r = prepare(s,
		    "INSERT INTO vms (" VM_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
		    "?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, "
		    "?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32)",
		    &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_vm(&b, &row, a->now, a->now);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	return step_done(s, st, "insert VM", err);
}

int store_vm_insert(struct store *s, struct vm_record *rec, struct bg_err *err)
{
	struct insert_arg a = { .rec = rec };
	int r;

	r = check_record(rec, err);
	if (r < 0)
		return r;
	if (rec->id[0] && !valid_id(rec->id))
		return bg_errorf(err, EINVAL,
				 "vm '%s': invalid id '%s' (want %d lowercase hex chars)",
				 rec->name, rec->id, VM_ID_LEN);
	a.generation = rec->generation > 0 ? rec->generation : 1;
	a.now = now_real_ms();
	r = write_txn(s, "insert VM", insert_txn, &a, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name);
	memcpy(rec->id, a.id, sizeof(rec->id));
	rec->cid = a.cid;
	rec->generation = a.generation;
	rec->created_at = a.now;
	rec->updated_at = a.now;
	return 0;
}

struct update_arg {
	const struct vm_record *rec;
	int64_t now;
};

static int update_txn(struct store *s, void *arg, struct bg_err *err)
{
	struct update_arg *a = arg;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *holder = NULL;
	struct binder b;
	int r;

	r = row_exists(s, "SELECT 1 FROM vms WHERE id = ?", a->rec->id, 0, NULL, err);
	if (r < 0)
		return r;
	if (r == 0)
		return bg_errorf(err, ENOENT, "no VM with id '%s'", a->rec->id);
	r = row_exists(s, "SELECT id FROM vms WHERE name = ?1", a->rec->name, 0, &holder, err);
	if (r < 0)
		return r;
	if (r > 0 && holder && strcmp(holder, a->rec->id) != 0)
		return bg_errorf(err, EEXIST, "a VM named '%s' already exists (id %s)",
				 a->rec->name, holder);
	free(holder);
	holder = NULL;
	r = row_exists(s, "SELECT id FROM vms WHERE cid = ?1", NULL, a->rec->cid, &holder, err);
	if (r < 0)
		return r;
	if (r > 0 && holder && strcmp(holder, a->rec->id) != 0)
		return bg_errorf(err, EEXIST, "vsock CID %" PRIu32 " is used by VM id %s",
				 a->rec->cid, holder);
	/* Every column but id and created_at (?28, bound but unused). */
	r = prepare(s,
		    "UPDATE vms SET name = ?2, source_file = ?3, spec_json = ?4, spec_hash = ?5, "
		    "generation = ?6, observed_generation = ?7, phase = ?8, desired_state = ?9, "
		    "ip = ?10, mac = ?11, cid = ?12, vmm = ?13, disk_mode = ?14, vm_dir = ?15, "
		    "api_sock = ?16, console_log = ?17, cow_disk = ?18, work_disk = ?19, "
		    "last_error = ?20, restarts = ?21, failures = ?22, backoff_until = ?23, "
		    "running_since = ?24, last_exit = ?25, action = ?26, step = ?27, "
		    "updated_at = ?29, net_error = ?30, stop_stage = ?31, stop_deadline = ?32 "
		    "WHERE id = ?1",
		    &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_vm(&b, a->rec, 0, a->now);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	return step_done(s, st, "update VM", err);
}

int store_vm_update(struct store *s, const struct vm_record *rec, struct bg_err *err)
{
	struct update_arg a = { .rec = rec, .now = now_real_ms() };
	int r;

	r = check_record(rec, err);
	if (r < 0)
		return r;
	if (!valid_id(rec->id))
		return bg_errorf(err, EINVAL, "vm '%s': invalid id '%s'", rec->name, rec->id);
	if (rec->cid == 0)
		return bg_errorf(err, EINVAL, "vm '%s': no vsock CID", rec->name);
	r = write_txn(s, "update VM", update_txn, &a, err);
	if (r < 0)
		return bg_err_wrap(err, "vm '%s'", rec->name);
	return 0;
}

struct step_arg {
	const char *id;
	const char *action;
	const char *step;
};

static int set_step_txn(struct store *s, void *arg, struct bg_err *err)
{
	struct step_arg *a = arg;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct binder b;
	int r;

	r = prepare(s, "UPDATE vms SET action = ?, step = ?, updated_at = ? WHERE id = ?", &st,
		    err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, a->action);
	bind_text(&b, a->step);
	bind_int(&b, now_real_ms());
	bind_text(&b, a->id);
	r = bind_check(s, &b, err);
	if (r >= 0)
		r = step_done(s, st, "set step", err);
	if (r < 0)
		return r;
	if (sqlite3_changes(s->db) == 0)
		return bg_errorf(err, ENOENT, "no VM with id '%s'", a->id);
	return 0;
}

int store_vm_set_step(struct store *s, const char *id, const char *action, const char *step,
		      struct bg_err *err)
{
	struct step_arg a = { .id = id, .action = action, .step = step };

	if (!valid_id(id))
		return bg_errorf(err, EINVAL, "invalid VM id '%s'", id ? id : "");
	return write_txn(s, "record step", set_step_txn, &a, err);
}

static int delete_txn(struct store *s, void *arg, struct bg_err *err)
{
	const char *id = arg;
	const char *const sqls[] = { "DELETE FROM ip_leases WHERE vm_id = ?",
				     "DELETE FROM vms WHERE id = ?" };

	for (size_t i = 0; i < ARRAY_SIZE(sqls); i++) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		struct binder b;
		int r;

		r = prepare(s, sqls[i], &st, err);
		if (r < 0)
			return r;
		b = (struct binder){ .st = st };
		bind_text(&b, id);
		r = bind_check(s, &b, err);
		if (r >= 0)
			r = step_done(s, st, "delete VM", err);
		if (r < 0)
			return r;
	}
	return 0;
}

int store_vm_delete(struct store *s, const char *id, struct bg_err *err)
{
	if (!valid_id(id))
		return bg_errorf(err, EINVAL, "invalid VM id '%s'", id ? id : "");
	return write_txn(s, "delete VM", delete_txn, (void *)id, err);
}

/* ---- IPAM --------------------------------------------------------------------------- */

static int parse_ipv4(const char *s, uint32_t *ret)
{
	struct in_addr a;

	if (!s || strlen(s) > 15 || inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*ret = ntohl(a.s_addr);
	return 0;
}

static void format_ipv4(uint32_t addr, char out[16])
{
	snprintf(out, 16, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255,
		 addr & 255);
}

int ipam_mac_from_ip(const char *ip, char ret_mac[18])
{
	uint32_t a;

	if (parse_ipv4(ip, &a) < 0)
		return -EINVAL;
	snprintf(ret_mac, 18, "02:bb:%02x:%02x:%02x:%02x", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
		 a & 255);
	return 0;
}

int ipam_parse_subnet(const char *cidr, uint32_t *ret_gateway, uint32_t *ret_network,
		      unsigned *ret_prefix)
{
	char addr[16];
	const char *slash, *p;
	unsigned prefix = 0;
	uint32_t gw, mask, net;

	if (!cidr)
		return -EINVAL;
	slash = strchr(cidr, '/');
	if (!slash || (size_t)(slash - cidr) >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, cidr, (size_t)(slash - cidr));
	addr[slash - cidr] = '\0';
	p = slash + 1;
	if (!*p || strlen(p) > 2)
		return -EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		prefix = prefix * 10 + (unsigned)(*p - '0');
	}
	/* /31 and /32 leave no address for a guest; < /8 is not a bridge subnet. */
	if (prefix < 8 || prefix > 30)
		return -EINVAL;
	if (parse_ipv4(addr, &gw) < 0)
		return -EINVAL;
	mask = ~(uint32_t)0 << (32 - prefix);
	net = gw & mask;
	/* The given address is the gateway: it can't be the network or broadcast address. */
	if (gw == net || gw == (net | ~mask))
		return -EINVAL;
	if (ret_gateway)
		*ret_gateway = gw;
	if (ret_network)
		*ret_network = net;
	if (ret_prefix)
		*ret_prefix = prefix;
	return 0;
}

struct lease_arg {
	const char *vm_id;
	const char *subnet_key; /* canonical "network/prefix" */
	uint32_t gateway, network, broadcast;
	bool has_static;
	uint32_t static_addr;
	char ip[16];
};

static int lease_insert(struct store *s, const struct lease_arg *a, uint32_t addr, bool is_static,
			struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char ip[16];
	struct binder b;
	int r;

	format_ipv4(addr, ip);
	r = prepare(s,
		    "INSERT INTO ip_leases (ip, subnet, addr, vm_id, is_static, created_at) "
		    "VALUES (?, ?, ?, ?, ?, ?)",
		    &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, ip);
	bind_text(&b, a->subnet_key);
	bind_int(&b, addr);
	bind_text(&b, a->vm_id);
	bind_int(&b, is_static);
	bind_int(&b, now_real_ms());
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	return step_done(s, st, "insert lease", err);
}

static int lease_exec(struct store *s, const char *sql, const char *vm_id, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct binder b;
	int r;

	r = prepare(s, sql, &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, vm_id);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	return step_done(s, st, sql, err);
}

/* Lowest address of the subnet that is not the network, gateway, broadcast or leased. */
static int lowest_free(struct store *s, const struct lease_arg *a, uint32_t *ret,
		       struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct binder b;
	uint64_t want = (uint64_t)a->network + 1;
	size_t n = 0;
	int r;

	r = prepare(s, "SELECT addr FROM ip_leases WHERE subnet = ? ORDER BY addr", &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, a->subnet_key);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	/* Leases come sorted: walk them once, skipping the gateway on the way. */
	while ((r = step_row(s, st, "list leases", err)) > 0) {
		uint64_t addr = (uint64_t)sqlite3_column_int64(st, 0);

		n++;
		if (want == a->gateway)
			want++;
		if (addr > want)
			break;
		if (addr == want)
			want++;
	}
	if (r < 0)
		return r;
	if (want == a->gateway)
		want++;
	if (want >= a->broadcast)
		return bg_errorf(err, ENOSPC, "subnet %s is full (%zu addresses leased)",
				 a->subnet_key, n);
	*ret = (uint32_t)want;
	return 0;
}

static int lease_txn(struct store *s, void *arg, struct bg_err *err)
{
	struct lease_arg *a = arg;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *cur_subnet = NULL;
	struct binder b;
	bool have = false, cur_static = false;
	uint32_t cur_addr = 0, addr = 0;
	int r;

	r = row_exists(s, "SELECT 1 FROM vms WHERE id = ?", a->vm_id, 0, NULL, err);
	if (r < 0)
		return r;
	if (r == 0)
		return bg_errorf(err, ENOENT, "no VM with id '%s'", a->vm_id);

	r = prepare(s, "SELECT subnet, addr, is_static FROM ip_leases WHERE vm_id = ?", &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, a->vm_id);
	r = bind_check(s, &b, err);
	if (r >= 0)
		r = step_row(s, st, "get lease", err);
	if (r < 0)
		return r;
	if (r > 0) {
		have = true;
		cur_subnet = col_strdup(st, 0);
		cur_addr = (uint32_t)sqlite3_column_int64(st, 1);
		cur_static = sqlite3_column_int(st, 2) != 0;
	}
	have = have && cur_subnet && strcmp(cur_subnet, a->subnet_key) == 0;

	if (a->has_static) {
		_cleanup_stmt_ sqlite3_stmt *q = NULL;
		char ip[16];

		if (have && cur_addr == a->static_addr) {
			if (!cur_static) {
				r = lease_exec(s,
					       "UPDATE ip_leases SET is_static = 1 WHERE vm_id = ?",
					       a->vm_id, err);
				if (r < 0)
					return r;
			}
			format_ipv4(cur_addr, a->ip);
			return 0;
		}
		format_ipv4(a->static_addr, ip);
		r = prepare(s,
			    "SELECT l.vm_id, v.name FROM ip_leases l JOIN vms v ON v.id = l.vm_id "
			    "WHERE l.subnet = ? AND l.addr = ?",
			    &q, err);
		if (r < 0)
			return r;
		b = (struct binder){ .st = q };
		bind_text(&b, a->subnet_key);
		bind_int(&b, a->static_addr);
		r = bind_check(s, &b, err);
		if (r >= 0)
			r = step_row(s, q, "find lease holder", err);
		if (r < 0)
			return r;
		if (r > 0) {
			_cleanup_free_ char *holder_id = col_strdup(q, 0);
			_cleanup_free_ char *holder = col_strdup(q, 1);

			return bg_errorf(err, EADDRINUSE, "%s is already leased to VM '%s' (id %s)",
					 ip, holder ? holder : "?", holder_id ? holder_id : "?");
		}
		addr = a->static_addr;
	} else if (have) {
		/* Idempotent: the VM keeps its address (no longer pinned by its spec). */
		if (cur_static) {
			r = lease_exec(s, "UPDATE ip_leases SET is_static = 0 WHERE vm_id = ?",
				       a->vm_id, err);
			if (r < 0)
				return r;
		}
		format_ipv4(cur_addr, a->ip);
		return 0;
	} else {
		r = lowest_free(s, a, &addr, err);
		if (r < 0)
			return r;
	}
	/* One lease per VM: moving to another address or subnet drops the old one. */
	r = lease_exec(s, "DELETE FROM ip_leases WHERE vm_id = ?", a->vm_id, err);
	if (r < 0)
		return r;
	r = lease_insert(s, a, addr, a->has_static, err);
	if (r < 0)
		return r;
	format_ipv4(addr, a->ip);
	return 0;
}

int store_ip_lease(struct store *s, const char *subnet, const char *vm_id, const char *static_ip,
		   char ret_ip[16], struct bg_err *err)
{
	struct lease_arg a = { .vm_id = vm_id };
	_cleanup_free_ char *key = NULL;
	char net[16];
	unsigned prefix;
	int r;

	if (!valid_id(vm_id))
		return bg_errorf(err, EINVAL, "invalid VM id '%s'", vm_id ? vm_id : "");
	if (ipam_parse_subnet(subnet, &a.gateway, &a.network, &prefix) < 0)
		return bg_errorf(err, EINVAL,
				 "invalid subnet '%s' (want the gateway address and a prefix "
				 "/8../30, e.g. 172.30.0.1/24)",
				 subnet ? subnet : "");
	a.broadcast = a.network | ~(~(uint32_t)0 << (32 - prefix));
	format_ipv4(a.network, net);
	key = xasprintf("%s/%u", net, prefix);
	a.subnet_key = key;
	if (static_ip) {
		a.has_static = true;
		if (parse_ipv4(static_ip, &a.static_addr) < 0)
			return bg_errorf(err, EINVAL, "invalid IPv4 address '%s'", static_ip);
		if ((a.static_addr & ~(a.broadcast ^ a.network)) != a.network)
			return bg_errorf(err, EINVAL, "static IP %s is outside the subnet %s",
					 static_ip, subnet);
		if (a.static_addr == a.network)
			return bg_errorf(err, EINVAL, "static IP %s is the network address of %s",
					 static_ip, subnet);
		if (a.static_addr == a.broadcast)
			return bg_errorf(err, EINVAL, "static IP %s is the broadcast address of %s",
					 static_ip, subnet);
		if (a.static_addr == a.gateway)
			return bg_errorf(err, EINVAL,
					 "static IP %s is the gateway (bridge) address", static_ip);
	}
	r = write_txn(s, "lease IP", lease_txn, &a, err);
	if (r < 0)
		return r;
	memcpy(ret_ip, a.ip, sizeof(a.ip));
	return 0;
}

static int release_txn(struct store *s, void *arg, struct bg_err *err)
{
	return lease_exec(s, "DELETE FROM ip_leases WHERE vm_id = ?", arg, err);
}

int store_ip_release(struct store *s, const char *vm_id, struct bg_err *err)
{
	if (!valid_id(vm_id))
		return bg_errorf(err, EINVAL, "invalid VM id '%s'", vm_id ? vm_id : "");
	return write_txn(s, "release IP", release_txn, (void *)vm_id, err);
}

int store_ip_list(struct store *s, struct ip_lease **ret, size_t *ret_n, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ struct ip_lease *leases = NULL;
	size_t n = 0;
	int r;

	r = prepare(s, "SELECT ip, vm_id, is_static FROM ip_leases ORDER BY subnet, addr", &st,
		    err);
	if (r < 0)
		return r;
	while ((r = step_row(s, st, "list leases", err)) > 0) {
		struct ip_lease *l;

		leases = xreallocarray(leases, n + 1, sizeof(*leases));
		l = &leases[n];
		memset(l, 0, sizeof(*l));
		if (col_fixed(st, 0, l->ip, sizeof(l->ip)) < 0 ||
		    col_fixed(st, 1, l->vm_id, sizeof(l->vm_id)) < 0)
			return bg_errorf(err, EBADMSG, "corrupt lease row");
		l->is_static = sqlite3_column_int(st, 2) != 0;
		n++;
	}
	if (r < 0)
		return bg_err_wrap(err, "list leases");
	*ret = TAKE_PTR(leases);
	*ret_n = n;
	return 0;
}

/* ---- events ------------------------------------------------------------------------- */

struct event_arg {
	const char *vm, *type, *reason, *message;
};

static int event_txn(struct store *s, void *arg, struct bg_err *err)
{
	struct event_arg *a = arg;
	_cleanup_stmt_ sqlite3_stmt *ins = NULL, *prune = NULL;
	struct binder b;
	int r;

	r = prepare(s, "INSERT INTO events (time, vm, type, reason, message) VALUES (?,?,?,?,?)",
		    &ins, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = ins };
	bind_int(&b, now_real_ms());
	bind_text(&b, a->vm);
	bind_text(&b, a->type);
	bind_text(&b, a->reason);
	bind_text(&b, a->message);
	r = bind_check(s, &b, err);
	if (r >= 0)
		r = step_done(s, ins, "insert event", err);
	if (r < 0)
		return r;
	/* Keep the newest events_max rows; ids only grow, so the oldest go first. */
	r = prepare(s,
		    "DELETE FROM events WHERE id <= "
		    "(SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
		    &prune, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = prune };
	bind_int(&b, s->events_max);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	return step_done(s, prune, "prune events", err);
}

int store_event_add(struct store *s, const char *vm, const char *type, const char *reason,
		    const char *message, struct bg_err *err)
{
	_cleanup_free_ char *cut = NULL;
	struct event_arg a = { vm, type, reason, message ? message : "" };

	if (!type || !*type || !reason || !*reason)
		return bg_errorf(err, EINVAL, "event without a type or reason");
	if (strlen(a.message) > STORE_EVENT_MESSAGE_MAX) {
		size_t n = STORE_EVENT_MESSAGE_MAX;

		/* Don't split a UTF-8 sequence: back up over continuation bytes. */
		while (n > 0 && ((unsigned char)a.message[n] & 0xc0) == 0x80)
			n--;
		cut = xasprintf("%.*s...", (int)n, a.message);
		a.message = cut;
	}
	return write_txn(s, "add event", event_txn, &a, err);
}

int store_event_list(struct store *s, const char *vm, size_t limit, struct vm_event **ret,
		     size_t *ret_n, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct vm_event *ev = NULL;
	struct binder b;
	size_t n = 0;
	int r;

	r = prepare(s,
		    "SELECT time, vm, type, reason, message FROM ("
		    "  SELECT id, time, vm, type, reason, message FROM events"
		    "  WHERE ?1 IS NULL OR vm = ?1 ORDER BY id DESC LIMIT ?2"
		    ") ORDER BY id ASC",
		    &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_text(&b, vm);
	bind_int(&b, limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	while ((r = step_row(s, st, "list events", err)) > 0) {
		struct vm_event *e;

		ev = xreallocarray(ev, n + 1, sizeof(*ev));
		e = &ev[n++];
		e->time = sqlite3_column_int64(st, 0);
		e->vm = col_strdup(st, 1);
		e->type = col_strdup(st, 2);
		e->reason = col_strdup(st, 3);
		e->message = col_strdup(st, 4);
	}
	if (r < 0) {
		vm_event_array_free(ev, n);
		return bg_err_wrap(err, "list events");
	}
	*ret = ev;
	*ret_n = n;
	return 0;
}

void vm_event_array_free(struct vm_event *ev, size_t n)
{
	for (size_t i = 0; ev && i < n; i++) {
		free(ev[i].vm);
		free(ev[i].type);
		free(ev[i].reason);
		free(ev[i].message);
	}
	free(ev);
}

/* ---- daemon ------------------------------------------------------------------------- */

static int daemon_put_txn(struct store *s, void *arg, struct bg_err *err)
{
	const struct daemon_info *d = arg;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct binder b;
	int r;

	r = prepare(s,
		    "INSERT OR REPLACE INTO daemon (id, pid, version, spec_dir, bridge, subnet, "
		    "disk_mode, started_at, heartbeat, last_resync, resync_ms, spec_errors, nat) "
		    "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		    &st, err);
	if (r < 0)
		return r;
	b = (struct binder){ .st = st };
	bind_int(&b, d->pid);
	bind_text(&b, d->version);
	bind_text(&b, d->spec_dir);
	bind_text(&b, d->bridge);
	bind_text(&b, d->subnet);
	bind_text(&b, d->disk_mode);
	bind_int(&b, d->started_at);
	bind_int(&b, d->heartbeat);
	bind_int(&b, d->last_resync);
	bind_int(&b, d->resync_ms);
	bind_text(&b, d->spec_errors);
	bind_int(&b, d->nat ? 1 : 0);
	r = bind_check(s, &b, err);
	if (r < 0)
		return r;
	return step_done(s, st, "write daemon row", err);
}

int store_daemon_put(struct store *s, const struct daemon_info *info, struct bg_err *err)
{
	if (!info)
		return bg_errorf(err, EINVAL, "no daemon info");
	return write_txn(s, "write daemon row", daemon_put_txn, (void *)info, err);
}

int store_daemon_get(struct store *s, struct daemon_info *ret, struct bg_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	r = prepare(s,
		    "SELECT pid, version, spec_dir, bridge, subnet, disk_mode, started_at, "
		    "heartbeat, last_resync, resync_ms, spec_errors, nat FROM daemon WHERE id = 1",
		    &st, err);
	if (r < 0)
		return r;
	r = step_row(s, st, "read daemon row", err);
	if (r < 0)
		return r;
	if (r == 0)
		return bg_errorf(err, ENOENT, "no daemon has run with '%s'", s->path);
	*ret = (struct daemon_info){
		.pid = sqlite3_column_int(st, 0),
		.version = col_strdup(st, 1),
		.spec_dir = col_strdup(st, 2),
		.bridge = col_strdup(st, 3),
		.subnet = col_strdup(st, 4),
		.disk_mode = col_strdup(st, 5),
		.started_at = sqlite3_column_int64(st, 6),
		.heartbeat = sqlite3_column_int64(st, 7),
		.last_resync = sqlite3_column_int64(st, 8),
		.resync_ms = sqlite3_column_int64(st, 9),
		.spec_errors = col_strdup(st, 10),
		.nat = sqlite3_column_int(st, 11) != 0,
	};
	return 0;
}

void daemon_info_release(struct daemon_info *info)
{
	if (!info)
		return;
	free(info->version);
	free(info->spec_dir);
	free(info->bridge);
	free(info->subnet);
	free(info->disk_mode);
	free(info->spec_errors);
	memset(info, 0, sizeof(*info));
}

/* ---- read snapshots ------------------------------------------------------------------------ */

int store_read_begin(struct store *s, struct bg_err *err)
{
	/* DEFERRED: the first SELECT takes a WAL snapshot, held until store_read_end(). */
	return exec_sql(s, "BEGIN DEFERRED", err);
}

void store_read_end(struct store *s)
{
	/* Nothing was written: a failed COMMIT only ends the snapshot early. */
	if (!sqlite3_get_autocommit(s->db))
		(void)exec_sql(s, "COMMIT", NULL);
}
