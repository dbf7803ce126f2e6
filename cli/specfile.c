/*
 * specfile.c - in-place edits of spec files; see specfile.h.
 */
#include "cli/specfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "spec/spec.h"

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

char *specfile_doc_body(const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	const char *nl;
	struct buf b;

	/* Drop a leading "---" line; "--- {inline}" keeps its content. */
	nl = memchr(p, '\n', (size_t)(end - p));
	if (len >= 3 && memcmp(p, "---", 3) == 0 &&
	    (len == 3 || p[3] == ' ' || p[3] == '\n' || p[3] == '\t' || p[3] == '\r')) {
		if (line_is(p, nl ? (size_t)(nl - p) : (size_t)(end - p), "---"))
			p = nl ? nl + 1 : end;
		else
			p += 4;
	}
	/* Trim trailing blank lines and a "..." document-end line. */
	while (end > p && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	{
		const char *ls = end;

		while (ls > p && ls[-1] != '\n')
			ls--;
		if (line_is(ls, (size_t)(end - ls), "...")) {
			end = ls;
			while (end > p && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\r'))
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

static int cmp_start_desc(const void *x, const void *y)
{
	const struct specfile_edit *a = *(const struct specfile_edit *const *)x;
	const struct specfile_edit *b = *(const struct specfile_edit *const *)y;

	return a->start < b->start ? 1 : a->start > b->start ? -1 : 0;
}

static int apply_file(struct specfile_edit **edits, size_t n, struct bg_err *err)
{
	const char *file = edits[0]->file;
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	struct buf out;
	struct stat st;
	mode_t mode = 0644;
	int r;

	if (edits[0]->create)
		return fs_write_atomic(file, edits[0]->text, strlen(edits[0]->text), 0644, err);
	r = fs_read_file(file, SPEC_FILE_MAX, &data, &len, err);
	if (r < 0)
		return r;
	if (stat(file, &st) == 0)
		mode = st.st_mode & 07777;
	qsort(edits, n, sizeof(*edits), cmp_start_desc);
	buf_init(&out);
	buf_add(&out, data, len);
	for (size_t i = 0; i < n; i++) {
		const struct specfile_edit *e = edits[i];
		struct buf next;

		if (e->start > e->end || e->end > out.len) {
			buf_release(&out);
			return bg_errorf(err, ERANGE, "'%s' changed while it was being edited",
					 file);
		}
		buf_init(&next);
		buf_add(&next, out.data, e->start);
		if (e->text) {
			if (e->end - e->start >= 3 && memcmp(out.data + e->start, "---", 3) == 0)
				buf_adds(&next, "---\n");
			buf_adds(&next, e->text);
		}
		buf_add(&next, out.data + e->end, out.len - e->end);
		buf_release(&out);
		out = next;
	}
	if (only_markers(out.data)) {
		buf_release(&out);
		if (unlink(file) < 0 && errno != ENOENT)
			return bg_error(err, errno, "remove '%s'", file);
		return fs_fsync_parent(file, err);
	}
	r = fs_write_atomic(file, out.data, out.len, mode, err);
	buf_release(&out);
	return r;
}

int specfile_apply(struct specfile_edit *edits, size_t n, struct bg_err *err)
{
	bool *done = xcalloc(n + 1, sizeof(*done));
	struct specfile_edit **group = xcalloc(n + 1, sizeof(*group));
	int r = 0;

	for (size_t i = 0; i < n && r >= 0; i++) {
		size_t g = 0;

		if (done[i])
			continue;
		for (size_t k = i; k < n; k++)
			if (!done[k] && strcmp(edits[k].file, edits[i].file) == 0) {
				group[g++] = &edits[k];
				done[k] = true;
			}
		r = apply_file(group, g, err);
	}
	free(group);
	free(done);
	return r;
}
