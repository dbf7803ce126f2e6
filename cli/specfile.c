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
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/str.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "spec/spec.h"

#define CHANGED_HINT "changed while banger was editing it; run the command again"

/* ---- the spec dir, as one fd ---------------------------------------------------------- */

/* 'file' relative to 'dir' when it is lexically inside it (as the loader names files). */
static const char *rel_in(const char *dir, const char *file)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (strncmp(file, dir, n) != 0 || file[n] != '/')
		return NULL;
	file += n;
	while (*file == '/')
		file++;
	return *file ? file : NULL;
}

/* Where an fd points now, from /proc (for finding a file's real directory). Owned or NULL. */
static char *fd_path(int fd)
{
	char proc[64], buf[PATH_MAX + 1];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, buf, sizeof(buf) - 1);
	if (n <= 0 || (size_t)n >= sizeof(buf) - 1)
		return NULL;
	buf[n] = '\0';
	return xstrdup(buf);
}

int specfile_dir_open(const char *spec_dir, int lock_fd, struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	struct stat lst, st;

	fd = open(spec_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return bg_error(err, errno, "open the spec directory '%s'", spec_dir);
	if (lock_fd < 0)
		return TAKE_FD(fd);
	/* The directory opened is the one whose lock is held. */
	if (fstat(lock_fd, &lst) < 0)
		return bg_error(err, errno, "stat the lock of '%s'", spec_dir);
	if (fstatat(fd, SPECFILE_LOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    st.st_dev != lst.st_dev || st.st_ino != lst.st_ino)
		return bg_errorf(err, EAGAIN, "the spec directory '%s' %s", spec_dir, CHANGED_HINT);
	return TAKE_FD(fd);
}

int specfile_parse_at(int dir_fd, const char *spec_dir, struct spec_set *set, const char *file,
		      const char *text, size_t len)
{
	const char *rel = rel_in(spec_dir, file);
	_cleanup_free_ char *rel_dir = NULL;
	const char *slash;

	if (!rel)
		return spec_parse_buffer(set, file, text, len);
	slash = strrchr(rel, '/');
	rel_dir = slash ? xstrndup(rel, (size_t)(slash - rel)) : xstrdup("");
	return spec_parse_buffer_at(set, file, text, len, spec_dir, dir_fd, rel_dir);
}

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
static int check_text(int dir_fd, const char *spec_dir, const struct specfile_edit *e,
		      char ret_hash[SPEC_HASH_LEN + 1], struct bg_err *err)
{
	struct spec_set set;
	int r = 0;

	spec_set_init(&set);
	/* Parsed as if in its file: a cloudInit.userDataFile resolves from there, beneath the
	 * spec dir's fd. */
	(void)specfile_parse_at(dir_fd, spec_dir, &set, e->file, e->text, strlen(e->text));
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
	int dfd;    /* the directory the file is in, inside the spec dir (O_DIRECTORY) */
	char *base; /* the file's name in dfd (never a symlink: the real file) */
	dev_t dev;  /* the file found when planning (not for create) */
	ino_t ino;
	const char *shown; /* the file as the caller named it, for messages */
	int root_fd;	   /* the spec dir (borrowed): userDataFile is read beneath it */
	const char *spec_dir;
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
	if (t->dfd >= 0)
		(void)close(t->dfd);
	free(t->base);
	free(t->edits);
	free(t->hashes);
	free(t->out);
	memset(t, 0, sizeof(*t));
	t->dfd = -1;
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
	(void)specfile_parse_at(t->root_fd, t->spec_dir, &after, t->shown, t->out, t->out_len);
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

	/* The file found when planning, in its directory's fd: no path is resolved again. */
	fd = openat(t->dfd, t->base, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT || errno == ELOOP)
			return bg_errorf(err, EAGAIN, "'%s' is gone: it %s", t->shown,
					 CHANGED_HINT);
		return bg_error(err, errno, "open '%s'", t->shown);
	}
	if (fstat(fd, &t->st) < 0)
		return bg_error(err, errno, "stat '%s'", t->shown);
	if (!S_ISREG(t->st.st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", t->shown);
	if (t->st.st_dev != t->dev || t->st.st_ino != t->ino)
		return bg_errorf(err, EAGAIN, "'%s' %s", t->shown, CHANGED_HINT);
	r = fs_read_fd(fd, SPEC_FILE_MAX, t->shown, &data, &len, err);
	if (r < 0)
		return r;
	if ((off_t)len != t->st.st_size)
		return bg_errorf(err, EAGAIN, "'%s' %s", t->shown, CHANGED_HINT);

	spec_set_init(&before);
	(void)specfile_parse_at(t->root_fd, t->spec_dir, &before, t->shown, data, len);
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
	struct stat st;

	if (fstatat(t->dfd, t->base, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
		return bg_errorf(err, EEXIST,
				 "'%s' exists but does not define vm '%s'; not "
				 "overwriting it",
				 t->shown, t->edits[0]->name);
	t->out = xstrdup(t->edits[0]->text);
	t->out_len = strlen(t->out);
	return 0;
}

/* The file is still the one that was read: same inode, size, mtime and ctime. */
static int check_unchanged(const struct target *t, struct bg_err *err)
{
	struct stat st;

	if (fstatat(t->dfd, t->base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
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

/*
 * Write the new content to a temp file beside the target, in the target's directory fd
 * ("<name>.tmp.XXXXXX": not a spec file name, so the loader skips it), fsynced. Its
 * name into ret_tmp (a buffer of NAME_MAX + 1).
 */
static int write_temp_at(const struct target *t, mode_t mode, uid_t uid, gid_t gid, char *ret_tmp,
			 struct bg_err *err)
{
	_cleanup_close_ int fd = -1;
	const char *p;
	size_t done = 0;

	for (int tries = 0; fd < 0; tries++) {
		uint64_t rnd = 0;

		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
			rnd = (uint64_t)now_mono_ms() ^ ((uint64_t)getpid() << 32) ^
			      (uint64_t)tries;
		if (snprintf(ret_tmp, NAME_MAX + 1, "%.200s.tmp.%06llx", t->base,
			     (unsigned long long)(rnd & 0xffffff)) > NAME_MAX)
			return bg_errorf(err, ENAMETOOLONG, "'%s': name too long", t->shown);
		fd = openat(t->dfd, ret_tmp,
			    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
		if (fd < 0 && (errno != EEXIST || tries > 100))
			return bg_error(err, errno, "create a temp file beside '%s'", t->shown);
	}
	if (fchmod(fd, mode) < 0 ||
	    ((uid != geteuid() || gid != getegid()) && fchown(fd, uid, gid) < 0))
		goto fail;
	for (p = t->out; done < t->out_len;) {
		ssize_t n = write(fd, p + done, t->out_len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		done += (size_t)n;
	}
	/* Never retry a failed fsync: the kernel may have dropped the pages. */
	if (fsync(fd) < 0 || close(TAKE_FD(fd)) < 0)
		goto fail;
	return 0;
fail : {
	int e = errno ? errno : EIO;

	(void)unlinkat(t->dfd, ret_tmp, 0);
	return bg_error(err, e, "write a temp file beside '%s'", t->shown);
}
}

static int fsync_dir(const struct target *t, struct bg_err *err)
{
	if (fsync(t->dfd) < 0)
		return bg_error(err, errno, "fsync the directory of '%s'", t->shown);
	return 0;
}

/* Every step acts relative to t->dfd on t->base: the same directory that was checked. */
static int commit(struct target *t, struct bg_err *err)
{
	char tmp[NAME_MAX + 1];
	int r, e;

	if (t->create) {
		r = write_temp_at(t, 0644, geteuid(), getegid(), tmp, err);
		if (r < 0)
			return r;
		/* Both put the complete file in place, or fail when it exists. */
		e = renameat2(t->dfd, tmp, t->dfd, t->base, RENAME_NOREPLACE) == 0 ? 0 : errno;
		if (e == EINVAL || e == ENOSYS || e == EOPNOTSUPP) {
			e = linkat(t->dfd, tmp, t->dfd, t->base, 0) == 0 ? 0 : errno;
			(void)unlinkat(t->dfd, tmp, 0);
		} else if (e) {
			(void)unlinkat(t->dfd, tmp, 0);
		}
		if (e == EEXIST)
			return bg_errorf(err, EAGAIN,
					 "'%s' appeared while banger was editing the "
					 "spec dir; not overwriting it; run the "
					 "command again",
					 t->shown);
		if (e)
			return bg_error(err, e, "create '%s'", t->shown);
		return fsync_dir(t, err);
	}
	if (t->remove) {
		r = check_unchanged(t, err);
		if (r < 0)
			return r;
		if (unlinkat(t->dfd, t->base, 0) < 0 && errno != ENOENT)
			return bg_error(err, errno, "remove '%s'", t->shown);
		return fsync_dir(t, err);
	}
	r = write_temp_at(t, t->st.st_mode & 07777, t->st.st_uid, t->st.st_gid, tmp, err);
	if (r < 0)
		return r;
	r = check_unchanged(t, err);
	if (r == 0 && renameat(t->dfd, tmp, t->dfd, t->base) < 0)
		r = bg_error(err, errno, "replace '%s'", t->shown);
	if (r < 0) {
		(void)unlinkat(t->dfd, tmp, 0);
		return r;
	}
	return fsync_dir(t, err);
}

/*
 * Find the real file behind 'rel' (an edit's file inside the spec dir): resolved beneath
 * dir_fd, symlinks followed only inside the tree; then its real directory is opened again
 * beneath dir_fd with no symlinks at all, and the name in it must be that same inode
 * (fstatat identity). From then on the edit acts on (dfd, base) only.
 */
static int locate(int dir_fd, const char *rel, const char *shown, int *ret_dfd, char **ret_base,
		  struct stat *ret_st, struct bg_err *err)
{
	_cleanup_close_ int fd = -1, dfd = -1;
	_cleanup_free_ char *root = NULL, *real = NULL, *base = NULL, *dir = NULL;
	const char *inner, *slash;
	struct stat st, now;

	fd = fs_open_beneath(dir_fd, rel, O_PATH, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return bg_errorf(err, EAGAIN, "'%s' is gone: it %s", shown, CHANGED_HINT);
		if (errno == EXDEV)
			return bg_errorf(err, EXDEV,
					 "'%s' leads outside the spec directory; not editing it",
					 shown);
		return bg_error(err, errno, "resolve '%s'", shown);
	}
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "stat '%s'", shown);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", shown);
	root = fd_path(dir_fd);
	real = fd_path(fd);
	inner = root && real ? rel_in(root, real) : NULL;
	if (!inner)
		return bg_errorf(err, EAGAIN, "'%s' %s", shown, CHANGED_HINT);
	slash = strrchr(inner, '/');
	dir = slash ? xstrndup(inner, (size_t)(slash - inner)) : xstrdup("");
	base = xstrdup(slash ? slash + 1 : inner);
	dfd = fs_open_beneath(dir_fd, dir, O_RDONLY | O_DIRECTORY, RESOLVE_NO_SYMLINKS);
	if (dfd < 0)
		return bg_errorf(err, EAGAIN, "'%s' %s", shown, CHANGED_HINT);
	if (fstatat(dfd, base, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_dev != st.st_dev ||
	    now.st_ino != st.st_ino)
		return bg_errorf(err, EAGAIN, "'%s' %s", shown, CHANGED_HINT);
	*ret_dfd = TAKE_FD(dfd);
	*ret_base = TAKE_PTR(base);
	*ret_st = st;
	return 0;
}

/* ---- the edits ---------------------------------------------------------------------- */

/* Group edits into targets (one per real file); checks each edit on its own. */
static int plan_targets(int dir_fd, const char *spec_dir, const struct specfile_edit *edits,
			size_t n, char (*hashes)[SPEC_HASH_LEN + 1], struct target **ret,
			size_t *ret_n, struct bg_err *err)
{
	struct target *v = xcalloc(n + 1, sizeof(*v));
	size_t nt = 0;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		const struct specfile_edit *e = &edits[i];
		_cleanup_close_ int dfd = -1;
		_cleanup_free_ char *base = NULL;
		struct target *t = NULL;
		struct stat st = { 0 };
		const char *rel;

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
		rel = rel_in(spec_dir, e->file);
		if (!rel) {
			r = bg_errorf(err, EINVAL, "'%s' is not inside the spec directory '%s'",
				      e->file, spec_dir);
			break;
		}
		if (e->text) {
			r = check_text(dir_fd, spec_dir, e, hashes[i], err);
			if (r < 0)
				break;
		}
		if (e->create) {
			/* A new file goes straight into the spec dir, never into a subdirectory. */
			if (strchr(rel, '/')) {
				r = bg_errorf(err, EINVAL, "'%s': new files go in '%s' itself",
					      e->file, spec_dir);
				break;
			}
			dfd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
			if (dfd < 0) {
				r = bg_error(err, errno, "dup");
				break;
			}
			base = xstrdup(rel);
		} else {
			r = locate(dir_fd, rel, e->file, &dfd, &base, &st, err);
			if (r < 0)
				break;
			for (size_t k = 0; k < nt && !t; k++)
				if (!v[k].create && v[k].dev == st.st_dev && v[k].ino == st.st_ino)
					t = &v[k];
		}
		if (!t) {
			t = &v[nt++];
			t->dfd = TAKE_FD(dfd);
			t->base = TAKE_PTR(base);
			t->dev = st.st_dev;
			t->ino = st.st_ino;
			t->shown = e->file;
			t->root_fd = dir_fd;
			t->spec_dir = spec_dir;
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

int specfile_apply(const char *spec_dir, int lock_fd, const struct specfile_edit *edits, size_t n,
		   struct bg_err *err)
{
	char(*hashes)[SPEC_HASH_LEN + 1] = NULL;
	_cleanup_close_ int dir_fd = -1;
	struct target *t = NULL;
	size_t nt = 0;
	int r;

	if (lock_fd < 0)
		return bg_errorf(err, EBADF, "specfile: the spec dir is not locked");
	dir_fd = specfile_dir_open(spec_dir, lock_fd, err);
	if (dir_fd < 0)
		return dir_fd;
	hashes = xcalloc(n + 1, sizeof(*hashes));
	r = plan_targets(dir_fd, spec_dir, edits, n, hashes, &t, &nt, err);
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
