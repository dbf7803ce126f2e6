/*
 * spec.c - reading spec files: libyaml's event API -> struct vm_spec, with
 * every error as FILE:LINE:COLUMN, and loading files, directories and stdin
 * into a struct spec_set. The only includer of yaml.h.
 *
 * The event loop enforces what libyaml 0.2.5 does not: a nesting limit
 * (SPEC_DEPTH_MAX; libyaml has none before 0.2.6), no anchors, aliases or
 * tags (so no alias bombs), and a cap on errors per file. Values go to the
 * schema-driven struct spec_builder (validate.c), shared with json.c.
 *
 * libyaml marks count characters, not bytes, so document ranges are
 * converted to byte offsets by walking the UTF-8 input.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "spec/internal.h"

#define STDIN_NAME "<stdin>"

/* ---- spec_set ------------------------------------------------------------- */

void spec_set_init(struct spec_set *set)
{
	memset(set, 0, sizeof(*set));
}

static void def_release(struct spec_def *d)
{
	free(d->name);
	free(d->file);
}

void spec_set_release(struct spec_set *set)
{
	for (size_t i = 0; i < set->n_specs; i++)
		vm_spec_free(set->specs[i]);
	free(set->specs);
	for (size_t i = 0; i < set->n_diags; i++) {
		free(set->diags[i].file);
		free(set->diags[i].msg);
	}
	free(set->diags);
	for (size_t i = 0; i < set->n_failed_files; i++)
		free(set->failed_files[i]);
	free(set->failed_files);
	for (size_t i = 0; i < set->n_failed_names; i++)
		free(set->failed_names[i]);
	free(set->failed_names);
	for (size_t i = 0; i < set->n_failed_defs; i++)
		def_release(&set->failed_defs[i]);
	free(set->failed_defs);
	memset(set, 0, sizeof(*set));
}

static void set_add_diag(struct spec_set *set, const char *file, struct spec_loc loc,
			 const char *msg)
{
	struct spec_diag *d;

	set->diags = xreallocarray(set->diags, set->n_diags + 1, sizeof(*set->diags));
	d = &set->diags[set->n_diags++];
	d->file = xstrdup(file);
	d->line = loc.line;
	d->col = loc.line ? loc.col : 0;
	d->msg = xstrdup(msg);
}

static void set_add_diagf(struct spec_set *set, const char *file, struct spec_loc loc,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void set_add_diagf(struct spec_set *set, const char *file, struct spec_loc loc,
			  const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	set_add_diag(set, file, loc, msg);
}

static void strv_push(char ***v, size_t *n, const char *s)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

static void set_fail_file(struct spec_set *set, const char *file)
{
	if (!spec_set_file_failed(set, file))
		strv_push(&set->failed_files, &set->n_failed_files, file);
}

static void set_fail_name(struct spec_set *set, const char *name, const char *file,
			  struct spec_loc loc)
{
	struct spec_def *d;

	strv_push(&set->failed_names, &set->n_failed_names, name);
	set->failed_defs =
		xreallocarray(set->failed_defs, set->n_failed_defs + 1, sizeof(*set->failed_defs));
	d = &set->failed_defs[set->n_failed_defs++];
	d->name = xstrdup(name);
	d->file = xstrdup(file);
	d->line = loc.line;
	d->col = loc.col;
}

bool spec_set_name_failed(const struct spec_set *set, const char *name)
{
	for (size_t i = 0; i < set->n_failed_names; i++)
		if (strcmp(set->failed_names[i], name) == 0)
			return true;
	return false;
}

bool spec_set_file_failed(const struct spec_set *set, const char *file)
{
	for (size_t i = 0; i < set->n_failed_files; i++)
		if (strcmp(set->failed_files[i], file) == 0)
			return true;
	return false;
}

void spec_set_merge(struct spec_set *dst, const struct spec_set *src)
{
	if (src->n_specs) {
		dst->specs =
			xreallocarray(dst->specs, dst->n_specs + src->n_specs, sizeof(*dst->specs));
		for (size_t i = 0; i < src->n_specs; i++)
			dst->specs[dst->n_specs++] = vm_spec_dup(src->specs[i]);
	}
	for (size_t i = 0; i < src->n_diags; i++) {
		const struct spec_diag *d = &src->diags[i];

		set_add_diag(dst, d->file, (struct spec_loc){ d->line, d->col }, d->msg);
	}
	for (size_t i = 0; i < src->n_failed_names; i++)
		strv_push(&dst->failed_names, &dst->n_failed_names, src->failed_names[i]);
	for (size_t i = 0; i < src->n_failed_defs; i++) {
		const struct spec_def *d = &src->failed_defs[i];
		struct spec_def *n;

		dst->failed_defs = xreallocarray(dst->failed_defs, dst->n_failed_defs + 1,
						 sizeof(*dst->failed_defs));
		n = &dst->failed_defs[dst->n_failed_defs++];
		n->name = xstrdup(d->name);
		n->file = xstrdup(d->file);
		n->line = d->line;
		n->col = d->col;
	}
	for (size_t i = 0; i < src->n_failed_files; i++)
		set_fail_file(dst, src->failed_files[i]);
}

static int spec_name_cmp(const void *key, const void *elem)
{
	return strcmp(key, (*(struct vm_spec *const *)elem)->name);
}

const struct vm_spec *spec_set_find(const struct spec_set *set, const char *name)
{
	struct vm_spec *const *hit;

	/* Sorted by spec_set_finish(): a lookup per VM per pass stays O(log n). */
	hit = set->n_specs
		      ? bsearch(name, set->specs, set->n_specs, sizeof(*set->specs), spec_name_cmp)
		      : NULL;
	return hit ? *hit : NULL;
}

char *spec_diag_format(const struct spec_diag *d)
{
	_cleanup_free_ char *line = NULL;

	/* File names (and values quoted in messages) are anyone's bytes: shown escaped. */
	if (d->line == 0)
		line = xasprintf("%s: %s", d->file, d->msg);
	else
		line = xasprintf("%s:%u:%u: %s", d->file, d->line, d->col, d->msg);
	return str_needs_escape(line) ? str_escape(line) : TAKE_PTR(line);
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sort_unique(char **v, size_t *n)
{
	size_t out = 0;

	if (*n == 0)
		return;
	qsort(v, *n, sizeof(*v), strp_cmp);
	for (size_t i = 0; i < *n; i++) {
		if (out > 0 && strcmp(v[out - 1], v[i]) == 0) {
			free(v[i]);
			continue;
		}
		v[out++] = v[i];
	}
	*n = out;
}

struct spec_ref {
	struct vm_spec *spec;
	size_t index; /* load order */
};

static int spec_ref_cmp(const void *a, const void *b)
{
	const struct spec_ref *x = a, *y = b;
	int c = strcmp(x->spec->name, y->spec->name);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static struct spec_loc name_loc(const struct vm_spec *s)
{
	return (struct spec_loc){ s->name_line, s->name_col };
}

static char *where(const char *file, unsigned line, unsigned col)
{
	if (!line)
		return xstrdup(file ? file : "?");
	return xasprintf("%s:%u:%u", file ? file : "?", line, col);
}

/* The first failed definition of name, or NULL. failed_names must be sorted. */
static const struct spec_def *failed_def(const struct spec_set *set, const char *name)
{
	if (set->n_failed_names == 0 ||
	    !bsearch(&name, set->failed_names, set->n_failed_names, sizeof(char *), strp_cmp))
		return NULL;
	for (size_t i = 0; i < set->n_failed_defs; i++)
		if (strcmp(set->failed_defs[i].name, name) == 0)
			return &set->failed_defs[i];
	return NULL;
}

int spec_set_finish(struct spec_set *set)
{
	_cleanup_free_ struct spec_ref *refs = NULL;
	size_t n = set->n_specs, kept = 0, n_dups = 0;
	char **dups = NULL;
	int errors = 0;

	sort_unique(set->failed_names, &set->n_failed_names);
	refs = xcalloc(n ? n : 1, sizeof(*refs));
	for (size_t i = 0; i < n; i++)
		refs[i] = (struct spec_ref){ set->specs[i], i };
	qsort(refs, n, sizeof(*refs), spec_ref_cmp);
	for (size_t i = 0; i < n;) {
		const char *name = refs[i].spec->name;
		const struct spec_def *bad = failed_def(set, name);
		size_t j = i + 1;

		while (j < n && strcmp(refs[j].spec->name, name) == 0)
			j++;
		if (!bad && j == i + 1) {
			set->specs[kept++] = refs[i].spec;
			i = j;
			continue;
		}
		/*
		 * Defined twice, or also in a file that failed to load: which one
		 * is meant is unknown, so neither is used and the VM keeps its last
		 * good spec.
		 */
		for (size_t k = bad ? i : i + 1; k < j; k++) {
			const struct vm_spec *s = refs[k].spec;
			_cleanup_free_ char *other =
				bad ? where(bad->file, bad->line, bad->col)
				    : where(refs[i].spec->source_file, refs[i].spec->name_line,
					    refs[i].spec->name_col);

			set_add_diagf(set, s->source_file ? s->source_file : "?", name_loc(s),
				      "vm '%s' is also defined at %s%s", name, other,
				      bad ? " (in a file with errors)" : "");
			errors++;
		}
		if (!bad)
			strv_push(&dups, &n_dups, name);
		for (size_t k = i; k < j; k++)
			vm_spec_free(refs[k].spec);
		i = j;
	}
	set->n_specs = kept;
	/* Added only now: failed_def() searches failed_names, which must stay sorted. */
	for (size_t i = 0; i < n_dups; i++) {
		strv_push(&set->failed_names, &set->n_failed_names, dups[i]);
		free(dups[i]);
	}
	free(dups);
	sort_unique(set->failed_names, &set->n_failed_names);
	return errors;
}

/* ---- the YAML event front end ----------------------------------------------- */

struct ydiag {
	struct spec_loc loc;	  /* where it is (in file, when set) */
	struct spec_loc sort_loc; /* where it sorts: loc, or the field naming 'file' */
	size_t seq;
	char *file; /* another file than the stream's (a userDataFile), or NULL */
	char *msg;
};

struct ydoc {
	struct vm_spec *spec; /* NULL when the document had errors */
	char *name;	      /* its name when readable */
	struct spec_loc name_loc;
};

struct yp {
	yaml_parser_t parser;
	const char *file;
	const char *data; /* what libyaml reads: the file after any UTF-8 BOM */
	size_t len;
	size_t bom;		    /* bytes of BOM skipped before 'data' */
	size_t cur_index, cur_byte; /* char index -> byte offset cursor */
	unsigned depth;
	bool stop;     /* no more events: syntax error, too deep, too many errors */
	bool too_many; /* stopped because of SPEC_ERRORS_MAX */
	struct ydiag *diags;
	size_t n_diags;
	struct ydoc *docs;
	size_t n_docs;
	struct spec_builder *b; /* the current document's */
	const char *base_dir;	/* the spec directory: userDataFile stays inside it */
	const char *rel_dir;	/* the file's directory relative to base_dir ("" when the same) */
	int base_fd;		/* base_dir opened once by the loader, or -1: open base_dir */
};

/* One event, copied out of libyaml so it can be freed at once. */
struct yev {
	yaml_event_type_t type;
	struct spec_loc loc;
	size_t start_index, end_index;
	char *value; /* scalars; owned */
	size_t len;
	bool plain;
	bool literal; /* a literal block scalar ('|') */
	bool alias;
	enum spec_kind kind;
};

static void yev_release(struct yev *ev)
{
	free(ev->value);
	ev->value = NULL;
}

static struct spec_loc mark_loc(yaml_mark_t m)
{
	return (struct spec_loc){ (unsigned)m.line + 1, (unsigned)m.column + 1 };
}

static void yp_report(void *ctx, const char *file, struct spec_loc loc, const char *msg)
{
	struct yp *p = ctx;
	struct ydiag *d;

	if (p->n_diags >= SPEC_ERRORS_MAX) {
		p->stop = true;
		p->too_many = true;
		return;
	}
	p->diags = xreallocarray(p->diags, p->n_diags + 1, sizeof(*p->diags));
	d = &p->diags[p->n_diags];
	d->loc = loc;
	d->sort_loc = loc;
	/* In another file: sort it where the field that names the file is. */
	if (file && p->b)
		d->sort_loc = p->b->val_loc[SPEC_F_CLOUDINIT_USER_DATA_FILE];
	d->file = xstrdup_null(file);
	d->seq = p->n_diags++;
	d->msg = xstrdup(msg);
}

static void yp_error(struct yp *p, struct spec_loc loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void yp_error(struct yp *p, struct spec_loc loc, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	yp_report(p, NULL, loc, msg);
}

/* Byte offset of the character 'index' (libyaml marks count characters). */
static size_t byte_offset(struct yp *p, size_t index)
{
	if (index < p->cur_index) {
		p->cur_index = 0;
		p->cur_byte = 0;
	}
	while (p->cur_index < index && p->cur_byte < p->len) {
		p->cur_byte++;
		while (p->cur_byte < p->len && ((unsigned char)p->data[p->cur_byte] & 0xc0) == 0x80)
			p->cur_byte++;
		p->cur_index++;
	}
	return p->cur_byte;
}

/* Line and column (in characters) of a byte offset, for reader errors. */
static struct spec_loc offset_loc(const struct yp *p, size_t offset)
{
	struct spec_loc loc = { 1, 1 };

	for (size_t i = 0; i < offset && i < p->len; i++) {
		unsigned char c = (unsigned char)p->data[i];

		if (c == '\n' || (c == '\r' && (i + 1 >= p->len || p->data[i + 1] != '\n'))) {
			loc.line++;
			loc.col = 1;
		} else if ((c & 0xc0) != 0x80) {
			loc.col++;
		}
	}
	return loc;
}

static void syntax_error(struct yp *p)
{
	yaml_parser_t *y = &p->parser;
	const char *problem = y->problem ? y->problem : "unknown error";

	switch (y->error) {
	case YAML_READER_ERROR:
		if (y->problem_value != -1)
			yp_error(p, offset_loc(p, y->problem_offset), "%s (#x%02X)", problem,
				 (unsigned)y->problem_value);
		else
			yp_error(p, offset_loc(p, y->problem_offset), "%s", problem);
		break;
	case YAML_SCANNER_ERROR:
	case YAML_PARSER_ERROR:
		if (y->context)
			yp_error(p, mark_loc(y->problem_mark), "%s (%s at line %zu, column %zu)",
				 problem, y->context, y->context_mark.line + 1,
				 y->context_mark.column + 1);
		else
			yp_error(p, mark_loc(y->problem_mark), "%s", problem);
		break;
	default:
		yp_error(p, mark_loc(y->mark), "YAML error: %s", problem);
		break;
	}
}

static void check_node_props(struct yp *p, struct spec_loc loc, const yaml_char_t *anchor,
			     const yaml_char_t *tag)
{
	if (anchor)
		yp_error(p, loc, "anchors are not allowed (found '&%.64s')", (const char *)anchor);
	if (tag) {
		const char *t = (const char *)tag;
		bool core = strncmp(t, "tag:yaml.org,2002:", 18) == 0;

		yp_error(p, loc, "tags are not allowed (found '%s%.64s')", core ? "!!" : "",
			 core ? t + 18 : t);
	}
}

/* The next event; false when the stream has stopped (the event is then empty). */
static bool next(struct yp *p, struct yev *ev)
{
	yaml_event_t e;

	memset(ev, 0, sizeof(*ev));
	if (p->stop)
		return false;
	if (!yaml_parser_parse(&p->parser, &e)) {
		syntax_error(p);
		p->stop = true;
		return false;
	}
	ev->type = e.type;
	ev->loc = mark_loc(e.start_mark);
	ev->start_index = e.start_mark.index;
	ev->end_index = e.end_mark.index;
	switch (e.type) {
	case YAML_SCALAR_EVENT:
		check_node_props(p, ev->loc, e.data.scalar.anchor, e.data.scalar.tag);
		ev->len = e.data.scalar.length;
		ev->value = xmalloc(ev->len + 1);
		memcpy(ev->value, e.data.scalar.value, ev->len);
		ev->value[ev->len] = '\0';
		ev->plain = e.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		ev->literal = e.data.scalar.style == YAML_LITERAL_SCALAR_STYLE;
		ev->kind = ev->plain ? spec_resolve_plain(ev->value, ev->len) : SPEC_KIND_STRING;
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (e.type == YAML_SEQUENCE_START_EVENT) {
			check_node_props(p, ev->loc, e.data.sequence_start.anchor,
					 e.data.sequence_start.tag);
			ev->kind = SPEC_KIND_SEQUENCE;
		} else {
			check_node_props(p, ev->loc, e.data.mapping_start.anchor,
					 e.data.mapping_start.tag);
			ev->kind = SPEC_KIND_MAPPING;
		}
		if (++p->depth > SPEC_DEPTH_MAX) {
			/* libyaml 0.2.5 has no limit of its own: stop before it recurses. */
			yp_error(p, ev->loc, "nesting deeper than %d levels", SPEC_DEPTH_MAX);
			p->stop = true;
			yaml_event_delete(&e);
			return false;
		}
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		p->depth--;
		break;
	case YAML_ALIAS_EVENT:
		yp_error(p, ev->loc, "aliases are not allowed (found '*%.64s')",
			 (const char *)e.data.alias.anchor);
		ev->alias = true;
		break;
	default:
		break;
	}
	yaml_event_delete(&e);
	/* An error report may have hit the error cap. */
	if (p->stop) {
		yev_release(ev);
		return false;
	}
	return true;
}

static bool is_start(const struct yev *ev)
{
	return ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT;
}

/* Consume the rest of the node that 'ev' started (nothing for scalars and aliases). */
static bool skip(struct yp *p, const struct yev *ev)
{
	size_t level = 1;

	if (!is_start(ev))
		return true;
	while (level > 0) {
		struct yev e;

		if (!next(p, &e))
			return false;
		if (is_start(&e))
			level++;
		else if (e.type == YAML_MAPPING_END_EVENT || e.type == YAML_SEQUENCE_END_EVENT)
			level--;
		yev_release(&e);
	}
	return true;
}

static const char *ev_text(const struct yev *ev)
{
	return ev->value ? ev->value : "";
}

/*
 * A mapping key that is not a scalar: report it and skip it and its value.
 * Returns false when the stream stopped.
 */
static bool bad_key(struct yp *p, struct yev *key)
{
	struct yev val;
	bool ok;

	if (!key->alias)
		yp_error(p, key->loc, "mapping keys must be strings, got %s",
			 spec_kind_name(key->kind));
	if (!skip(p, key) || !next(p, &val))
		return false;
	ok = skip(p, &val);
	yev_release(&val);
	return ok;
}

static bool parse_value(struct yp *p, enum spec_field f, struct yev *ev);

/*
 * Where the content of a literal block scalar starts: the line after its
 * header ('|' and indicators), at the indentation of its first non-blank
 * line (auto-detected indentation; with an explicit indicator that is the
 * best the marks give). Line k of the value is then line body.line + k - 1.
 */
static struct spec_loc literal_body_loc(struct yp *p, const struct yev *ev)
{
	size_t i = byte_offset(p, ev->start_index);
	unsigned indent = 0;

	while (i < p->len && p->data[i] != '\n' && p->data[i] != '\r')
		i++;
	if (i < p->len && p->data[i] == '\r')
		i++;
	if (i < p->len && p->data[i] == '\n')
		i++;
	for (size_t j = i; j < p->len;) {
		unsigned n = 0;

		while (j < p->len && p->data[j] == ' ') {
			j++;
			n++;
		}
		if (j < p->len && p->data[j] != '\n' && p->data[j] != '\r') {
			indent = n;
			break;
		}
		while (j < p->len && (p->data[j] == '\n' || p->data[j] == '\r'))
			j++;
	}
	return (struct spec_loc){ ev->loc.line + 1, indent + 1 };
}

/* "dir/name" when 'file' has a directory part, else "name". Owned. */
static char *sibling_path(const char *file, const char *name)
{
	const char *slash = strrchr(file, '/');

	if (!slash)
		return xstrdup(name);
	return xasprintf("%.*s/%s", (int)(slash - file), file, name);
}

/* The userDataFile reader (spec_read_fn) for a stream read from the spec directory. */
static int yp_read_file(void *ctx, const char *name, char **ret_data, size_t *ret_len,
			char **ret_shown, struct bg_err *err)
{
	struct yp *p = ctx;
	_cleanup_free_ char *shown = sibling_path(p->file, name);
	_cleanup_free_ char *rel = NULL;
	_cleanup_close_ int dfd = -1, fd = -1;
	struct stat st;
	int r;

	dfd = p->base_fd >= 0 ? fcntl(p->base_fd, F_DUPFD_CLOEXEC, 3)
			      : open(p->base_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return bg_error(err, errno, "cannot open the spec directory '%s'", p->base_dir);
	rel = *p->rel_dir ? fs_path_join(p->rel_dir, name) : xstrdup(name);
	fd = fs_open_beneath(dfd, rel, O_RDONLY | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK, 0);
	if (fd < 0) {
		if (errno == EXDEV)
			return bg_errorf(err, EXDEV, "'%s' leads outside the spec directory '%s'",
					 shown, p->base_dir);
		if (errno == ELOOP)
			return bg_errorf(err, ELOOP,
					 "'%s' is a symbolic link (not followed for user-data)",
					 shown);
		return bg_error(err, errno, "cannot open '%s'", shown);
	}
	if (fstat(fd, &st) < 0)
		return bg_error(err, errno, "cannot stat '%s'", shown);
	if (!S_ISREG(st.st_mode))
		return bg_errorf(err, EINVAL, "'%s' is not a regular file", shown);
	if (st.st_size > SPEC_USERDATA_MAX)
		return bg_errorf(err, EFBIG, "'%s' is larger than %d bytes (256 KiB)", shown,
				 SPEC_USERDATA_MAX);
	r = fs_read_fd(fd, SPEC_USERDATA_MAX, shown, ret_data, ret_len, err);
	if (r == -EFBIG)
		return bg_errorf(err, EFBIG, "'%s' is larger than %d bytes (256 KiB)", shown,
				 SPEC_USERDATA_MAX);
	if (r < 0)
		return r;
	*ret_shown = TAKE_PTR(shown);
	return 0;
}

/* The entries of a known mapping, after its MAPPING-START. */
static bool parse_map(struct yp *p, enum spec_field parent)
{
	for (;;) {
		struct yev key, val;
		bool ok;
		int f;

		if (!next(p, &key))
			return false;
		if (key.type == YAML_MAPPING_END_EVENT)
			return true;
		if (key.type != YAML_SCALAR_EVENT) {
			ok = bad_key(p, &key);
			yev_release(&key);
			if (!ok)
				return false;
			continue;
		}
		f = spec_builder_key(p->b, parent, key.value, key.len, key.loc);
		yev_release(&key);
		if (!next(p, &val))
			return false;
		ok = f < 0 ? skip(p, &val) : parse_value(p, (enum spec_field)f, &val);
		yev_release(&val);
		if (!ok)
			return false;
	}
}

static bool parse_labels(struct yp *p)
{
	for (;;) {
		struct yev key, val;
		bool ok;

		if (!next(p, &key))
			return false;
		if (key.type == YAML_MAPPING_END_EVENT)
			return true;
		if (key.type != YAML_SCALAR_EVENT) {
			ok = bad_key(p, &key);
			yev_release(&key);
			if (!ok)
				return false;
			continue;
		}
		if (!next(p, &val)) {
			yev_release(&key);
			return false;
		}
		if (!val.alias)
			spec_builder_label(p->b, key.kind, key.value, key.len, key.loc, val.kind,
					   ev_text(&val), val.len, val.loc);
		ok = skip(p, &val);
		yev_release(&key);
		yev_release(&val);
		if (!ok)
			return false;
	}
}

static bool parse_map(struct yp *p, enum spec_field parent);

/*
 * The items of a sequence, after its SEQUENCE-START: strings
 * (ssh.authorizedKeys), or mappings of known fields (network.ports).
 */
static bool parse_seq(struct yp *p, enum spec_field f)
{
	bool maps = spec_field_type(f) == SPEC_FT_MAPSEQ;

	for (size_t i = 0;; i++) {
		struct yev item;
		bool ok;

		if (!next(p, &item))
			return false;
		if (item.type == YAML_SEQUENCE_END_EVENT)
			return true;
		if (item.alias) {
			ok = skip(p, &item);
		} else if (!maps) {
			spec_builder_item(p->b, f, i, item.kind, ev_text(&item), item.len,
					  item.loc);
			ok = skip(p, &item);
		} else if (spec_builder_elem_begin(p->b, f, i, item.kind, ev_text(&item), item.len,
						   item.loc)) {
			ok = parse_map(p, f);
			spec_builder_elem_end(p->b, f);
		} else {
			ok = skip(p, &item);
		}
		yev_release(&item);
		if (!ok)
			return false;
	}
}

static bool parse_value(struct yp *p, enum spec_field f, struct yev *ev)
{
	if (ev->alias) {
		/* Already reported; don't add a type error on top. */
		p->b->bad[f] = true;
		return true;
	}
	switch (spec_field_type(f)) {
	case SPEC_FT_MAP:
		if (!spec_builder_begin(p->b, f, ev->kind, ev_text(ev), ev->len, ev->loc))
			return skip(p, ev);
		return parse_map(p, f);
	case SPEC_FT_STRMAP:
		if (!spec_builder_begin(p->b, f, ev->kind, ev_text(ev), ev->len, ev->loc))
			return skip(p, ev);
		return parse_labels(p);
	case SPEC_FT_STRSEQ:
	case SPEC_FT_MAPSEQ:
		if (!spec_builder_begin(p->b, f, ev->kind, ev_text(ev), ev->len, ev->loc))
			return skip(p, ev);
		return parse_seq(p, f);
	default:
		p->b->body_loc = ev->literal ? literal_body_loc(p, ev) : (struct spec_loc){ 0, 0 };
		spec_builder_scalar(p->b, f, ev->kind, ev_text(ev), ev->len, ev->loc);
		p->b->body_loc = (struct spec_loc){ 0, 0 };
		return skip(p, ev);
	}
}

static void add_doc(struct yp *p, struct vm_spec *spec, const char *name, struct spec_loc loc)
{
	struct ydoc *d;

	p->docs = xreallocarray(p->docs, p->n_docs + 1, sizeof(*p->docs));
	d = &p->docs[p->n_docs++];
	d->spec = spec;
	d->name = xstrdup_null(name);
	d->name_loc = loc;
}

/* One document, after its DOCUMENT-START event. */
static void parse_document(struct yp *p, const struct yev *start)
{
	struct spec_builder b;
	struct yev root, end;
	struct vm_spec *spec;
	bool ok;

	if (!next(p, &root))
		return;
	if (root.type == YAML_SCALAR_EVENT && root.plain && root.kind == SPEC_KIND_NULL) {
		/* An empty document (only comments, or a bare '---'). */
		yev_release(&root);
		if (next(p, &end))
			yev_release(&end);
		return;
	}
	spec_builder_init(&b, root.loc, yp_report, p);
	b.read_file = yp_read_file;
	b.read_ctx = p;
	p->b = &b;
	if (root.type == YAML_MAPPING_START_EVENT) {
		ok = parse_map(p, SPEC_F_ROOT);
	} else {
		b.bad[SPEC_F_ROOT] = true;
		if (!root.alias)
			yp_error(p, root.loc,
				 "a VM document must be a mapping with apiVersion, kind, metadata "
				 "and spec, got %s",
				 spec_kind_name(root.kind));
		ok = skip(p, &root);
	}
	yev_release(&root);
	if (!ok || !next(p, &end)) {
		/* Stopped inside the document: keep its name, skip the missing-field checks. */
		add_doc(p, NULL, spec_builder_name(&b), b.val_loc[SPEC_F_NAME]);
		goto out;
	}
	spec = spec_builder_finish(&b);
	if (spec) {
		spec->source_file = xstrdup(p->file);
		spec->source_line = start->loc.line;
		spec->source_start = p->bom + byte_offset(p, start->start_index);
		spec->source_end = p->bom + byte_offset(p, end.end_index);
		spec->name_line = b.val_loc[SPEC_F_NAME].line;
		spec->name_col = b.val_loc[SPEC_F_NAME].col;
		add_doc(p, spec, spec->name, b.val_loc[SPEC_F_NAME]);
	} else {
		add_doc(p, NULL, spec_builder_name(&b), b.val_loc[SPEC_F_NAME]);
	}
	yev_release(&end);
out:
	p->b = NULL;
	spec_builder_release(&b);
}

static void parse_stream(struct yp *p)
{
	struct yev ev;

	if (!next(p, &ev)) /* STREAM-START */
		return;
	for (;;) {
		if (!next(p, &ev))
			return;
		if (ev.type == YAML_STREAM_END_EVENT)
			return;
		parse_document(p, &ev);
		yev_release(&ev);
	}
}

static int ydiag_cmp(const void *a, const void *b)
{
	const struct ydiag *x = a, *y = b;

	if (x->sort_loc.line != y->sort_loc.line)
		return x->sort_loc.line < y->sort_loc.line ? -1 : 1;
	if (x->sort_loc.col != y->sort_loc.col)
		return x->sort_loc.col < y->sort_loc.col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* spec_parse_buffer() with the spec directory and the file's directory inside it. */
static int parse_buffer_in(struct spec_set *set, const char *file, const char *data, size_t len,
			   const char *base_dir, int base_fd, const char *rel_dir)
{
	struct yp p = { .file = file,
			.data = data,
			.len = len,
			.base_dir = base_dir,
			.rel_dir = rel_dir,
			.base_fd = base_fd };
	int errors;

	if (len > SPEC_FILE_MAX) {
		set_add_diagf(set, file, (struct spec_loc){ 0, 0 },
			      "file is larger than %d bytes (1 MiB)", SPEC_FILE_MAX);
		set_fail_file(set, file);
		return 1;
	}
	/*
	 * libyaml skips a BOM only when it detects the encoding itself, and
	 * then its marks no longer match our bytes; with the encoding forced
	 * it takes the BOM for a character of column 0. So drop it here.
	 */
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
		p.bom = 3;
		p.data += 3;
		p.len -= 3;
	}
	if (!yaml_parser_initialize(&p.parser))
		abort();
	/* Strict UTF-8 (no BOM sniffing), so character marks map onto bytes of 'data'. */
	yaml_parser_set_encoding(&p.parser, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&p.parser, (const unsigned char *)p.data, p.len);
	parse_stream(&p);
	yaml_parser_delete(&p.parser);

	if (p.n_diags > 1)
		qsort(p.diags, p.n_diags, sizeof(*p.diags), ydiag_cmp);
	for (size_t i = 0; i < p.n_diags; i++) {
		set_add_diag(set, p.diags[i].file ? p.diags[i].file : file, p.diags[i].loc,
			     p.diags[i].msg);
		free(p.diags[i].file);
		free(p.diags[i].msg);
	}
	errors = (int)p.n_diags;
	if (p.too_many) {
		set_add_diagf(set, file, (struct spec_loc){ 0, 0 },
			      "too many errors (%d), giving up on this file", SPEC_ERRORS_MAX);
		errors++;
	}
	free(p.diags);

	for (size_t i = 0; i < p.n_docs; i++) {
		struct ydoc *d = &p.docs[i];

		if (errors == 0) {
			set->specs =
				xreallocarray(set->specs, set->n_specs + 1, sizeof(*set->specs));
			set->specs[set->n_specs++] = d->spec;
		} else {
			/* A file with any error contributes no specs; its VMs keep their last good one. */
			if (d->name)
				set_fail_name(set, d->name, file, d->name_loc);
			vm_spec_free(d->spec);
		}
		free(d->name);
	}
	free(p.docs);
	if (errors)
		set_fail_file(set, file);
	return errors;
}

/* The directory part of a path: "." when it has none. Owned. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

int spec_parse_buffer_at(struct spec_set *set, const char *file, const char *data, size_t len,
			 const char *base_dir, int base_fd, const char *rel_dir)
{
	return parse_buffer_in(set, file, data, len, base_dir, base_fd, rel_dir);
}

int spec_parse_buffer(struct spec_set *set, const char *file, const char *data, size_t len)
{
	_cleanup_free_ char *dir = dir_of(file);

	return parse_buffer_in(set, file, data, len, dir, -1, "");
}

/* ---- loading files and directories ------------------------------------------ */

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && strcmp(s + n - m, suffix) == 0;
}

bool spec_is_spec_filename(const char *name)
{
	size_t len;

	if (!name || !*name)
		return false;
	len = strlen(name);
	/* Hidden (.git, ..data, vim .x.swp, emacs .#x lock links) and emacs #x# autosaves. */
	if (name[0] == '.' || name[0] == '#')
		return false;
	/* Backups (x~), vim's write probe "4913", swap files. */
	if (name[len - 1] == '~' || strcmp(name, "4913") == 0 || has_suffix(name, ".swp") ||
	    has_suffix(name, ".swx"))
		return false;
	return has_suffix(name, ".yaml") || has_suffix(name, ".yml");
}

struct file_id {
	dev_t dev;
	ino_t ino;
};

struct loader {
	struct spec_set *set;
	const char *top; /* the directory being loaded (for names), or NULL for a single file */
	int root_fd;	 /* top, opened once: everything is resolved beneath it */
	struct file_id *seen; /* files read by this walk: each is read once */
	size_t n_seen;
	struct file_id *dirs; /* directories visited by this walk: each is walked once */
	size_t n_dirs;
	size_t n_entries;
	uint64_t bytes;
	bool stopped; /* a tree-wide bound was hit: the walk is over */
	int errors;
	const struct spec_walk_hook *hook; /* a cache reads and parses the files, or NULL */
};

static void load_error(struct loader *l, const char *path, int errnum, const char *what)
{
	set_add_diagf(l->set, path, (struct spec_loc){ 0, 0 }, "%s: %s", what, strerror(errnum));
	set_fail_file(l->set, path);
	l->errors++;
}

/* An error about 'path' (a file, a directory, or the whole tree) in our own words. */
static void load_errorf(struct loader *l, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void load_errorf(struct loader *l, const char *path, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	set_add_diag(l->set, path, (struct spec_loc){ 0, 0 }, msg);
	set_fail_file(l->set, path);
	l->errors++;
}

/* A tree-wide bound: the whole spec directory fails (its VMs keep their last good spec). */
static void load_stop(struct loader *l, const char *what, long long max)
{
	load_errorf(l, l->top,
		    "the spec directory has more than %lld %s (the limit); no VM is changed "
		    "until it has fewer",
		    max, what);
	l->stopped = true;
}

/* Read at most SPEC_FILE_MAX + 1 bytes from fd. Returns 0 or -errno. */
static int read_capped(int fd, char **ret, size_t *ret_len)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0, alloc = 0;

	for (;;) {
		ssize_t n;

		if (len == alloc) {
			if (alloc > SPEC_FILE_MAX)
				break;
			alloc = alloc ? 2 * alloc : 16384;
			if (alloc > SPEC_FILE_MAX + 1)
				alloc = SPEC_FILE_MAX + 1;
			data = xrealloc(data, alloc + 1);
		}
		n = read(fd, data + len, alloc - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (!data)
		data = xmalloc(1);
	data[len] = '\0';
	*ret = TAKE_PTR(data);
	*ret_len = len;
	return 0;
}

static bool id_in(const struct file_id *v, size_t n, const struct stat *st)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].dev == st->st_dev && v[i].ino == st->st_ino)
			return true;
	return false;
}

/* An explicit file (not found by a walk): 'banger validate -f x.yaml'. */
static void load_file(struct loader *l, const char *path)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *data = NULL;
	struct stat st;
	size_t len;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		load_error(l, path, errno, "cannot open");
		return;
	}
	if (fstat(fd, &st) < 0) {
		load_error(l, path, errno, "cannot stat");
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		load_error(l, path, EISDIR, "cannot read");
		return;
	}
	r = read_capped(fd, &data, &len);
	if (r < 0) {
		load_error(l, path, -r, "cannot read");
		return;
	}
	l->errors += spec_parse_buffer(l->set, path, data, len);
}

/*
 * openat2 beneath the spec directory: symlinks are followed only while they
 * stay inside it (EXDEV otherwise, also for an absolute link), /proc magic
 * links never.
 */
static int open_beneath(const struct loader *l, const char *rel, uint64_t flags)
{
	return fs_open_beneath(l->root_fd, rel, flags | ((flags & O_PATH) ? 0 : O_NOCTTY), 0);
}

/* A spec file found by the walk: 'rel' inside the tree, 'path' its name for diagnostics. */
static void load_walked(struct loader *l, const char *rel, const char *path, const char *rel_dir,
			const struct stat *pst)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *data = NULL;
	struct stat st;
	size_t len;
	int r;

	if (id_in(l->seen, l->n_seen, pst))
		return; /* a second link to a file already read */
	if (l->n_seen >= SPEC_DIR_FILES_MAX) {
		load_stop(l, "spec files", SPEC_DIR_FILES_MAX);
		return;
	}
	if (l->hook) {
		const void *hit = l->hook->lookup(l->hook->ctx, rel, pst, &len);

		if (hit) {
			l->seen = xreallocarray(l->seen, l->n_seen + 1, sizeof(*l->seen));
			l->seen[l->n_seen++] = (struct file_id){ pst->st_dev, pst->st_ino };
			l->bytes += len;
			if (l->bytes > SPEC_DIR_BYTES_MAX) {
				load_stop(l, "bytes of spec files", SPEC_DIR_BYTES_MAX);
				return;
			}
			l->errors += l->hook->use(l->hook->ctx, hit, l->set);
			return;
		}
	}
	/* Opened again to read it (O_NONBLOCK: never wait on a FIFO swapped in meanwhile). */
	fd = open_beneath(l, rel, O_RDONLY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return;
		load_error(l, path, errno, "cannot open");
		return;
	}
	if (fstat(fd, &st) < 0) {
		load_error(l, path, errno, "cannot stat");
		return;
	}
	if (!S_ISREG(st.st_mode) || st.st_dev != pst->st_dev || st.st_ino != pst->st_ino)
		return; /* replaced since it was looked at: the next pass reads it */
	l->seen = xreallocarray(l->seen, l->n_seen + 1, sizeof(*l->seen));
	l->seen[l->n_seen++] = (struct file_id){ st.st_dev, st.st_ino };
	r = read_capped(fd, &data, &len);
	if (r < 0) {
		load_error(l, path, -r, "cannot read");
		return;
	}
	l->bytes += len;
	if (l->bytes > SPEC_DIR_BYTES_MAX) {
		load_stop(l, "bytes of spec files", SPEC_DIR_BYTES_MAX);
		return;
	}
	if (l->hook) {
		l->errors += l->hook->parse(l->hook->ctx, rel, path, rel_dir, &st, data, len,
					    l->top, l->root_fd, l->set);
		return;
	}
	/*
	 * A cloud-config kept next to the specs (named by a userDataFile) is
	 * YAML too, but no spec: its first line says so.
	 */
	if (spec_userdata_kind(data, len) == SPEC_USERDATA_CLOUD_CONFIG)
		return;
	l->errors += parse_buffer_in(l->set, path, data, len, l->top, l->root_fd, rel_dir);
}

static void load_dir(struct loader *l, const char *rel, const char *path, unsigned depth);

/* An entry of the directory dir_fd (borrowed), named 'name' in it. */
static void load_entry(struct loader *l, int dir_fd, const char *rel_dir, const char *dir,
		       const char *name, unsigned depth)
{
	_cleanup_free_ char *rel = *rel_dir ? fs_path_join(rel_dir, name) : xstrdup(name);
	_cleanup_free_ char *path = fs_path_join(dir, name);
	_cleanup_close_ int fd = -1;
	struct stat st;

	/*
	 * A regular file that is no symlink is what it is, right here: one
	 * fstatat instead of opening it to look (most entries; a cached load
	 * does little else per file). Anything else goes the long way.
	 */
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
		if (spec_is_spec_filename(name))
			load_walked(l, rel, path, rel_dir, &st);
		return;
	}

	/* O_PATH: look at what the entry is without opening it (no FIFO, no device). */
	fd = open_beneath(l, rel, O_PATH);
	if (fd < 0) {
		if (errno == ENOENT)
			return; /* vanished, or a dangling symlink: nothing to read */
		if (errno == EXDEV)
			load_errorf(l, path,
				    "leads outside the spec directory (a symbolic link out of "
				    "it, or an absolute one); not followed");
		else if (errno == ELOOP)
			load_errorf(l, path, "too many symbolic links; not followed");
		else /* it may be a directory: its VMs are kept, not taken as gone */
			load_error(l, path, errno, "cannot open");
		return;
	}
	if (fstat(fd, &st) < 0) {
		load_error(l, path, errno, "cannot stat");
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		if (id_in(l->dirs, l->n_dirs, &st))
			return; /* walked already, through another name */
		if (depth + 1 > SPEC_DIR_DEPTH_MAX) {
			load_errorf(l, path,
				    "directory nested more than %d levels below the spec "
				    "directory (the limit); not read",
				    SPEC_DIR_DEPTH_MAX);
			return;
		}
		(void)close(TAKE_FD(fd));
		load_dir(l, rel, path, depth + 1);
		return;
	}
	if (S_ISREG(st.st_mode) && spec_is_spec_filename(name))
		load_walked(l, rel, path, rel_dir, &st);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk the directory 'rel' inside the tree ("" for the top), named 'path' in diagnostics. */
static void load_dir(struct loader *l, const char *rel, const char *path, unsigned depth)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;

	fd = open_beneath(l, rel, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		if (errno == ENOENT && depth > 0)
			return;
		load_error(l, path, errno, "cannot open directory");
		return;
	}
	if (fstat(fd, &st) < 0) {
		load_error(l, path, errno, "cannot stat directory");
		return;
	}
	if (id_in(l->dirs, l->n_dirs, &st))
		return;
	if (l->n_dirs >= SPEC_DIR_DIRS_MAX) {
		load_stop(l, "directories", SPEC_DIR_DIRS_MAX);
		return;
	}
	l->dirs = xreallocarray(l->dirs, l->n_dirs + 1, sizeof(*l->dirs));
	l->dirs[l->n_dirs++] = (struct file_id){ st.st_dev, st.st_ino };
	d = fdopendir(fd);
	if (!d) {
		load_error(l, path, errno, "cannot open directory");
		return;
	}
	TAKE_FD(fd);
	while ((errno = 0, de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (++l->n_entries > SPEC_DIR_ENTRIES_MAX) {
			load_stop(l, "directory entries", SPEC_DIR_ENTRIES_MAX);
			break;
		}
		if (de->d_name[0] == '.')
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	if (errno && !l->stopped)
		load_error(l, path, errno, "cannot read directory");
	/* Sorted, so diagnostics and duplicate reports come in a stable order. */
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		if (!l->stopped)
			load_entry(l, dirfd(d), rel, path, names[i], depth);
		free(names[i]);
	}
	free(names);
	closedir(d); /* kept open for the entries: at most SPEC_DIR_DEPTH_MAX + 1 at a time */
}

int spec_load_path_hooked(struct spec_set *set, const char *path, const struct spec_walk_hook *hook)
{
	struct loader l = { .set = set, .root_fd = -1, .hook = hook };
	struct stat st;

	if (strcmp(path, "-") == 0) {
		_cleanup_free_ char *data = NULL;
		size_t len;
		int r = read_capped(STDIN_FILENO, &data, &len);

		if (r < 0) {
			load_error(&l, STDIN_NAME, -r, "cannot read");
			return l.errors;
		}
		return spec_parse_buffer(set, STDIN_NAME, data, len);
	}
	if (stat(path, &st) < 0)
		load_error(&l, path, errno, "cannot read");
	else if (S_ISDIR(st.st_mode)) {
		/* The top itself may be a symlink (the operator's choice); nothing below it. */
		l.root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (l.root_fd < 0) {
			load_error(&l, path, errno, "cannot open directory");
		} else {
			l.top = path;
			if (hook)
				hook->begin(hook->ctx, l.root_fd);
			load_dir(&l, "", path, 0);
			(void)close(l.root_fd);
		}
	} else
		load_file(&l, path);
	free(l.seen);
	free(l.dirs);
	return l.errors;
}

int spec_load_path(struct spec_set *set, const char *path)
{
	return spec_load_path_hooked(set, path, NULL);
}

/* ---- user-data ------------------------------------------------------------------ */

#define USERDATA_DEPTH_MAX 64

static bool starts_with_ci(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && strncasecmp(s, prefix, n) == 0;
}

enum spec_userdata_kind spec_userdata_kind(const char *text, size_t len)
{
	static const char cc[] = "#cloud-config";
	size_t n = sizeof(cc) - 1;

	/* Exactly "#cloud-config": "#cloud-config-archive" and "-jsonp" are other kinds. */
	if (len >= n && memcmp(text, cc, n) == 0 &&
	    (len == n || text[n] == '\n' || text[n] == '\r' || text[n] == ' ' || text[n] == '\t'))
		return SPEC_USERDATA_CLOUD_CONFIG;
	if (len >= 2 && text[0] == '#' && text[1] == '!')
		return SPEC_USERDATA_SCRIPT;
	if (starts_with_ci(text, len, "content-type:") ||
	    starts_with_ci(text, len, "mime-version:"))
		return SPEC_USERDATA_MIME;
	return SPEC_USERDATA_UNKNOWN;
}

/* Line and column (in characters, 1-based) of a byte offset in text. */
static struct spec_loc text_loc(const char *text, size_t len, size_t offset)
{
	struct spec_loc loc = { 1, 1 };

	for (size_t i = 0; i < offset && i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n' || (c == '\r' && (i + 1 >= len || text[i + 1] != '\n'))) {
			loc.line++;
			loc.col = 1;
		} else if ((c & 0xc0) != 0x80 && c != '\r') {
			loc.col++;
		}
	}
	return loc;
}

static int ud_problem(struct spec_loc at, struct spec_loc *ret_loc, char **ret_msg, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static int ud_problem(struct spec_loc at, struct spec_loc *ret_loc, char **ret_msg, const char *fmt,
		      ...)
{
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	*ret_loc = at;
	*ret_msg = msg;
	return -EINVAL;
}

static const char *yaml_node_name(const yaml_event_t *e)
{
	if (e->type == YAML_SEQUENCE_START_EVENT)
		return "a sequence";
	if (e->type == YAML_ALIAS_EVENT)
		return "an alias";
	return "a scalar";
}

static const char *event_tag(const yaml_event_t *e)
{
	const yaml_char_t *t = NULL;

	if (e->type == YAML_SCALAR_EVENT)
		t = e->data.scalar.tag;
	else if (e->type == YAML_SEQUENCE_START_EVENT)
		t = e->data.sequence_start.tag;
	else if (e->type == YAML_MAPPING_START_EVENT)
		t = e->data.mapping_start.tag;
	return t ? (const char *)t : "";
}

/* No tag, the non-specific '!', or one of the YAML types PyYAML's safe_load constructs. */
static bool tag_known(const yaml_event_t *e)
{
	static const char *const safe[] = { "null",	 "bool", "int",	  "float", "binary",
					    "timestamp", "omap", "pairs", "set",   "str",
					    "seq",	 "map",	 NULL };
	const char *t = event_tag(e);

	if (!*t || strcmp(t, "!") == 0)
		return true;
	if (strncmp(t, "tag:yaml.org,2002:", 18) != 0)
		return false;
	for (size_t i = 0; safe[i]; i++)
		if (strcmp(t + 18, safe[i]) == 0)
			return true;
	return false;
}

/* The whole text is one YAML document whose top level is a mapping or empty. */
static int cloud_config_problem(const char *text, size_t len, struct spec_loc *ret_loc,
				char **ret_msg)
{
	yaml_parser_t y;
	unsigned depth = 0, docs = 0;
	bool expect_root = false;
	int r = 0;

	if (!yaml_parser_initialize(&y))
		abort();
	yaml_parser_set_encoding(&y, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
	for (;;) {
		yaml_event_t e;
		struct spec_loc at;
		bool end;

		if (!yaml_parser_parse(&y, &e)) {
			const char *problem = y.problem ? y.problem : "unknown error";

			if (y.error == YAML_READER_ERROR)
				r = ud_problem(text_loc(text, len, y.problem_offset), ret_loc,
					       ret_msg, "cloud-config is not valid YAML: %s",
					       problem);
			else if (y.context)
				r = ud_problem(mark_loc(y.problem_mark), ret_loc, ret_msg,
					       "cloud-config is not valid YAML: %s (%s)", problem,
					       y.context);
			else
				r = ud_problem(mark_loc(y.problem_mark), ret_loc, ret_msg,
					       "cloud-config is not valid YAML: %s", problem);
			break;
		}
		at = mark_loc(e.start_mark);
		end = e.type == YAML_STREAM_END_EVENT;
		if (expect_root) {
			expect_root = false;
			if (e.type != YAML_MAPPING_START_EVENT &&
			    !(e.type == YAML_SCALAR_EVENT &&
			      e.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			      spec_resolve_plain((const char *)e.data.scalar.value,
						 e.data.scalar.length) == SPEC_KIND_NULL))
				r = ud_problem(at, ret_loc, ret_msg,
					       "the top level of a cloud-config must be a mapping, "
					       "got %s",
					       yaml_node_name(&e));
		}
		if (r == 0 && !tag_known(&e))
			r = ud_problem(at, ret_loc, ret_msg,
				       "cloud-config uses the tag '%.64s', which cloud-init's YAML "
				       "loader (PyYAML safe_load) does not know",
				       event_tag(&e));
		switch (e.type) {
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				r = ud_problem(at, ret_loc, ret_msg,
					       "a cloud-config must be a single YAML document");
			expect_root = true;
			break;
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
			if (++depth > USERDATA_DEPTH_MAX)
				r = ud_problem(at, ret_loc, ret_msg,
					       "cloud-config nests deeper than %d levels",
					       USERDATA_DEPTH_MAX);
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&e);
		if (r < 0 || end)
			break;
	}
	yaml_parser_delete(&y);
	return r;
}

/* The value of a boundary= parameter in a Content-Type value, or NULL. Owned. */
static char *mime_boundary(const char *v, size_t len)
{
	for (size_t i = 0; i + 9 <= len; i++) {
		size_t j, k;

		if (strncasecmp(v + i, "boundary=", 9) != 0 ||
		    (i > 0 && v[i - 1] != ';' && v[i - 1] != ' ' && v[i - 1] != '\t'))
			continue;
		j = i + 9;
		if (j < len && v[j] == '"') {
			k = ++j;
			while (k < len && v[k] != '"')
				k++;
		} else {
			k = j;
			while (k < len && v[k] != ';' && v[k] != ' ' && v[k] != '\t')
				k++;
		}
		return k > j ? xstrndup(v + j, k - j) : NULL;
	}
	return NULL;
}

/* Headers (with a multipart Content-Type and a boundary), a blank line, the boundary in the body. */
static int mime_problem(const char *text, size_t len, struct spec_loc *ret_loc, char **ret_msg)
{
	_cleanup_free_ char *ctype = NULL, *boundary = NULL, *delim = NULL;
	struct spec_loc ct_at = { 1, 1 };
	size_t i = 0, body = 0;
	unsigned line = 0;
	bool blank = false;

	while (i < len) {
		const char *s = text + i, *nl = memchr(s, '\n', len - i);
		size_t n = nl ? (size_t)(nl - s) : len - i;

		line++;
		i += n + (nl ? 1 : 0);
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n == 0) {
			blank = true;
			body = i;
			break;
		}
		if (s[0] == ' ' || s[0] == '\t') {
			/* A folded continuation of the previous header. */
			if (line == 1)
				return ud_problem((struct spec_loc){ line, 1 }, ret_loc, ret_msg,
						  "MIME headers must not start with a space");
			if (ctype && !boundary) {
				char *joined = xasprintf("%s %.*s", ctype, (int)n, s);

				free(ctype);
				ctype = joined;
			}
			continue;
		}
		if (!memchr(s, ':', n))
			return ud_problem((struct spec_loc){ line, 1 }, ret_loc, ret_msg,
					  "not a MIME header line (expected 'Name: value', then a "
					  "blank line before the body)");
		if (starts_with_ci(s, n, "content-type:")) {
			size_t v = 13;

			while (v < n && (s[v] == ' ' || s[v] == '\t'))
				v++;
			free(ctype);
			ctype = xstrndup(s + v, n - v);
			ct_at = (struct spec_loc){ line, (unsigned)v + 1 };
		}
	}
	if (!ctype)
		return ud_problem((struct spec_loc){ 1, 1 }, ret_loc, ret_msg,
				  "MIME user-data needs a 'Content-Type: multipart/...' header");
	if (!starts_with_ci(ctype, strlen(ctype), "multipart/"))
		return ud_problem(ct_at, ret_loc, ret_msg,
				  "MIME user-data must be a multi-part archive (Content-Type "
				  "multipart/...)");
	boundary = mime_boundary(ctype, strlen(ctype));
	if (!boundary)
		return ud_problem(ct_at, ret_loc, ret_msg,
				  "the multipart Content-Type has no boundary parameter");
	if (!blank)
		return ud_problem((struct spec_loc){ line, 1 }, ret_loc, ret_msg,
				  "MIME headers must end with a blank line before the body");
	delim = xasprintf("--%s", boundary);
	for (size_t k = body; k < len;) {
		const char *nl = memchr(text + k, '\n', len - k);

		if (len - k >= strlen(delim) && memcmp(text + k, delim, strlen(delim)) == 0)
			return 0;
		if (!nl)
			break;
		k = (size_t)(nl - text) + 1;
	}
	return ud_problem((struct spec_loc){ 0, 0 }, ret_loc, ret_msg,
			  "MIME user-data: the boundary '%s' never starts a line of the body",
			  boundary);
}

int spec_userdata_problem(const char *text, size_t len, struct spec_loc *ret_loc, char **ret_msg)
{
	struct spec_loc none = { 0, 0 };

	if (len > SPEC_USERDATA_MAX)
		return ud_problem(none, ret_loc, ret_msg, "must be at most %d bytes (256 KiB)",
				  SPEC_USERDATA_MAX);
	if (memchr(text, '\0', len))
		return ud_problem(
			text_loc(text, len, (size_t)((const char *)memchr(text, '\0', len) - text)),
			ret_loc, ret_msg, "must not contain NUL bytes");
	if (!spec_utf8_valid(text, len))
		return ud_problem(none, ret_loc, ret_msg, "must be valid UTF-8");
	switch (spec_userdata_kind(text, len)) {
	case SPEC_USERDATA_CLOUD_CONFIG:
		return cloud_config_problem(text, len, ret_loc, ret_msg);
	case SPEC_USERDATA_SCRIPT:
		return 0;
	case SPEC_USERDATA_MIME:
		return mime_problem(text, len, ret_loc, ret_msg);
	default: {
		char first[48];
		size_t n = 0;

		for (size_t i = 0; i < len && n < 40 && text[i] != '\n' && text[i] != '\r'; i++)
			first[n++] =
				(unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
		/* Cut on a character boundary. */
		while (n > 0 && n < len && ((unsigned char)text[n] & 0xc0) == 0x80)
			n--;
		first[n] = '\0';
		return ud_problem(
			(struct spec_loc){ 1, 1 }, ret_loc, ret_msg,
			"user-data must start with '#cloud-config' (a cloud-config), "
			"'#!' (a script) or MIME headers ('MIME-Version:', 'Content-Type: "
			"multipart/...'); got '%s'",
			first);
	}
	}
}

int spec_userdata_check(const char *text, size_t len, const char *file, unsigned line0,
			unsigned col0, struct bg_err *err)
{
	_cleanup_free_ char *msg = NULL;
	struct spec_loc at;

	if (spec_userdata_problem(text, len, &at, &msg) == 0)
		return 0;
	if (at.line == 0)
		return bg_errorf(err, EINVAL, "%s: %s", file, msg);
	return bg_errorf(err, EINVAL, "%s:%u:%u: %s", file, line0 + at.line, col0 + at.col, msg);
}
