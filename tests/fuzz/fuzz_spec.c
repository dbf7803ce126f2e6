/*
 * fuzz_spec.c - libFuzzer target for the spec parser.
 *
 * Parses the input as a spec file, finishes the set, and for every spec that
 * came out checks the canonical forms: spec_to_json -> spec_from_json must
 * succeed and give the same JSON (so the same hash), spec_to_yaml must parse
 * back to the same JSON, and spec_compare must call the copies the same.
 * Any mismatch aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "spec/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what, const char *detail)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz_spec: %s\n%s\n", what, detail ? detail : "");
	abort();
}

static void check_spec(const struct vm_spec *spec)
{
	_cleanup_free_ char *json = spec_to_json(spec);
	_cleanup_free_ char *json2 = NULL, *yaml = NULL;
	struct vm_spec *back = NULL;
	struct bg_err err = { 0 };
	char h1[SPEC_HASH_LEN + 1], h2[SPEC_HASH_LEN + 1];
	struct spec_set set;

	check(spec_from_json(json, &back, &err) == 0, "spec_from_json rejected spec_to_json output",
	      err.msg);
	json2 = spec_to_json(back);
	check(strcmp(json, json2) == 0, "JSON round trip changed the spec", json2);
	spec_hash(spec, h1);
	spec_hash(back, h2);
	check(strcmp(h1, h2) == 0, "hash changed over the JSON round trip", json);
	check(spec_compare(spec, back) == SPEC_SAME, "spec_compare of a round trip", json);
	vm_spec_free(back);

	yaml = spec_to_yaml(spec);
	spec_set_init(&set);
	check(spec_parse_buffer(&set, "yaml_out", yaml, strlen(yaml)) == 0 && set.n_specs == 1,
	      "spec_to_yaml output does not parse", yaml);
	free(json2);
	json2 = spec_to_json(set.specs[0]);
	check(strcmp(json, json2) == 0, "YAML round trip changed the spec", yaml);
	spec_set_release(&set);
}

/* The document's byte range, parsed on its own, is the same spec. */
static void check_range(const struct vm_spec *spec, const char *data)
{
	_cleanup_free_ char *json = spec_to_json(spec), *json2 = NULL;
	struct spec_set set;

	spec_set_init(&set);
	check(spec_parse_buffer(&set, "range", data + spec->source_start,
				spec->source_end - spec->source_start) == 0 &&
		      set.n_specs == 1,
	      "a document's range does not parse alone", spec->name);
	json2 = spec_to_json(set.specs[0]);
	check(strcmp(json, json2) == 0, "a document's range is another spec", json2);
	spec_set_release(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spec_set set;
	int errors;

	spec_set_init(&set);
	errors = spec_parse_buffer(&set, "fuzz.yaml", (const char *)data, size);
	check((errors == 0) == (set.n_diags == 0), "error count and diagnostics disagree", NULL);
	if (errors)
		check(set.n_specs == 0, "a file with errors contributed specs", NULL);
	spec_set_finish(&set);
	for (size_t i = 0; i < set.n_diags; i++) {
		char *line = spec_diag_format(&set.diags[i]);

		free(line);
	}
	for (size_t i = 0; i < set.n_specs; i++) {
		const struct vm_spec *s = set.specs[i];

		check(s->source_start <= s->source_end && s->source_end <= size,
		      "document range outside the input", s->name);
		if (i > 0)
			check(strcmp(set.specs[i - 1]->name, s->name) < 0, "specs not sorted",
			      s->name);
		check_spec(s);
		check_range(s, (const char *)data);
	}
	spec_set_release(&set);
	return 0;
}
