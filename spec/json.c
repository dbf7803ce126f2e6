/*
 * json.c - the canonical JSON form of a spec (cJSON), its hash, and reading
 * it back.
 *
 * The canonical form has a fixed key order, every default written out, no
 * whitespace and no provenance, so equal specs give equal bytes and equal
 * SHA-256 hashes. spec_from_json() walks the JSON with the same builder as
 * the YAML parser, so stored specs obey the same rules as spec files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/xalloc.h"
#include "spec/internal.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON, cJSON_Delete)

static cJSON *add_object(cJSON *parent, const char *key)
{
	cJSON *o = cJSON_AddObjectToObject(parent, key);

	if (!o)
		abort();
	return o;
}

static void add_string(cJSON *parent, const char *key, const char *value)
{
	if (!cJSON_AddStringToObject(parent, key, value ? value : ""))
		abort();
}

static void add_number(cJSON *parent, const char *key, double value)
{
	if (!cJSON_AddNumberToObject(parent, key, value))
		abort();
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

char *spec_to_json(const struct vm_spec *s)
{
	_cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
	cJSON *meta, *labels, *spec, *o, *keys;
	char *out;

	if (!root)
		abort();
	add_string(root, "apiVersion", SPEC_API_VERSION);
	add_string(root, "kind", SPEC_KIND);
	meta = add_object(root, "metadata");
	add_string(meta, "name", s->name);
	labels = add_object(meta, "labels");
	for (size_t i = 0; i < s->n_labels; i++)
		add_string(labels, s->labels[i].key, s->labels[i].value);

	spec = add_object(root, "spec");
	add_string(spec, "state", or_empty(vm_desired_state_to_string(s->state)));
	add_string(spec, "vmm", or_empty(vmm_kind_to_string(s->vmm)));
	add_number(spec, "vcpus", s->vcpus);
	add_number(spec, "memoryMiB", s->memory_mib);
	o = add_object(spec, "kernel");
	add_string(o, "path", s->kernel_path);
	if (s->kernel_initrd && *s->kernel_initrd)
		add_string(o, "initrd", s->kernel_initrd);
	if (s->kernel_args && *s->kernel_args)
		add_string(o, "args", s->kernel_args);
	o = add_object(spec, "rootfs");
	add_string(o, "image", s->rootfs_image);
	if (s->rootfs_size_mib)
		add_number(o, "sizeMiB", (double)s->rootfs_size_mib);
	if (s->work_disk_mib) {
		o = add_object(spec, "workDisk");
		add_number(o, "sizeMiB", (double)s->work_disk_mib);
	}
	/* Each left out when unset, so specs written before egress and ports keep their hash. */
	if ((s->ip && *s->ip) || s->egress != SPEC_EGRESS_DEFAULT || s->n_ports) {
		o = add_object(spec, "network");
		if (s->ip && *s->ip)
			add_string(o, "ip", s->ip);
		if (s->egress != SPEC_EGRESS_DEFAULT)
			add_string(o, "egress", or_empty(spec_egress_to_string(s->egress)));
		if (s->n_ports) {
			cJSON *ports = cJSON_AddArrayToObject(o, "ports");

			if (!ports)
				abort();
			for (size_t i = 0; i < s->n_ports; i++) {
				cJSON *p = cJSON_CreateObject();

				if (!p || !cJSON_AddItemToArray(ports, p))
					abort();
				add_number(p, "hostPort", s->ports[i].host_port);
				add_number(p, "guestPort", s->ports[i].guest_port);
				add_string(p, "protocol",
					   or_empty(spec_proto_to_string(s->ports[i].protocol)));
				add_string(p, "hostIP", s->ports[i].host_ip);
			}
		}
	}
	o = add_object(spec, "ssh");
	add_string(o, "user", s->ssh_user ? s->ssh_user : "root");
	keys = cJSON_AddArrayToObject(o, "authorizedKeys");
	if (!keys)
		abort();
	for (size_t i = 0; i < s->n_ssh_keys; i++) {
		cJSON *k = cJSON_CreateString(or_empty(s->ssh_keys[i]));

		if (!k || !cJSON_AddItemToArray(keys, k))
			abort();
	}
	/* Left out at their defaults, so specs written before they existed keep their hash. */
	if (s->guest_config != GUEST_CONFIG_AUTO) {
		o = add_object(spec, "guest");
		add_string(o, "config", or_empty(guest_config_to_string(s->guest_config)));
	}
	if (s->cloudinit_user_data) {
		/* The content, not just the file's name: editing the file changes the hash. */
		o = add_object(spec, "cloudInit");
		add_string(o, "userData", s->cloudinit_user_data);
		if (s->cloudinit_user_data_file)
			add_string(o, "userDataFile", s->cloudinit_user_data_file);
	}
	add_string(spec, "restartPolicy", or_empty(restart_policy_to_string(s->restart_policy)));

	out = cJSON_PrintUnformatted(root);
	if (!out)
		abort();
	return out;
}

void spec_hash(const struct vm_spec *spec, char out[SPEC_HASH_LEN + 1])
{
	_cleanup_free_ char *json = spec_to_json(spec);

	sha256_hex(json, strlen(json), out);
}

/* ---- reading ------------------------------------------------------------------ */

struct json_errors {
	struct buf first;
	unsigned n;
};

static void json_report(void *ctx, const char *file, struct spec_loc loc, const char *msg)
{
	struct json_errors *e = ctx;

	(void)file;
	(void)loc;
	if (e->n++ == 0)
		buf_adds(&e->first, msg);
}

/* What a JSON value is, and its text for scalars (in buf when it has to be formatted). */
static enum spec_kind json_kind(const cJSON *v, char *buf, size_t size, const char **ret_text)
{
	*ret_text = "";
	if (cJSON_IsString(v)) {
		*ret_text = v->valuestring ? v->valuestring : "";
		return SPEC_KIND_STRING;
	}
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;

		*ret_text = buf;
		/* Integral and in range (NaN fails every comparison); no libm needed. */
		if (d > -9e18 && d < 9e18 && d == (double)(long long)d) {
			snprintf(buf, size, "%.0f", d);
			return SPEC_KIND_INT;
		}
		snprintf(buf, size, "%.17g", d);
		return SPEC_KIND_FLOAT;
	}
	if (cJSON_IsBool(v)) {
		*ret_text = cJSON_IsTrue(v) ? "true" : "false";
		return SPEC_KIND_BOOL;
	}
	if (cJSON_IsObject(v))
		return SPEC_KIND_MAPPING;
	if (cJSON_IsArray(v))
		return SPEC_KIND_SEQUENCE;
	return SPEC_KIND_NULL;
}

static const struct spec_loc no_loc = { 0, 0 };

static void walk_map(struct spec_builder *b, enum spec_field parent, const cJSON *obj);

static void walk_value(struct spec_builder *b, enum spec_field f, const cJSON *v)
{
	char buf[64];
	const char *text;
	enum spec_kind kind = json_kind(v, buf, sizeof(buf), &text);
	size_t i = 0;

	switch (spec_field_type(f)) {
	case SPEC_FT_MAP:
		if (spec_builder_begin(b, f, kind, text, strlen(text), no_loc))
			walk_map(b, f, v);
		break;
	case SPEC_FT_STRMAP:
		if (!spec_builder_begin(b, f, kind, text, strlen(text), no_loc))
			break;
		for (const cJSON *it = v->child; it; it = it->next) {
			char vbuf[64];
			const char *vtext;
			enum spec_kind vkind = json_kind(it, vbuf, sizeof(vbuf), &vtext);
			const char *key = it->string ? it->string : "";

			spec_builder_label(b, SPEC_KIND_STRING, key, strlen(key), no_loc, vkind,
					   vtext, strlen(vtext), no_loc);
		}
		break;
	case SPEC_FT_STRSEQ:
	case SPEC_FT_MAPSEQ:
		if (!spec_builder_begin(b, f, kind, text, strlen(text), no_loc))
			break;
		for (const cJSON *it = v->child; it; it = it->next, i++) {
			char vbuf[64];
			const char *vtext;
			enum spec_kind vkind = json_kind(it, vbuf, sizeof(vbuf), &vtext);

			if (spec_field_type(f) == SPEC_FT_STRSEQ) {
				spec_builder_item(b, f, i, vkind, vtext, strlen(vtext), no_loc);
			} else if (spec_builder_elem_begin(b, f, i, vkind, vtext, strlen(vtext),
							   no_loc)) {
				walk_map(b, f, it);
				spec_builder_elem_end(b, f);
			}
		}
		break;
	default:
		spec_builder_scalar(b, f, kind, text, strlen(text), no_loc);
		break;
	}
}

static void walk_map(struct spec_builder *b, enum spec_field parent, const cJSON *obj)
{
	for (const cJSON *it = obj->child; it; it = it->next) {
		const char *key = it->string ? it->string : "";
		int f = spec_builder_key(b, parent, key, strlen(key), no_loc);

		if (f >= 0)
			walk_value(b, (enum spec_field)f, it);
	}
}

int spec_from_json(const char *json, struct vm_spec **ret, struct bg_err *err)
{
	_cleanup_(cJSON_Deletep) cJSON *root = NULL;
	struct json_errors errors = { .n = 0 };
	struct spec_builder b;
	struct vm_spec *spec;
	size_t len;

	if (!json)
		return bg_errorf(err, EINVAL, "spec JSON: missing");
	len = strnlen(json, SPEC_FILE_MAX + 1);
	if (len > SPEC_FILE_MAX)
		return bg_errorf(err, EINVAL, "spec JSON: larger than %d bytes", SPEC_FILE_MAX);
	/* len + 1: the NUL is part of the buffer, so trailing garbage is refused. */
	root = cJSON_ParseWithLengthOpts(json, len + 1, NULL, 1);
	if (!root)
		return bg_errorf(err, EINVAL, "spec JSON: not valid JSON");
	if (!cJSON_IsObject(root))
		return bg_errorf(err, EINVAL, "spec JSON: not an object");

	buf_init(&errors.first);
	spec_builder_init(&b, no_loc, json_report, &errors);
	walk_map(&b, SPEC_F_ROOT, root);
	spec = spec_builder_finish(&b);
	spec_builder_release(&b);
	if (!spec) {
		int r = bg_errorf(err, EINVAL, "spec JSON: %s%s", errors.first.data,
				  errors.n > 1 ? " (and more)" : "");

		buf_release(&errors.first);
		return r;
	}
	buf_release(&errors.first);
	*ret = spec;
	return 0;
}
