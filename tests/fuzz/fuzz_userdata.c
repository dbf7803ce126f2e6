/*
 * fuzz_userdata.c - libFuzzer target for spec.cloudInit user-data: the check
 * (spec_userdata_check, libyaml for #cloud-config, the MIME header reader)
 * and, for text it accepts, everything that carries it:
 *  - a spec holding it goes through canonical JSON and back, and through
 *    spec_to_yaml (a literal block or a quoted scalar) and back, unchanged;
 *  - seed_render() combines it with banger's parts: the result is the same
 *    twice, is a MIME archive whose boundary occurs in no part, and holds
 *    the user's text byte for byte when it is ASCII (else base64).
 * Any mismatch aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "reconciler/guest/seed.h"
#include "spec/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what, const char *detail)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_userdata: %s\n%s\n", what, detail ? detail : "");
	abort();
}

static const char base_doc[] = "apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: f\nspec:\n"
			       "  kernel: {path: /k}\n  rootfs: {image: /i}\n";

static void check_spec_round_trips(const char *text)
{
	struct spec_set set;
	struct vm_spec *s, *back = NULL;
	_cleanup_free_ char *json = NULL, *json2 = NULL, *yaml = NULL;
	struct bg_err err = { 0 };

	spec_set_init(&set);
	check(spec_parse_buffer(&set, "base", base_doc, strlen(base_doc)) == 0, "base doc", NULL);
	s = vm_spec_dup(set.specs[0]);
	spec_set_release(&set);
	s->cloudinit_user_data = xstrdup(text);

	json = spec_to_json(s);
	check(spec_from_json(json, &back, &err) == 0, "spec_from_json refused valid user-data",
	      err.msg);
	json2 = spec_to_json(back);
	check(strcmp(json, json2) == 0, "JSON round trip changed the user-data", json2);
	check(spec_compare(s, back) == SPEC_SAME, "compare after the JSON round trip", json);
	vm_spec_free(back);

	yaml = spec_to_yaml(s);
	spec_set_init(&set);
	check(spec_parse_buffer(&set, "yaml_out", yaml, strlen(yaml)) == 0 && set.n_specs == 1,
	      "spec_to_yaml output does not parse", yaml);
	free(json2);
	json2 = spec_to_json(set.specs[0]);
	check(strcmp(json, json2) == 0, "YAML round trip changed the user-data", yaml);
	spec_set_release(&set);
	vm_spec_free(s);
}

static void check_seed(const char *text)
{
	static const char *const ns[] = { "172.30.0.1" };
	const struct seed_input in = {
		.instance_id = "iid-banger-00000000",
		.hostname = "f",
		.mac = "02:00:00:00:00:01",
		.ip = "172.30.0.10",
		.prefix = 24,
		.gateway = "172.30.0.1",
		.nameservers = ns,
		.n_nameservers = 1,
		.user = "root",
		.authorized_keys = "ssh-ed25519 AAAA k\n",
		.host_key_private = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
				    "-----END OPENSSH PRIVATE KEY-----\n",
		.host_key_public = "ssh-ed25519 AAAA host",
		.user_data = text,
		.cmdline = "banger.user=root",
	};
	struct seed_files a, b;
	struct bg_err err = { 0 };
	const char *q, *end;
	_cleanup_free_ char *boundary = NULL, *delim = NULL;
	bool ascii = true;

	check(seed_render(&in, &a, &err) == 0, "seed_render refused valid user-data", err.msg);
	check(seed_render(&in, &b, &err) == 0, "seed_render refused it the second time", err.msg);
	check(strcmp(a.user_data, b.user_data) == 0, "seed_render is not deterministic", NULL);
	q = strstr(a.user_data, "boundary=\"");
	check(q == a.user_data + strlen("Content-Type: multipart/mixed; "), "no MIME header",
	      a.user_data);
	q += strlen("boundary=\"");
	end = strchr(q, '"');
	check(end != NULL, "unterminated boundary", a.user_data);
	boundary = xstrndup(q, (size_t)(end - q));
	check(strstr(text, boundary) == NULL, "the boundary occurs in the user's part", boundary);
	delim = xasprintf("\n--%s", boundary);
	for (const char *p = text; *p; p++)
		ascii = ascii && (unsigned char)*p < 0x80;
	if (ascii && spec_userdata_kind(text, strlen(text)) != SPEC_USERDATA_MIME) {
		_cleanup_free_ char *part = xasprintf("\n\n%s%s", text, delim);

		check(strstr(a.user_data, part) != NULL, "the user's text is not a part as is",
		      a.user_data);
	}
	seed_files_release(&a);
	seed_files_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ char *text = NULL;
	struct bg_err err = { 0 };
	int r;

	if (size > SPEC_USERDATA_MAX + 16)
		return 0;
	text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	r = spec_userdata_check(text, size, "fuzz", 0, 0, &err);
	check(r == 0 || (r == -EINVAL && strncmp(err.msg, "fuzz", 4) == 0),
	      "spec_userdata_check: bad return or message", err.msg);
	if (r < 0)
		return 0;
	check(spec_userdata_kind(text, size) != SPEC_USERDATA_UNKNOWN, "accepted an unknown kind",
	      text);
	check(strlen(text) == size, "accepted a NUL byte", NULL);
	check_spec_round_trips(text);
	check_seed(text);
	return 0;
}
