/*
 * util.c - helpers shared by the CLI verbs; see util.h.
 */
#include "cli/util.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/imgpath.h"
#include "common/fs.h"
#include "common/paths.h"
#include "common/timeutil.h"
#include "common/xalloc.h"

int cli_store_open(const struct cli_ctx *ctx, struct store **ret)
{
	_cleanup_free_ char *db = paths_db(ctx->state_dir);
	struct bg_err err = { 0 };
	int r;

	*ret = NULL;
	r = store_open(db, STORE_READ_ONLY, ret, &err);
	if (r == -ENOENT && !fs_exists(db))
		return 0;
	if (r < 0) {
		cli_error("%s", err.msg);
		return r;
	}
	return 0;
}

int cli_vm_get(const struct cli_ctx *ctx, const char *name, struct store **ret_store,
	       struct vm_record *ret)
{
	struct store *s = NULL;
	struct bg_err err = { 0 };
	int r;

	r = cli_store_open(ctx, &s);
	if (r < 0)
		return r;
	if (!s) {
		cli_error("vm '%s' not found (bangerd has not run with state dir '%s')", name,
			  ctx->state_dir);
		return -ENOENT;
	}
	r = store_vm_get_by_name(s, name, ret, &err);
	if (r < 0) {
		if (r == -ENOENT)
			cli_error("vm '%s' not found", name);
		else
			cli_error("%s", err.msg);
		store_free(s);
		return r;
	}
	*ret_store = s;
	return 0;
}

bool cli_daemon_fresh(const struct daemon_info *info, int64_t *ret_age_ms)
{
	int64_t age, limit;

	if (!info || info->heartbeat <= 0) {
		if (ret_age_ms)
			*ret_age_ms = -1;
		return false;
	}
	age = now_real_ms() - info->heartbeat;
	if (ret_age_ms)
		*ret_age_ms = age;
	/* A pass runs at least every resync period; allow two and some slack. */
	limit = 2 * (info->resync_ms > 0 ? info->resync_ms : 30000) + 15000;
	return age <= limit;
}

void cli_daemon_banner(struct store *s)
{
	struct daemon_info info = { 0 };
	int64_t age;
	char buf[32];

	if (!s || store_daemon_get(s, &info, NULL) < 0) {
		fprintf(stderr, "banger: bangerd has never run with this state directory; "
				"nothing is being reconciled\n");
		return;
	}
	if (!cli_daemon_fresh(&info, &age))
		fprintf(stderr,
			"banger: WARNING: bangerd is not running (last heartbeat %s ago); "
			"what follows may be out of date\n",
			format_age(age, buf, sizeof(buf)));
	daemon_info_release(&info);
}

void cli_load_spec_dir(const struct cli_ctx *ctx, struct spec_set *set)
{
	spec_set_init(set);
	if (fs_exists(ctx->spec_dir))
		(void)spec_load_path(set, ctx->spec_dir);
	(void)spec_set_finish(set);
}

int cli_output_parse(const char *s)
{
	static const char *const names[CLI_OUTPUT_MAX] = { "table", "wide", "json", "yaml" };

	for (int i = 0; s && i < CLI_OUTPUT_MAX; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -EINVAL;
}

void cli_print_json(FILE *f, const struct cJSON *v)
{
	_cleanup_free_ char *s = cJSON_Print(v);

	fprintf(f, "%s\n", s ? s : "null");
}

/* YAML needs quotes for strings that would otherwise read as something else. */
static bool yaml_needs_quotes(const char *s)
{
	static const char *const special[] = { "true", "false", "yes",	"no",	 "on",	 "off",
					       "null", "~",	"True", "False", "Null", "NULL" };
	char *end;

	if (!*s)
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(special); i++)
		if (strcmp(s, special[i]) == 0)
			return true;
	(void)strtod(s, &end);
	if (*end == '\0')
		return true;
	if (strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) || s[strlen(s) - 1] == ' ')
		return true;
	for (const char *p = s; *p; p++)
		if ((*p == ':' && (p[1] == ' ' || p[1] == '\0')) || (*p == ' ' && p[1] == '#') ||
		    *p == '\n' || (unsigned char)*p < 0x20)
			return true;
	return false;
}

static void yaml_scalar(FILE *f, const cJSON *v)
{
	if (cJSON_IsString(v)) {
		const char *s = v->valuestring;

		if (!yaml_needs_quotes(s)) {
			fputs(s, f);
			return;
		}
		fputc('"', f);
		for (; *s; s++) {
			if (*s == '"' || *s == '\\')
				fprintf(f, "\\%c", *s);
			else if (*s == '\n')
				fputs("\\n", f);
			else if ((unsigned char)*s < 0x20)
				fprintf(f, "\\x%02x", (unsigned char)*s);
			else
				fputc(*s, f);
		}
		fputc('"', f);
	} else if (cJSON_IsBool(v)) {
		fputs(cJSON_IsTrue(v) ? "true" : "false", f);
	} else if (cJSON_IsNumber(v)) {
		if (v->valuedouble == (double)(int64_t)v->valuedouble)
			fprintf(f, "%lld", (long long)v->valuedouble);
		else
			fprintf(f, "%g", v->valuedouble);
	} else {
		fputs("null", f);
	}
}

static bool is_container(const cJSON *v)
{
	return (cJSON_IsObject(v) || cJSON_IsArray(v)) && v->child;
}

static void yaml_value(FILE *f, const cJSON *v, int indent);

static void yaml_children(FILE *f, const cJSON *v, int indent)
{
	for (const cJSON *c = v->child; c; c = c->next) {
		fprintf(f, "%*s", indent, "");
		if (cJSON_IsArray(v)) {
			fputs("-", f);
			if (is_container(c) && cJSON_IsObject(c)) {
				/* "- key: v" with the rest of the mapping indented under it. */
				const cJSON *first = c->child;

				fprintf(f, " %s:", first->string);
				if (is_container(first)) {
					fputc('\n', f);
					yaml_value(f, first, indent + 4);
				} else {
					fputc(' ', f);
					yaml_value(f, first, 0);
				}
				for (const cJSON *k = first->next; k; k = k->next) {
					fprintf(f, "%*s%s:", indent + 2, "", k->string);
					if (is_container(k)) {
						fputc('\n', f);
						yaml_value(f, k, indent + 4);
					} else {
						fputc(' ', f);
						yaml_value(f, k, 0);
					}
				}
				continue;
			}
		} else {
			fprintf(f, "%s:", c->string);
		}
		if (is_container(c)) {
			fputc('\n', f);
			yaml_value(f, c, indent + 2);
		} else {
			fputc(' ', f);
			yaml_value(f, c, 0);
		}
	}
}

static void yaml_value(FILE *f, const cJSON *v, int indent)
{
	if (is_container(v)) {
		yaml_children(f, v, indent);
		return;
	}
	if (cJSON_IsObject(v))
		fputs("{}", f);
	else if (cJSON_IsArray(v))
		fputs("[]", f);
	else
		yaml_scalar(f, v);
	fputc('\n', f);
}

void cli_print_yaml(FILE *f, const struct cJSON *v)
{
	yaml_value(f, v, 0);
}

void cli_table_init(struct cli_table *t, size_t n_cols)
{
	memset(t, 0, sizeof(*t));
	t->n_cols = n_cols;
}

void cli_table_add(struct cli_table *t, const char *const *cells)
{
	t->cells = xreallocarray(t->cells, (t->n_rows + 1) * t->n_cols, sizeof(*t->cells));
	for (size_t i = 0; i < t->n_cols; i++)
		t->cells[t->n_rows * t->n_cols + i] = xstrdup(cells[i] ? cells[i] : "");
	t->n_rows++;
}

void cli_table_print(FILE *f, const struct cli_table *t)
{
	size_t *w = xcalloc(t->n_cols, sizeof(*w));

	for (size_t r = 0; r < t->n_rows; r++)
		for (size_t c = 0; c < t->n_cols; c++) {
			size_t len = strlen(t->cells[r * t->n_cols + c]);

			if (len > w[c])
				w[c] = len;
		}
	for (size_t r = 0; r < t->n_rows; r++) {
		for (size_t c = 0; c < t->n_cols; c++) {
			const char *cell = t->cells[r * t->n_cols + c];

			if (c + 1 == t->n_cols)
				fprintf(f, "%s", cell);
			else
				fprintf(f, "%-*s   ", (int)w[c], cell);
		}
		fputc('\n', f);
	}
	free(w);
}

void cli_table_release(struct cli_table *t)
{
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

int cli_read_input(const char *path, char **ret, size_t *ret_len, struct bg_err *err)
{
	int r;

	if (strcmp(path, "-") != 0)
		return fs_read_file(path, SPEC_FILE_MAX, ret, ret_len, err);
	r = fs_read_fd(STDIN_FILENO, SPEC_FILE_MAX, "<stdin>", ret, ret_len, err);
	if (r == -EFBIG)
		return bg_errorf(err, EFBIG,
				 "<stdin>: larger than %d bytes (1 MiB); none of it was used",
				 SPEC_FILE_MAX);
	return r;
}

int cli_load_inputs(struct spec_set *set, char *const *paths, size_t n, char **ret_stdin,
		    size_t *ret_stdin_len)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0, n_stdin = 0;
	struct bg_err err = { 0 };

	*ret_stdin = NULL;
	*ret_stdin_len = 0;
	for (size_t i = 0; i < n; i++)
		n_stdin += strcmp(paths[i], "-") == 0;
	if (n_stdin > 1) {
		cli_error("'-' (stdin) can be given only once");
		return -EINVAL;
	}
	/* Read stdin first and whole: when it cannot be, nothing at all is parsed. */
	if (n_stdin == 1) {
		int r = cli_read_input("-", &data, &len, &err);

		if (r < 0) {
			cli_error("%s", err.msg);
			return r;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(paths[i], "-") == 0)
			(void)spec_parse_buffer(set, "<stdin>", data, len);
		else
			(void)spec_load_path(set, paths[i]);
	}
	(void)spec_set_finish(set);
	*ret_stdin = TAKE_PTR(data);
	*ret_stdin_len = len;
	return 0;
}

void cli_print_diags(const struct spec_set *set)
{
	for (size_t i = 0; i < set->n_diags; i++) {
		_cleanup_free_ char *line = spec_diag_format(&set->diags[i]);

		fprintf(stderr, "%s\n", line);
	}
}

int cli_check_image_paths(const struct spec_set *set, char *const *dirs, size_t n,
			  const char *state_dir)
{
	struct imgpath_conf conf = { .roots = (const char *const *)dirs,
				     .n_roots = n,
				     .state_dir = state_dir };
	struct bg_err err = { 0 };
	int errors = 0;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (imgpath_root_check(dirs[i], state_dir, &err) < 0) {
			cli_error("--image-dir: %s", err.msg);
			return -EINVAL;
		}
	for (size_t i = 0; i < set->n_specs; i++) {
		_cleanup_free_ char *msg = spec_check_image_paths(set->specs[i], &conf);

		if (!msg)
			continue;
		fputs(msg, stderr);
		for (const char *p = msg; *p; p++)
			errors += *p == '\n';
	}
	return errors;
}
