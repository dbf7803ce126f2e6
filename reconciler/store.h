/*
 * store.h - durable state in SQLite (<state>/banger.db); store.c is the only
 * file that includes sqlite3.h.
 *
 * Tables: vms (one struct vm_record per row), ip_leases, events (bounded),
 * daemon (a single row: heartbeat, pid, spec-load errors...). The daemon
 * opens read-write; the CLI opens read-only, never blocks the daemon (WAL
 * readers) and works when the daemon is not running.
 *
 * Every write is one BEGIN IMMEDIATE transaction retried on SQLITE_BUSY; a
 * function either commits all it says or nothing.
 */
#ifndef BANGER_RECONCILER_STORE_H
#define BANGER_RECONCILER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "reconciler/vm.h"

struct store;

enum store_mode {
	STORE_READ_WRITE, /* create and migrate the schema as needed */
	STORE_READ_ONLY,  /* -ENOENT when the db does not exist yet */
	STORE_MODE_MAX
};

/*
 * Open (and in read-write mode create/migrate) the database at db_path.
 * Sets WAL, synchronous=FULL, foreign_keys=ON and a busy timeout, and runs
 * PRAGMA quick_check (read-write mode). A db written by a newer schema
 * version is refused with -EPROTO.
 */
int store_open(const char *db_path, enum store_mode mode, struct store **ret, struct bg_err *err);
void store_free(struct store *s);
static inline void store_freep(struct store **s)
{
	if (*s)
		store_free(*s);
}

/* Schema version this build writes (PRAGMA user_version). */
int store_schema_version(void);

/* ---- vms -------------------------------------------------------------------- */

/* All records, sorted by name. Owned array (vm_record_array_free). */
int store_vm_list(struct store *s, struct vm_record **ret, size_t *ret_n, struct bg_err *err);

/* One record by name or id into *ret (owned; vm_record_release). -ENOENT if none. */
int store_vm_get_by_name(struct store *s, const char *name, struct vm_record *ret,
			 struct bg_err *err);
int store_vm_get(struct store *s, const char *id, struct vm_record *ret, struct bg_err *err);

/*
 * Insert a new record. When rec->id is empty a fresh unique random id is
 * assigned; when rec->cid is 0 the lowest free CID >= 3 is assigned. Both are
 * written back into *rec. created_at/updated_at are set. -EEXIST when the
 * name (or id) is taken.
 */
int store_vm_insert(struct store *s, struct vm_record *rec, struct bg_err *err);

/* Overwrite every column of the row with rec->id (updated_at is set). -ENOENT if none. */
int store_vm_update(struct store *s, const struct vm_record *rec, struct bg_err *err);

/*
 * The intent log: record that 'action' is at 'step' (both may be NULL to
 * clear) before the step touches the kernel. Cheap, durable on return.
 */
int store_vm_set_step(struct store *s, const char *id, const char *action, const char *step,
		      struct bg_err *err);

/* Delete the row and its leases. Deleting a missing id succeeds. */
int store_vm_delete(struct store *s, const char *id, struct bg_err *err);

/* ---- IP address management ------------------------------------------------------ */

/*
 * Lease an address for vm_id in 'subnet' (CIDR of the bridge, e.g.
 * "172.30.0.1/24": the gateway is the given address). With static_ip, that
 * address is taken (it must be in the subnet and not the network, gateway or
 * broadcast address; held by another VM -> -EADDRINUSE naming that VM).
 * Without, the VM's existing lease is returned, or the lowest free address.
 * Idempotent. A lease is durable before the address is returned, so an
 * address is never handed out twice, even across crashes. -ENOSPC when full.
 */
int store_ip_lease(struct store *s, const char *subnet, const char *vm_id, const char *static_ip,
		   char ret_ip[16], struct bg_err *err);

/* Release every lease of vm_id. Releasing nothing succeeds. */
int store_ip_release(struct store *s, const char *vm_id, struct bg_err *err);

struct ip_lease {
	char ip[16];
	char vm_id[VM_ID_LEN + 1];
	bool is_static;
};

/* All leases, sorted by address. Owned array (free()). */
int store_ip_list(struct store *s, struct ip_lease **ret, size_t *ret_n, struct bg_err *err);

/*
 * Derive the guest MAC from its IPv4 address: locally administered unicast
 * "02:bb:" followed by the four address bytes, e.g. 172.30.0.10 ->
 * 02:bb:ac:1e:00:0a. Returns 0, or -EINVAL for a bad address.
 */
int ipam_mac_from_ip(const char *ip, char ret_mac[18]);

/* Parse "a.b.c.d/p" into the gateway address, network, prefix. -EINVAL on error. */
int ipam_parse_subnet(const char *cidr, uint32_t *ret_gateway, uint32_t *ret_network,
		      unsigned *ret_prefix);

/* ---- events ------------------------------------------------------------------ */

struct vm_event {
	int64_t time; /* epoch ms */
	char *vm;     /* VM name, or NULL for daemon-wide events */
	char *type;   /* "Normal" | "Warning" */
	char *reason; /* CamelCase, e.g. "Created", "ProcessDied", "SpecError" */
	char *message;
};

#define STORE_EVENTS_MAX 2000 /* oldest events are pruned past this */

int store_event_add(struct store *s, const char *vm, const char *type, const char *reason,
		    const char *message, struct bg_err *err);

/*
 * The newest 'limit' events (0: all that are kept) of VM 'vm' (every event,
 * daemon-wide ones included, when vm is NULL), oldest first. Owned.
 */
int store_event_list(struct store *s, const char *vm, size_t limit, struct vm_event **ret,
		     size_t *ret_n, struct bg_err *err);
void vm_event_array_free(struct vm_event *ev, size_t n);

/* ---- daemon ------------------------------------------------------------------- */

struct daemon_info {
	int pid;
	char *version;
	char *spec_dir;
	char *bridge;
	char *subnet;
	char *disk_mode;     /* how root disks are made on this host */
	int64_t started_at;  /* epoch ms */
	int64_t heartbeat;   /* epoch ms of the last completed pass */
	int64_t last_resync; /* epoch ms of the last full resync */
	int64_t resync_ms;   /* configured resync period */
	char *spec_errors;   /* newline-separated "file:line:col: msg", or NULL */
	bool nat;	     /* --nat: the egress of VMs whose spec does not say */
};

/* Replace the daemon row. */
int store_daemon_put(struct store *s, const struct daemon_info *info, struct bg_err *err);
/* Read the daemon row. -ENOENT when no daemon has ever run on this state dir. */
int store_daemon_get(struct store *s, struct daemon_info *ret, struct bg_err *err);
void daemon_info_release(struct daemon_info *info);

/*
 * One consistent read of several queries (banger status: the VM list and the
 * daemon row): every read between store_read_begin() and store_read_end()
 * sees the same snapshot, and the listing is one read transaction instead of
 * one per query. store_read_end() after a failed begin does nothing.
 */
int store_read_begin(struct store *s, struct bg_err *err);
void store_read_end(struct store *s);

/*
 * Group commit: every write between store_group_begin() and
 * store_group_commit() is one transaction, made durable by one sync at the
 * commit, instead of one transaction (and one sync) each. A write that fails
 * inside the group is undone alone (a savepoint) and fails as it would
 * outside one, unless SQLite rolled back the whole transaction (a full disk,
 * an I/O error): then every later write of the group and its commit fail
 * too, and nothing of it is kept. Nothing is durable, or visible to other connections, before
 * the commit: a caller that needs a write on disk before it touches the
 * system (the intent log) commits first. The group holds the database's
 * write lock until it ends. store_group_abort() rolls the group back.
 */
int store_group_begin(struct store *s, struct bg_err *err);
int store_group_commit(struct store *s, struct bg_err *err);
void store_group_abort(struct store *s);
/*
 * Commit what the open group holds and go on in a new one (a write that must
 * be on disk before the caller acts). On failure the group stays open but
 * broken: its later writes and its commit fail, as after a rollback.
 */
int store_group_checkpoint(struct store *s, struct bg_err *err);
/* Groups committed so far: a write made when this was k is on disk once it is > k. */
unsigned store_group_seq(const struct store *s);

/* Write transactions that changed something, committed through this connection
 * so far (tests, benchmarks). */
unsigned store_commit_count(const struct store *s);

#endif
