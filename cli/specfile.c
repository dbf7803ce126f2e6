/*
 * specfile.c - in-place edits of the spec directory by VM name; see specfile.h.
 *
 * specfile_apply() works in two passes: prepare every file (read it once,
 * find the documents by name in what was read, splice, parse the result
 * and check it), then commit each (compare the file's identity with what
 * was read, then rename or unlink). Nothing is written when a prepare fails.
 */
#include "cli/specfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "spec/spec.h"

#define CHANGED_HINT "changed while banger was editing it; run the command again"

int specfile_lock(const char *spec_dir, int timeout_ms, struct bg_err *err)
{
	_cleanup_free_ char *path = fs_path_join(spec_dir, SPECFILE_LOCK_NAME);
	int64_t deadline = now_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int fd, e;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
	if (fd < 0 && (errno == EACCES || errno == EROFS))
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return bg_error(err, errno, "lock '%s'", path);
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		e = errno;
		if (e == EINTR)
			continue;
		if (e != EWOULDBLOCK || now_mono_ms() >= deadline) {
			(void)close(fd);
			if (e == EWOULDBLOCK)
				return bg_errorf(err, EWOULDBLOCK,
						 "another banger has been editing '%s' for %d s "
						 "(it holds '%s'); try again",
						 spec_dir, timeout_ms / 1000, path);
			return bg_error(err, e, "lock '%s'", path);
		}
		sleep_ms(50);
	}
}

static bool line_is(const char *p, size_t len, const char *marker)
{
	size_t m = strlen(marker);

	if (len < m || memcmp(p, marker, m) != 0)
		return false;
	for (size_t i = m; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

static bool is_blank(char c)
{
	return c == '\n' || c == ' ' || c == '\t' || c == '\r';
}

/* The start of the last line of [p, end) after trailing blanks, and that line's end. */
static const char *last_line(const char *p, const char *end, const char **ret_end)
{
	const char *ls;

	while (end > p && is_blank(end[-1]))
		end--;
	ls = end;
	while (ls > p && ls[-1] != '\n')
		ls--;
	*ret_end = end;
	return ls;
}

/* The text starts with a "---" document marker (alone or followed by content). */
static bool starts_with_marker(const char *p, size_t len)
{
	return len >= 3 && memcmp(p, "---", 3) == 0 && (len == 3 || is_blank(p[3]));
}

/*
 * The text ends with a "..." document-end line: its length from the "..." to
 * the end (with what follows it in the range, e.g. nothing or a newline), else 0.
 */
static size_t doc_end_len(const char *p, size_t len)
{
	const char *le;
	const char *ls = last_line(p, p + len, &le);

	return line_is(ls, (size_t)(le - ls), "...") ? (size_t)(p + len - ls) : 0;
}

char *specfile_doc_body(const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	const char *nl;
	struct buf b;

	/* Drop a leading "---" line; "--- {inline}" keeps its content. */
	nl = memchr(p, '\n', (size_t)(end - p));
	if (starts_with_marker(p, len)) {
		if (line_is(p, nl ? (size_t)(nl - p) : (size_t)(end - p), "---"))
			p = nl ? nl + 1 : end;
		else
			p += 4;
	}
	/* Trim trailing blank lines and a "..." document-end line. */
	{
		const char *le;
		const char *ls = last_line(p, end, &le);

		end = le;
		if (line_is(ls, (size_t)(le - ls), "...")) {
			end = ls;
			while (end > p && is_blank(end[-1]))
				end--;
		}
	}
	buf_init(&b);
	buf_add(&b, p, (size_t)(end - p));
	buf_addch(&b, '\n');
	return buf_detach(&b, NULL);
}

/* true when the text holds nothing but blank lines, comments and document markers. */
static bool only_markers(const char *s)
{
	while (*s) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		size_t i = 0;

		while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
			i++;
		if (i < len && s[i] != '#' && !line_is(s + i, len - i, "---") &&
		    !line_is(s + i, len - i, "..."))
			return false;
		s = nl ? nl + 1 : s + len;
	}
	return true;
}

/* ---- one edit's new document -------------------------------------------------------- */

/*
 * The new document must be exactly one VM, the one named, and the spec the
 * caller validated (its hash) when it says which. Its hash into ret_hash.
 */
static int check_text(const struct specfile_edit *e, char ret_hash[SPEC_HASH_LEN + 1],
		      struct bg_err *err)
{
	struct spec_set set;
	int r = 0;

	spec_set_init(&set);
	/* Parsed as if in its file: a cloudInit.userDataFile resolves from there. */
	(void)spec_parse_buffer(&set, e->file ? e->file : "<new document>", e->text,
				strlen(e->text));
	if (set.n_diags > 0) {
		_cleanup_free_ char *d = spec_diag_format(&set.diags[0]);

		r = bg_errorf(err, EINVAL, "vm '%s': the new document does not parse: %s", e->name,
			      d);
	} else if (set.n_specs != 1 || strcmp(set.specs[0]->name, e->name) != 0) {
		r = bg_errorf(err, EINVAL, "vm '%s': the new document is not one VM of that name",
			      e->name);
	} else {
		spec_hash(set.specs[0], ret_hash);
		if (e->hash && strcmp(e->hash, ret_hash) != 0)
			r = bg_errorf(err, EAGAIN,
				      "vm '%s': its input no longer holds the spec that was "
				      "validated: it %s",
				      e->name, CHANGED_HINT);
	}
	spec_set_release(&set);
	return r;
}

/* ---- one file -------------------------------------------------------------------------- */

struct target {
	char *path;	   /* what is written: the real path, or the new file */
	const char *shown; /* the file as the caller named it, for messages */
	bool create;
	const struct specfile_edit **edits;
	const char **hashes; /* the new documents' hashes, per edit (NULL: removed) */
	size_t n_edits;
	struct stat st; /* the file as it was read */
	char *out;	/* the new content */
	size_t out_len;
	bool remove; /* nothing but comments left: remove the file */
};

static void target_release(struct target *t)
{
	free(t->path);
	free(t->edits);
	free(t->hashes);
	free(t->out);
	memset(t, 0, sizeof(*t));
}

struct range {
	size_t start, end;
	size_t edit; /* index into target->edits */
};

static int range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* The one spec named 'name' in the set: 0 and its index, -ENOENT, or -ENOTUNIQ. */
static int find_spec(const struct spec_set *set, const char *name, size_t *ret_i)
{
	size_t n = 0;

	for (size_t i = 0; i < set->n_specs; i++)
		if (strcmp(set->specs[i]->name, name) == 0) {
			*ret_i = i;
			n++;
		}
	return n == 0 ? -ENOENT : n > 1 ? -ENOTUNIQ : 0;
}

static const char *edit_hash(const struct target *t, const char *name, bool *ret_edited)
{
	for (size_t i = 0; i < t->n_edits; i++)
		if (strcmp(t->edits[i]->name, name) == 0) {
			*ret_edited = true;
			return t->hashes[i];
		}
	*ret_edited = false;
	return NULL;
}

/* The new content must hold every VM of the old one but the removed, the replaced as new. */
static int verify(const struct target *t, const struct spec_set *before, struct bg_err *err)
{
	struct spec_set after;
	size_t expect = 0;
	int r = 0;

	spec_set_init(&after);
	(void)spec_parse_buffer(&after, t->shown, t->out, t->out_len);
	if (after.n_diags > 0) {
		_cleanup_free_ char *d = spec_diag_format(&after.diags[0]);

		r = bg_errorf(err, EIO, "editing '%s' would leave it broken (%s); not writing it",
			      t->shown, d);
		goto out;
	}
	for (size_t i = 0; i < before->n_specs && r == 0; i++) {
		const struct vm_spec *old = before->specs[i];
		char h_old[SPEC_HASH_LEN + 1], h_now[SPEC_HASH_LEN + 1];
		bool edited;
		const char *want = edit_hash(t, old->name, &edited);
		size_t k;

		if (edited && !want) {
			if (find_spec(&after, old->name, &k) != -ENOENT)
				r = bg_errorf(err, EIO, "editing '%s' would not remove vm '%s'",
					      t->shown, old->name);
			continue;
		}
		expect++;
		if (!edited) {
			spec_hash(old, h_old);
			want = h_old;
		}
		if (find_spec(&after, old->name, &k) < 0) {
			r = bg_errorf(err, EIO, "editing '%s' would lose vm '%s'", t->shown,
				      old->name);
			break;
		}
		spec_hash(after.specs[k], h_now);
		if (strcmp(h_now, want) != 0)
			r = bg_errorf(err, EIO, "editing '%s' would change vm '%s' wrongly",
				      t->shown, old->name);
	}
	if (r == 0 && after.n_specs != expect)
		r = bg_errorf(err, EIO, "editing '%s' would leave %zu VMs in it, not %zu", t->shown,
			      after.n_specs, expect);
out:
	spec_set_release(&after);
	return r;
}

/* Read the file once, find the documents by name in that content, splice, verify. */
static int prepare_file(struct target *t, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *data = NULL;
	_cleanup_free_ struct range *ranges = NULL;
	struct spec_set before;
	struct buf out;
	size_t len = 0, pos = 0;
	int r;

	fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return bg_errorf(err, EAGAIN, "'%s' is gone: it %s", t->shown,
					 CHANGED_HINT);
		return bg_error(err, errno, "open '%s'", t->shown);
	}
	if (fstat(fd, &t->st) < 0)
		return bg_error(err, errno, "stat '%s'", t->shown);
	if (!S_ISREG(t->st.st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", t->shown);
	r = fs_read_fd(fd, SPEC_FILE_MAX, t->shown, &data, &len, err);
	if (r < 0)
		return r;
	if ((off_t)len != t->st.st_size)
		return bg_errorf(err, EAGAIN, "'%s' %s", t->shown, CHANGED_HINT);

	spec_set_init(&before);
	(void)spec_parse_buffer(&before, t->shown, data, len);
	if (before.n_diags > 0) {
		_cleanup_free_ char *d = spec_diag_format(&before.diags[0]);

		r = bg_errorf(err, EAGAIN, "'%s' has errors now (%s): it %s", t->shown, d,
			      CHANGED_HINT);
		goto out;
	}
	ranges = xcalloc(t->n_edits, sizeof(*ranges));
	for (size_t i = 0; i < t->n_edits; i++) {
		const char *name = t->edits[i]->name;
		size_t k = 0;

		r = find_spec(&before, name, &k);
		if (r == -ENOENT) {
			r = bg_errorf(err, EAGAIN, "vm '%s' is no longer defined in '%s': it %s",
				      name, t->shown, CHANGED_HINT);
			goto out;
		}
		if (r < 0) {
			r = bg_errorf(err, EINVAL, "vm '%s' is defined more than once in '%s'",
				      name, t->shown);
			goto out;
		}
		ranges[i] = (struct range){ before.specs[k]->source_start,
					    before.specs[k]->source_end, i };
	}
	qsort(ranges, t->n_edits, sizeof(*ranges), range_cmp);
	for (size_t i = 0; i < t->n_edits; i++) {
		if (ranges[i].start > ranges[i].end || ranges[i].end > len ||
		    (i > 0 && ranges[i].start < ranges[i - 1].end)) {
			r = bg_errorf(err, EINVAL, "overlapping edits of '%s'", t->shown);
			goto out;
		}
	}

	buf_init(&out);
	for (size_t i = 0; i < t->n_edits; i++) {
		const struct range *g = &ranges[i];
		const char *text = t->edits[g->edit]->text;
		const char *doc = data + g->start;
		size_t doc_len = g->end - g->start;

		buf_add(&out, data + pos, g->start - pos);
		if (text) {
			/* Keep what separates this document from its neighbours. */
			if (starts_with_marker(doc, doc_len))
				buf_adds(&out, "---\n");
			buf_adds(&out, text);
			buf_add(&out, doc + doc_len - doc_end_len(doc, doc_len),
				doc_end_len(doc, doc_len));
		}
		pos = g->end;
	}
	buf_add(&out, data + pos, len - pos);
	t->out = buf_detach(&out, &t->out_len);
	t->remove = only_markers(t->out);
	r = t->remove ? 0 : verify(t, &before, err);
out:
	spec_set_release(&before);
	return r;
}

static int prepare_create(struct target *t, struct bg_err *err)
{
	if (fs_exists(t->path))
		return bg_errorf(err, EEXIST,
				 "'%s' exists but does not define vm '%s'; not "
				 "overwriting it",
				 t->shown, t->edits[0]->name);
	t->out = xstrdup(t->edits[0]->text);
	t->out_len = strlen(t->out);
	return 0;
}

/* The file is still the one that was read: same inode, size, mtime and ctime. */
static int check_unchanged(const char *path, void *userdata, struct bg_err *err)
{
	const struct target *t = userdata;
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return bg_errorf(err, EAGAIN, "'%s' was removed: it %s", t->shown,
					 CHANGED_HINT);
		return bg_error(err, errno, "stat '%s'", t->shown);
	}
	if (st.st_dev != t->st.st_dev || st.st_ino != t->st.st_ino || st.st_size != t->st.st_size ||
	    st.st_mtim.tv_sec != t->st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != t->st.st_mtim.tv_nsec ||
	    st.st_ctim.tv_sec != t->st.st_ctim.tv_sec ||
	    st.st_ctim.tv_nsec != t->st.st_ctim.tv_nsec)
		return bg_errorf(err, EAGAIN, "'%s' %s", t->shown, CHANGED_HINT);
	return 0;
}

static int commit(struct target *t, struct bg_err *err)
{
	int r;

	if (t->create) {
		r = fs_write_new(t->path, t->out, t->out_len, 0644, err);
		if (r == -EEXIST)
			return bg_errorf(err, EAGAIN,
					 "'%s' appeared while banger was editing the "
					 "spec dir; not overwriting it; run the "
					 "command again",
					 t->shown);
		return r;
	}
	if (t->remove) {
		r = check_unchanged(t->path, t, err);
		if (r < 0)
			return r;
		if (unlink(t->path) < 0 && errno != ENOENT)
			return bg_error(err, errno, "remove '%s'", t->shown);
		return fs_fsync_parent(t->path, err);
	}
	return fs_write_atomic_checked(t->path, t->out, t->out_len, t->st.st_mode & 07777,
				       t->st.st_uid, t->st.st_gid, check_unchanged, t, err);
}

/* ---- the edits ---------------------------------------------------------------------- */

/* Group edits into targets (one per real file); checks each edit on its own. */
static int plan_targets(const struct specfile_edit *edits, size_t n,
			char (*hashes)[SPEC_HASH_LEN + 1], struct target **ret, size_t *ret_n,
			struct bg_err *err)
{
	struct target *v = xcalloc(n + 1, sizeof(*v));
	size_t nt = 0;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		const struct specfile_edit *e = &edits[i];
		_cleanup_free_ char *real = NULL;
		struct target *t = NULL;

		if (!e->name || !e->file || (e->create && !e->text)) {
			r = bg_errorf(err, EINVAL, "specfile: bad edit %zu", i);
			break;
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(edits[k].name, e->name) == 0) {
				r = bg_errorf(err, EINVAL, "vm '%s' is edited twice", e->name);
				break;
			}
		if (r < 0)
			break;
		if (e->text) {
			r = check_text(e, hashes[i], err);
			if (r < 0)
				break;
		}
		if (e->create) {
			real = xstrdup(e->file);
		} else {
			real = realpath(e->file, NULL);
			if (!real) {
				r = errno == ENOENT ? bg_errorf(err, EAGAIN, "'%s' is gone: it %s",
								e->file, CHANGED_HINT)
						    : bg_error(err, errno, "resolve '%s'", e->file);
				break;
			}
			for (size_t k = 0; k < nt && !t; k++)
				if (!v[k].create && strcmp(v[k].path, real) == 0)
					t = &v[k];
		}
		if (!t) {
			t = &v[nt++];
			t->path = TAKE_PTR(real);
			t->shown = e->file;
			t->create = e->create;
		}
		t->edits = xreallocarray(t->edits, t->n_edits + 1, sizeof(*t->edits));
		t->hashes = xreallocarray(t->hashes, t->n_edits + 1, sizeof(*t->hashes));
		t->edits[t->n_edits] = e;
		t->hashes[t->n_edits] = e->text ? hashes[i] : NULL;
		t->n_edits++;
	}
	if (r < 0) {
		for (size_t k = 0; k < nt; k++)
			target_release(&v[k]);
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = nt;
	return 0;
}

int specfile_apply(int lock_fd, const struct specfile_edit *edits, size_t n, struct bg_err *err)
{
	char(*hashes)[SPEC_HASH_LEN + 1] = NULL;
	struct target *t = NULL;
	size_t nt = 0;
	int r;

	if (lock_fd < 0)
		return bg_errorf(err, EBADF, "specfile: the spec dir is not locked");
	hashes = xcalloc(n + 1, sizeof(*hashes));
	r = plan_targets(edits, n, hashes, &t, &nt, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < nt && r == 0; i++)
		r = t[i].create ? prepare_create(&t[i], err) : prepare_file(&t[i], err);
	for (size_t i = 0; i < nt && r == 0; i++)
		r = commit(&t[i], err);
	for (size_t i = 0; i < nt; i++)
		target_release(&t[i]);
	free(t);
out:
	free(hashes);
	return r;
}
