/*
 * test_spec.c - spec/: the YAML language (every rule with a valid and an
 * invalid case, checked down to line and column), canonical JSON and its
 * hash, spec_from_json, spec_to_yaml, spec_compare, document byte ranges,
 * hostile input, and loading directories.
 *
 * Fixtures: tests/unit/data/spec/. Run from the top of the tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/xalloc.h"
#include "spec/spec.h"
#include "tests/lib/testutil.h"

#define DATA "tests/unit/data/spec/"

/* Real public keys (made with ssh-keygen for these tests). */
#define KEY_ED25519 \
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9etSdVf5ineZh1ozmwvM0Q/o1GzxrqK3ng me@host"
#define KEY_ED25519_2 \
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBLf3hf5xcXkBhl+kM+rGmlcgO8Uawx4dQqJ4iZj6mWu other"
#define KEY_ECDSA                                                                                    \
	"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFrIG0Wx/OTMYtHY67" \
	"FTbt3JREXQBdx7hq08vRDacx7koNuIRZs4TPuKhBTA095Y5MQ/zsNhcdVZtoXObiep6+0= ec@host"
#define KEY_RSA                                                                                       \
	"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDyXWn3slcjmS9S1esdqjvmHSCeJ0Fp+/WgfPPxtkaIuaStJGC2nU"  \
	"TJh7Sxi8D8tm/kt8VBR766yhjYPHtTFUL626GyAk0vwl6JF+HrF2ehDa9IxnG0b4rYErg3srCpQZKWOIUsykJW7JQSl" \
	"uikp0seztQDhQIP6k+QT34Dzq7O1Q== rsa@host"

/* The smallest valid document, 7 lines; test cases append lines from line 8. */
#define HEAD                                                                                   \
	"apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: t\nspec:\n  kernel: {path: /k}\n" \
	"  rootfs: {image: /i}\n"
/* Without kernel (6 lines): cases add a kernel from line 7. */
#define HEAD_NO_KERNEL \
	"apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: t\nspec:\n  rootfs: {image: /i}\n"
/* Without rootfs (6 lines). */
#define HEAD_NO_ROOTFS \
	"apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: t\nspec:\n  kernel: {path: /k}\n"
/* Up to "metadata:" (3 lines): cases add metadata fields from line 4, then spec. */
#define HEAD_META "apiVersion: banger/v1\nkind: VM\nmetadata:\n"
#define TAIL_SPEC "spec:\n  kernel: {path: /k}\n  rootfs: {image: /i}\n"

static void parse(struct spec_set *set, const char *yaml)
{
	spec_set_init(set);
	spec_parse_buffer(set, "t.yaml", yaml, strlen(yaml));
}

static void dump_diags(const struct spec_set *set)
{
	for (size_t i = 0; i < set->n_diags; i++) {
		_cleanup_free_ char *s = spec_diag_format(&set->diags[i]);

		fprintf(stderr, "  diag: %s\n", s);
	}
}

/* A valid document with exactly one spec; returns a copy of it. */
static struct vm_spec *parse_ok(const char *yaml)
{
	struct spec_set set;
	struct vm_spec *s;

	parse(&set, yaml);
	if (set.n_diags != 0 || set.n_specs != 1) {
		dump_diags(&set);
		fail_msg("expected one valid spec, got %zu specs and %zu diagnostics in:\n%s",
			 set.n_specs, set.n_diags, yaml);
	}
	s = vm_spec_dup(set.specs[0]);
	spec_set_release(&set);
	return s;
}

/* Exactly one diagnostic, at line:col, containing 'needle'; and no spec. */
static void check_error(const char *yaml, unsigned line, unsigned col, const char *needle)
{
	struct spec_set set;

	parse(&set, yaml);
	if (set.n_diags != 1 || set.diags[0].line != line || set.diags[0].col != col ||
	    !strstr(set.diags[0].msg, needle)) {
		dump_diags(&set);
		fail_msg("expected one error at %u:%u containing \"%s\" in:\n%s", line, col, needle,
			 yaml);
	}
	assert_int_equal(set.n_specs, 0);
	assert_int_equal(set.n_failed_files, 1);
	assert_string_equal(set.failed_files[0], "t.yaml");
	spec_set_release(&set);
}

struct bad_case {
	const char *yaml;
	unsigned line, col;
	const char *needle;
};

/* Check every case, printing each mismatch, then fail if any did not match. */
static void check_bad_cases(const struct bad_case *c, size_t n)
{
	size_t wrong = 0;

	for (size_t i = 0; i < n; i++) {
		struct spec_set set;

		parse(&set, c[i].yaml);
		if (set.n_diags != 1 || set.diags[0].line != c[i].line ||
		    set.diags[0].col != c[i].col || !strstr(set.diags[0].msg, c[i].needle) ||
		    set.n_specs != 0 || set.n_failed_files != 1) {
			fprintf(stderr, "case %zu: expected one error at %u:%u containing \"%s\"\n",
				i, c[i].line, c[i].col, c[i].needle);
			dump_diags(&set);
			wrong++;
		}
		spec_set_release(&set);
	}
	if (wrong)
		fail_msg("%zu of %zu cases did not give the expected error", wrong, n);
}

static void check_good_cases(const char *const *yaml, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vm_spec_free(parse_ok(yaml[i]));
}

static char *load_fixture(const char *name, size_t *ret_len)
{
	_cleanup_free_ char *path = xasprintf(DATA "%s", name);
	struct bg_err err = { 0 };
	char *data = NULL;

	if (fs_read_file(path, SPEC_FILE_MAX, &data, ret_len, &err) < 0)
		fail_msg("%s", err.msg);
	return data;
}

/* ---- documents, defaults, top level ------------------------------------------- */

static void test_minimal_defaults(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *s = parse_ok(HEAD);

	(void)state;
	assert_string_equal(s->name, "t");
	assert_int_equal(s->state, VM_DESIRED_RUNNING);
	assert_int_equal(s->vmm, VMM_AUTO);
	assert_int_equal(s->vcpus, 1);
	assert_int_equal(s->memory_mib, 256);
	assert_string_equal(s->kernel_path, "/k");
	assert_null(s->kernel_initrd);
	assert_null(s->kernel_args);
	assert_string_equal(s->rootfs_image, "/i");
	assert_int_equal(s->rootfs_size_mib, 0);
	assert_int_equal(s->work_disk_mib, 0);
	assert_null(s->ip);
	assert_string_equal(s->ssh_user, "root");
	assert_int_equal(s->n_ssh_keys, 0);
	assert_int_equal(s->n_labels, 0);
	assert_int_equal(s->restart_policy, RESTART_ALWAYS);
	assert_string_equal(s->source_file, "t.yaml");
	assert_int_equal(s->source_line, 1);
	assert_int_equal(s->name_line, 4);
	assert_int_equal(s->name_col, 9);
}

static void test_full_fixture(void **state)
{
	_cleanup_free_ char *data = NULL;
	struct spec_set set;
	const struct vm_spec *s;
	size_t len;

	(void)state;
	data = load_fixture("full.yaml", &len);
	spec_set_init(&set);
	assert_int_equal(spec_parse_buffer(&set, "full.yaml", data, len), 0);
	assert_int_equal(set.n_specs, 1);
	s = set.specs[0];
	assert_string_equal(s->name, "web-1");
	assert_int_equal(s->n_labels, 3);
	/* Sorted by key. */
	assert_string_equal(s->labels[0].key, "empty");
	assert_string_equal(s->labels[0].value, "");
	assert_string_equal(s->labels[1].key, "example.com/tier");
	assert_string_equal(s->labels[1].value, "frontend");
	assert_string_equal(s->labels[2].key, "team");
	assert_string_equal(s->labels[2].value, "infra");
	assert_int_equal(s->state, VM_DESIRED_STOPPED);
	assert_int_equal(s->vmm, VMM_FIRECRACKER);
	assert_int_equal(s->vcpus, 2);
	assert_int_equal(s->memory_mib, 1024);
	assert_string_equal(s->kernel_path, "/var/lib/banger/kernels/vmlinux");
	assert_string_equal(s->kernel_initrd, "/var/lib/banger/kernels/initrd.gz");
	assert_string_equal(s->kernel_args, "console=ttyS0 quiet");
	assert_string_equal(s->rootfs_image, "/var/lib/banger/images/base.ext4");
	assert_int_equal(s->rootfs_size_mib, 2048);
	assert_int_equal(s->work_disk_mib, 512);
	assert_string_equal(s->ip, "172.30.0.10");
	assert_string_equal(s->ssh_user, "admin");
	assert_int_equal(s->n_ssh_keys, 1);
	assert_string_equal(s->ssh_keys[0], KEY_ED25519);
	assert_int_equal(s->restart_policy, RESTART_ON_FAILURE);
	/* The document starts at its first token, after the leading comment. */
	assert_int_equal(s->source_line, 2);
	assert_int_equal(s->name_line, 5);
	assert_int_equal(s->name_col, 9);
	spec_set_release(&set);
}

static void test_top_level(void **state)
{
	static const char *const good[] = {
		HEAD,
		"\"apiVersion\": 'banger/v1'\n\"kind\": \"VM\"\nmetadata: {name: t}\n" TAIL_SPEC,
		"{apiVersion: banger/v1, kind: VM, metadata: {name: t}, spec: {kernel: {path: /k},"
		" rootfs: {image: /i}}}\n",
	};
	static const struct bad_case bad[] = {
		{ "apiVersion: banger/v2\nkind: VM\nmetadata: {name: t}\n" TAIL_SPEC, 1, 13,
		  "apiVersion: must be 'banger/v1', got 'banger/v2'" },
		{ "kind: VM\nmetadata: {name: t}\n" TAIL_SPEC, 1, 1,
		  "missing required field 'apiVersion'" },
		{ "apiVersion: banger/v1\nkind: Pod\nmetadata: {name: t}\n" TAIL_SPEC, 2, 7,
		  "kind: must be 'VM', got 'Pod'" },
		{ "apiVersion: banger/v1\nmetadata: {name: t}\n" TAIL_SPEC, 1, 1,
		  "missing required field 'kind'" },
		{ "apiVersion: banger/v1\nkind: VM\n" TAIL_SPEC, 1, 1,
		  "missing required field 'metadata'" },
		{ "apiVersion: banger/v1\nkind: VM\nmetadata: {name: t}\n", 1, 1,
		  "missing required field 'spec'" },
		{ "- apiVersion: banger/v1\n", 1, 1, "a VM document must be a mapping" },
		{ "just a string\n", 1, 1, "a VM document must be a mapping" },
		{ HEAD "colour: blue\n", 8, 1, "unknown field 'colour'" },
		{ HEAD "  memroyMiB: 512\n", 8, 3,
		  "unknown field 'spec.memroyMiB' (did you mean 'memoryMiB'?)" },
		{ HEAD "  kernel: {path: /k2}\n", 8, 3,
		  "duplicate key 'spec.kernel' (first at line 6, column 3)" },
		{ HEAD "apiVersion: banger/v1\n", 8, 1,
		  "duplicate key 'apiVersion' (first at line 1, column 1)" },
		{ HEAD "? [a, b]\n: c\n", 8, 3, "mapping keys must be strings, got a sequence" },
		{ "apiVersion: banger/v1\nkind: VM\nmetadata: [name, t]\n" TAIL_SPEC, 3, 11,
		  "metadata: expected a mapping, got a sequence" },
		{ "apiVersion: banger/v1\nkind: VM\nmetadata:\n" TAIL_SPEC, 3, 10,
		  "metadata: expected a mapping, got null" },
		{ "apiVersion: [banger/v1]\nkind: VM\nmetadata: {name: t}\n" TAIL_SPEC, 1, 13,
		  "apiVersion: expected a string, got a sequence" },
	};

	(void)state;
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

/* ---- metadata ----------------------------------------------------------------- */

static void test_metadata_name(void **state)
{
	static const char *const good[] = {
		HEAD_META "  name: a\n" TAIL_SPEC,
		HEAD_META "  name: web-1\n" TAIL_SPEC,
		HEAD_META "  name: \"0a-b\"\n" TAIL_SPEC,
		/* 63 chars */
		HEAD_META
		"  name: a123456789a123456789a123456789a123456789a123456789a123456789abc\n" TAIL_SPEC,
	};
	static const struct bad_case bad[] = {
		{ HEAD_META "  labels: {}\n" TAIL_SPEC, 3, 1,
		  "missing required field 'metadata.name'" },
		{ HEAD_META "  name: Web\n" TAIL_SPEC, 4, 9,
		  "metadata.name: 'Web' is not a valid name" },
		{ HEAD_META "  name: web_1\n" TAIL_SPEC, 4, 9, "is not a valid name" },
		{ HEAD_META "  name: -web\n" TAIL_SPEC, 4, 9, "is not a valid name" },
		{ HEAD_META "  name: web-\n" TAIL_SPEC, 4, 9, "is not a valid name" },
		{ HEAD_META "  name: \"\"\n" TAIL_SPEC, 4, 9, "is not a valid name" },
		{ HEAD_META "  name: web.1\n" TAIL_SPEC, 4, 9, "is not a valid name" },
		/* 64 chars */
		{ HEAD_META
		  "  name: a123456789a123456789a123456789a123456789a123456789a123456789abcd\n" TAIL_SPEC,
		  4, 9, "is not a valid name" },
		{ HEAD_META "  name: 12\n" TAIL_SPEC, 4, 9,
		  "metadata.name: expected a string, got an integer '12' (quote it)" },
		{ HEAD_META "  name: true\n" TAIL_SPEC, 4, 9, "expected a string, got a boolean" },
		{ HEAD_META "  name:\n" TAIL_SPEC, 4, 8,
		  "metadata.name: expected a string, got null" },
		{ HEAD_META "  name: {a: b}\n" TAIL_SPEC, 4, 9,
		  "expected a string, got a mapping" },
		{ HEAD_META "  name: t\n  nmae: t\n" TAIL_SPEC, 5, 3,
		  "unknown field 'metadata.nmae' (did you mean 'name'?)" },
	};

	(void)state;
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

static void test_metadata_labels(void **state)
{
	static const char *const good[] = {
		HEAD_META "  name: t\n  labels: {}\n" TAIL_SPEC,
		HEAD_META "  name: t\n  labels: {a: b, A.b_c-d: X.y_z-9, k: \"\"}\n" TAIL_SPEC,
		HEAD_META
		"  name: t\n  labels: {example.com/team: infra, a-b.c/x: \"1\"}\n" TAIL_SPEC,
		HEAD_META
		"  name: t\n  labels:\n    k: a123456789a123456789a123456789a123456789a123456789a123456789abc\n" TAIL_SPEC,
	};
	static const struct bad_case bad[] = {
		{ HEAD_META "  name: t\n  labels: {-a: b}\n" TAIL_SPEC, 5, 12,
		  "metadata.labels: invalid key '-a'" },
		{ HEAD_META "  name: t\n  labels: {\"a b\": b}\n" TAIL_SPEC, 5, 12,
		  "invalid key 'a b'" },
		{ HEAD_META "  name: t\n  labels: {Example.com/a: b}\n" TAIL_SPEC, 5, 12,
		  "invalid key 'Example.com/a'" },
		{ HEAD_META "  name: t\n  labels: {a/b/c: b}\n" TAIL_SPEC, 5, 12, "invalid key" },
		{ HEAD_META "  name: t\n  labels: {/a: b}\n" TAIL_SPEC, 5, 12, "invalid key" },
		{ HEAD_META "  name: t\n  labels: {a: b c}\n" TAIL_SPEC, 5, 15,
		  "metadata.labels.a: invalid value 'b c'" },
		{ HEAD_META "  name: t\n  labels: {a: -b}\n" TAIL_SPEC, 5, 15,
		  "invalid value '-b'" },
		{ HEAD_META
		  "  name: t\n  labels:\n    k: a123456789a123456789a123456789a123456789a123456789a123456789abcd\n" TAIL_SPEC,
		  6, 8, "metadata.labels.k: invalid value" },
		{ HEAD_META "  name: t\n  labels: {a: 1}\n" TAIL_SPEC, 5, 15,
		  "metadata.labels.a: expected a string, got an integer '1' (quote it)" },
		{ HEAD_META "  name: t\n  labels: {a: }\n" TAIL_SPEC, 5, 15,
		  "metadata.labels.a: expected a string, got null" },
		{ HEAD_META "  name: t\n  labels: {a: [x]}\n" TAIL_SPEC, 5, 15,
		  "expected a string, got a sequence" },
		{ HEAD_META "  name: t\n  labels:\n    b: x\n    a: y\n    b: z\n" TAIL_SPEC, 8, 5,
		  "duplicate key 'metadata.labels.b' (first at line 6, column 5)" },
		{ HEAD_META "  name: t\n  labels: [a]\n" TAIL_SPEC, 5, 11,
		  "metadata.labels: expected a mapping, got a sequence" },
	};

	(void)state;
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

/* ---- spec scalars --------------------------------------------------------------- */

static void test_state_vmm_restart(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *s =
		parse_ok(HEAD "  state: stopped\n  vmm: qemu\n  restartPolicy: never\n");
	static const char *const good[] = {
		HEAD "  state: running\n",
		HEAD "  vmm: auto\n",
		HEAD "  vmm: \"firecracker\"\n",
		HEAD "  restartPolicy: always\n",
		HEAD "  restartPolicy: on-failure\n",
	};
	static const struct bad_case bad[] = {
		{ HEAD "  state: paused\n", 8, 10,
		  "spec.state: must be one of running, stopped; got 'paused'" },
		{ HEAD "  state: Running\n", 8, 10, "spec.state: must be one of" },
		{ HEAD "  vmm: kvm\n", 8, 8,
		  "spec.vmm: must be one of auto, firecracker, qemu; got 'kvm'" },
		{ HEAD "  restartPolicy: sometimes\n", 8, 18,
		  "spec.restartPolicy: must be one of always, on-failure, never; got 'sometimes'" },
		{ HEAD "  restartPolicy: true\n", 8, 18,
		  "spec.restartPolicy: expected a string, got a boolean" },
		{ HEAD "  state:\n", 8, 9, "spec.state: expected a string, got null" },
	};

	(void)state;
	assert_int_equal(s->state, VM_DESIRED_STOPPED);
	assert_int_equal(s->vmm, VMM_QEMU);
	assert_int_equal(s->restart_policy, RESTART_NEVER);
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

static void test_vcpus_memory(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *s =
		parse_ok(HEAD "  vcpus: 32\n  memoryMiB: 65536\n");
	static const char *const good[] = {
		HEAD "  vcpus: 1\n  memoryMiB: 64\n",
		HEAD "  vcpus: 3\n",
		HEAD "  vcpus: 3\n  vmm: qemu\n",
		HEAD "  vmm: firecracker\n  vcpus: 1\n",
		HEAD "  vmm: firecracker\n  vcpus: 2\n",
		HEAD "  vmm: firecracker\n  vcpus: 32\n",
		HEAD "  vcpus: 0x4\n",
	};
	static const struct bad_case bad[] = {
		{ HEAD "  vcpus: 0\n", 8, 10, "spec.vcpus: must be between 1 and 32, got 0" },
		{ HEAD "  vcpus: 33\n", 8, 10, "spec.vcpus: must be between 1 and 32, got 33" },
		{ HEAD "  vcpus: 40\n", 8, 10, "spec.vcpus: must be between 1 and 32, got 40" },
		{ HEAD "  vcpus: -1\n", 8, 10, "must be between 1 and 32, got -1" },
		{ HEAD "  vcpus: 99999999999999999999999\n", 8, 10,
		  "must be between 1 and 32, got 99999999999999999999999" },
		{ HEAD "  vcpus: \"2\"\n", 8, 10,
		  "spec.vcpus: expected an integer, got the string '2'" },
		{ HEAD "  vcpus: '2'\n", 8, 10, "expected an integer, got the string '2'" },
		{ HEAD "  vcpus: 1.5\n", 8, 10,
		  "spec.vcpus: expected an integer, got a number '1.5'" },
		{ HEAD "  vcpus: two\n", 8, 10, "expected an integer, got the string 'two'" },
		{ HEAD "  vcpus:\n", 8, 9, "spec.vcpus: expected an integer, got null" },
		{ HEAD "  vcpus: [1]\n", 8, 10, "expected an integer, got a sequence" },
		{ HEAD "  vcpus: 1_0\n", 8, 10, "expected an integer" },
		{ HEAD "  vmm: firecracker\n  vcpus: 3\n", 9, 10,
		  "spec.vcpus: must be 1 or an even number with vmm firecracker, got 3" },
		{ HEAD "  vcpus: 31\n  vmm: firecracker\n", 8, 10, "must be 1 or an even number" },
		{ HEAD "  memoryMiB: 63\n", 8, 14,
		  "spec.memoryMiB: must be between 64 and 65536, got 63" },
		{ HEAD "  memoryMiB: 65537\n", 8, 14, "must be between 64 and 65536, got 65537" },
		{ HEAD "  memoryMiB: 256M\n", 8, 14, "expected an integer, got the string '256M'" },
	};

	(void)state;
	assert_int_equal(s->vcpus, 32);
	assert_int_equal(s->memory_mib, 65536);
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

static char *long_path(size_t len)
{
	char *p = xmalloc(len + 1);

	memset(p, 'a', len);
	p[0] = '/';
	p[len] = '\0';
	return p;
}

static void test_kernel(void **state)
{
	_cleanup_free_ char *p4095 = long_path(4095), *p4096 = long_path(4096);
	_cleanup_free_ char *ok_long = xasprintf(HEAD_NO_KERNEL "  kernel: {path: %s}\n", p4095);
	_cleanup_free_ char *bad_long = xasprintf(HEAD_NO_KERNEL "  kernel: {path: %s}\n", p4096);
	_cleanup_free_ char *args1024 = xmalloc(1025), *args1025 = xmalloc(1026);
	_cleanup_free_ char *ok_args = NULL, *bad_args = NULL;
	_cleanup_(vm_spec_freep) struct vm_spec *s = NULL;

	(void)state;
	memset(args1024, 'x', 1024);
	args1024[1024] = '\0';
	memset(args1025, 'x', 1025);
	args1025[1025] = '\0';
	ok_args = xasprintf(HEAD_NO_KERNEL "  kernel: {path: /k, args: %s}\n", args1024);
	bad_args = xasprintf(HEAD_NO_KERNEL "  kernel: {path: /k, args: %s}\n", args1025);

	s = parse_ok(HEAD_NO_KERNEL "  kernel:\n    path: /boot/vmlinuz\n    initrd: /boot/initrd\n"
				    "    args: 'console=ttyS0 reboot=k  panic=1'\n");
	assert_string_equal(s->kernel_path, "/boot/vmlinuz");
	assert_string_equal(s->kernel_initrd, "/boot/initrd");
	assert_string_equal(s->kernel_args, "console=ttyS0 reboot=k  panic=1");
	vm_spec_free(parse_ok(ok_long));
	vm_spec_free(parse_ok(ok_args));
	{
		/* An empty args string is the same as none. */
		_cleanup_(vm_spec_freep) struct vm_spec *e =
			parse_ok(HEAD_NO_KERNEL "  kernel: {path: /k, args: \"\"}\n");

		assert_null(e->kernel_args);
	}
	{
		const struct bad_case bad[] = {
			{ HEAD_NO_KERNEL, 5, 1, "missing required field 'spec.kernel'" },
			{ HEAD_NO_KERNEL "  kernel: {initrd: /i}\n", 7, 3,
			  "missing required field 'spec.kernel.path'" },
			{ HEAD_NO_KERNEL "  kernel: {path: vmlinux}\n", 7, 18,
			  "spec.kernel.path: must be an absolute path, got 'vmlinux'" },
			{ HEAD_NO_KERNEL "  kernel: {path: \"\"}\n", 7, 18,
			  "must be an absolute path, got ''" },
			{ HEAD_NO_KERNEL "  kernel: {path: \"/a\\nb\"}\n", 7, 18,
			  "spec.kernel.path: must not contain a line break" },
			{ HEAD_NO_KERNEL "  kernel: {path: \"/a\\x01b\"}\n", 7, 18,
			  "spec.kernel.path: must not contain control characters" },
			{ HEAD_NO_KERNEL "  kernel: {path: \"/a\\0b\"}\n", 7, 18,
			  "must not contain control characters" },
			{ bad_long, 7, 18,
			  "spec.kernel.path: must be at most 4095 bytes long, got 4096" },
			{ HEAD_NO_KERNEL "  kernel: {path: /k, initrd: initrd.gz}\n", 7, 30,
			  "spec.kernel.initrd: must be an absolute path, got 'initrd.gz'" },
			{ HEAD_NO_KERNEL "  kernel: {path: /k, initrd: }\n", 7, 30,
			  "spec.kernel.initrd: expected a string, got null" },
			{ HEAD_NO_KERNEL "  kernel: {path: /k, args: \"a\\nb\"}\n", 7, 28,
			  "spec.kernel.args: must not contain a line break" },
			{ HEAD_NO_KERNEL "  kernel:\n    path: /k\n    args: |\n      a\n      b\n",
			  9, 11, "spec.kernel.args: must not contain a line break" },
			{ bad_args, 7, 28,
			  "spec.kernel.args: must be at most 1024 bytes long, got 1025" },
			{ HEAD_NO_KERNEL "  kernel: /boot/vmlinux\n", 7, 11,
			  "spec.kernel: expected a mapping, got the string '/boot/vmlinux'" },
			{ HEAD_NO_KERNEL "  kernel: {path: /k, cmdline: x}\n", 7, 22,
			  "unknown field 'spec.kernel.cmdline'" },
		};

		check_bad_cases(bad, ARRAY_SIZE(bad));
	}
}

static void test_rootfs_workdisk(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *s =
		parse_ok(HEAD_NO_ROOTFS
			 "  rootfs: {image: /img, sizeMiB: 1048576}\n  workDisk: {sizeMiB: 1}\n");
	static const char *const good[] = {
		HEAD_NO_ROOTFS "  rootfs:\n    image: /images/base.ext4\n    sizeMiB: 1\n",
		HEAD "  workDisk:\n    sizeMiB: 1048576\n",
	};
	static const struct bad_case bad[] = {
		{ HEAD_NO_ROOTFS, 5, 1, "missing required field 'spec.rootfs'" },
		{ HEAD_NO_ROOTFS "  rootfs: {sizeMiB: 10}\n", 7, 3,
		  "missing required field 'spec.rootfs.image'" },
		{ HEAD_NO_ROOTFS "  rootfs: {image: base.ext4}\n", 7, 19,
		  "spec.rootfs.image: must be an absolute path, got 'base.ext4'" },
		{ HEAD_NO_ROOTFS "  rootfs: {image: /i, sizeMiB: 0}\n", 7, 32,
		  "spec.rootfs.sizeMiB: must be between 1 and 1048576, got 0" },
		{ HEAD_NO_ROOTFS "  rootfs: {image: /i, sizeMiB: 1048577}\n", 7, 32,
		  "spec.rootfs.sizeMiB: must be between 1 and 1048576, got 1048577" },
		{ HEAD_NO_ROOTFS "  rootfs: {image: /i, sizeMiB: 2G}\n", 7, 32,
		  "spec.rootfs.sizeMiB: expected an integer, got the string '2G'" },
		{ HEAD "  workDisk: {}\n", 8, 3, "missing required field 'spec.workDisk.sizeMiB'" },
		{ HEAD "  workDisk: {sizeMiB: 0}\n", 8, 23,
		  "spec.workDisk.sizeMiB: must be between 1 and 1048576, got 0" },
		{ HEAD "  workDisk: 512\n", 8, 13,
		  "spec.workDisk: expected a mapping, got an integer '512'" },
	};

	(void)state;
	assert_string_equal(s->rootfs_image, "/img");
	assert_int_equal(s->rootfs_size_mib, 1048576);
	assert_int_equal(s->work_disk_mib, 1);
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

static void test_network(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *s = parse_ok(HEAD "  network: {ip: 10.0.0.2}\n");
	static const char *const good[] = {
		HEAD "  network: {}\n",
		HEAD "  network:\n    ip: \"172.30.0.10\"\n",
		HEAD "  network: {ip: 192.168.255.254}\n",
	};
	static const struct bad_case bad[] = {
		{ HEAD "  network: {ip: 1.2.3}\n", 8, 17,
		  "spec.network.ip: '1.2.3' is not an IPv4 address" },
		{ HEAD "  network: {ip: 300.1.1.1}\n", 8, 17,
		  "'300.1.1.1' is not an IPv4 address" },
		{ HEAD "  network: {ip: 010.1.1.1}\n", 8, 17, "is not an IPv4 address" },
		{ HEAD "  network: {ip: \"1.2.3.4 \"}\n", 8, 17, "is not an IPv4 address" },
		{ HEAD "  network: {ip: \"fd00::1\"}\n", 8, 17, "is not an IPv4 address" },
		{ HEAD "  network: {ip: \"1.2.3.4\\0\"}\n", 8, 17, "is not an IPv4 address" },
		{ HEAD "  network: {ip: 10.0.0.0/24}\n", 8, 17, "is not an IPv4 address" },
		{ HEAD "  network: {ip: 127.0.0.1}\n", 8, 17, "is not a usable unicast address" },
		{ HEAD "  network: {ip: 0.0.0.0}\n", 8, 17, "is not a usable unicast address" },
		{ HEAD "  network: {ip: 224.0.0.1}\n", 8, 17, "is not a usable unicast address" },
		{ HEAD "  network: {ip: 255.255.255.255}\n", 8, 17,
		  "is not a usable unicast address" },
		{ HEAD "  network: {ip: 10}\n", 8, 17,
		  "spec.network.ip: expected a string, got an integer '10' (quote it)" },
		{ HEAD "  network: {address: 10.0.0.2}\n", 8, 13,
		  "unknown field 'spec.network.address'" },
	};

	(void)state;
	assert_string_equal(s->ip, "10.0.0.2");
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

/* spec.network.egress and spec.network.ports: defaults, every error, JSON and YAML, compare. */
static void test_network_egress_ports(void **state)
{
	static const char *const yaml =
		HEAD "  network:\n    egress: none\n    ports:\n"
		     "      - {hostPort: 8080, guestPort: 80}\n"
		     "      - {hostPort: 5353, guestPort: 53, protocol: udp, hostIP: 0.0.0.0}\n"
		     "      - {hostPort: 8080, guestPort: 80, hostIP: 192.168.1.5}\n";
	_cleanup_(vm_spec_freep) struct vm_spec *s = parse_ok(yaml);
	_cleanup_(vm_spec_freep) struct vm_spec *plain = parse_ok(HEAD);
	_cleanup_(vm_spec_freep) struct vm_spec *back = NULL;
	_cleanup_free_ char *json = spec_to_json(s), *json2 = NULL, *plain_json = NULL;
	_cleanup_free_ char *out = spec_to_yaml(s);
	struct bg_err err = { 0 };
	static const struct bad_case bad[] = {
		{ HEAD "  network: {egress: open}\n", 8, 21,
		  "spec.network.egress: must be one of nat, none; got 'open'" },
		{ HEAD "  network: {ports: {hostPort: 1}}\n", 8, 20,
		  "spec.network.ports: expected a sequence, got a mapping" },
		{ HEAD "  network: {ports: [8080]}\n", 8, 21,
		  "spec.network.ports[0]: expected a mapping (hostPort, guestPort, protocol, "
		  "hostIP), got an integer '8080'" },
		{ HEAD "  network: {ports: [{guestPort: 80}]}\n", 8, 21,
		  "spec.network.ports[0]: missing required field 'hostPort'" },
		{ HEAD "  network: {ports: [{hostPort: 80}]}\n", 8, 21,
		  "spec.network.ports[0]: missing required field 'guestPort'" },
		{ HEAD "  network: {ports: [{hostPort: 0, guestPort: 80}]}\n", 8, 32,
		  "spec.network.ports[0].hostPort: must be between 1 and 65535, got 0" },
		{ HEAD "  network: {ports: [{hostPort: 1, guestPort: 65536}]}\n", 8, 46,
		  "spec.network.ports[0].guestPort: must be between 1 and 65535, got 65536" },
		{ HEAD "  network: {ports: [{hostPort: \"80\", guestPort: 80}]}\n", 8, 32,
		  "spec.network.ports[0].hostPort: expected an integer, got the string '80'" },
		{ HEAD "  network: {ports: [{hostPort: 1, guestPort: 2, protocol: sctp}]}\n", 8, 59,
		  "spec.network.ports[0].protocol: must be one of tcp, udp; got 'sctp'" },
		{ HEAD "  network: {ports: [{hostPort: 1, guestPort: 2, hostIP: localhost}]}\n", 8,
		  57, "spec.network.ports[0].hostIP: 'localhost' is not an IPv4 address" },
		{ HEAD "  network: {ports: [{hostPort: 1, guestPort: 2, hostIP: 224.0.0.9}]}\n", 8,
		  57, "'224.0.0.9' is not a unicast address" },
		{ HEAD "  network: {ports: [{hostPort: 1, guestPort: 2, host: 1.2.3.4}]}\n", 8, 49,
		  "unknown field 'spec.network.ports[0].host' (did you mean 'hostIP'?)" },
		{ HEAD "  network: {ports: [{hostPort: 1, guestPort: 2, hostPort: 3}]}\n", 8, 49,
		  "duplicate key 'spec.network.ports[0].hostPort'" },
		{ HEAD "  network:\n    ports:\n      - {hostPort: 1, guestPort: 2}\n"
		       "      - {hostPort: 1, guestPort: 3, hostIP: 0.0.0.0}\n",
		  11, 9,
		  "spec.network.ports: 0.0.0.0:1/tcp is forwarded twice (first at line 10, column "
		  "9)" },
	};
	struct buf many;

	(void)state;
	assert_int_equal(s->egress, SPEC_EGRESS_NONE);
	assert_int_equal(s->n_ports, 3);
	assert_string_equal(s->ports[0].host_ip, "127.0.0.1");
	assert_int_equal(s->ports[0].host_port, 8080);
	assert_int_equal(s->ports[0].guest_port, 80);
	assert_int_equal(s->ports[0].protocol, SPEC_PROTO_TCP);
	assert_string_equal(s->ports[1].host_ip, "0.0.0.0");
	assert_int_equal(s->ports[1].protocol, SPEC_PROTO_UDP);
	assert_string_equal(s->ports[2].host_ip, "192.168.1.5");
	/* Unset: the daemon decides, and the canonical form (so the hash) is as before. */
	assert_int_equal(plain->egress, SPEC_EGRESS_DEFAULT);
	assert_int_equal(plain->n_ports, 0);
	plain_json = spec_to_json(plain);
	assert_null(strstr(plain_json, "network"));
	/* JSON round trip and YAML output read back give the same spec. */
	assert_non_null(strstr(json, "\"egress\":\"none\""));
	assert_int_equal(spec_from_json(json, &back, &err), 0);
	json2 = spec_to_json(back);
	assert_string_equal(json, json2);
	{
		_cleanup_(vm_spec_freep) struct vm_spec *again = parse_ok(out);

		assert_int_equal(spec_compare(s, again), SPEC_SAME);
	}
	/* Egress and forwards are changed live; the rest of network still reboots. */
	assert_int_equal(spec_compare(plain, s), SPEC_UPDATE);
	back->ports[0].guest_port = 81;
	assert_int_equal(spec_compare(s, back), SPEC_UPDATE);
	back->ports[0].guest_port = 80;
	back->egress = SPEC_EGRESS_NAT;
	assert_int_equal(spec_compare(s, back), SPEC_UPDATE);
	check_bad_cases(bad, ARRAY_SIZE(bad));
	/* At most SPEC_PORTS_MAX forwards. */
	buf_init(&many);
	buf_adds(&many, HEAD "  network:\n    ports:\n");
	for (int i = 0; i <= SPEC_PORTS_MAX; i++)
		buf_addf(&many, "      - {hostPort: %d, guestPort: 80}\n", 1000 + i);
	check_error(many.data, 10 + SPEC_PORTS_MAX, 9, "spec.network.ports: at most 64 forwards");
	buf_release(&many);
}

static void test_ssh(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *s =
		parse_ok(HEAD "  ssh:\n    user: _svc-1\n    authorizedKeys:\n      - " KEY_ED25519
			      "\n      - " KEY_ECDSA "\n      - " KEY_RSA "\n");
	static const char *const good[] = {
		HEAD "  ssh: {}\n",
		HEAD "  ssh: {user: root, authorizedKeys: []}\n",
		HEAD "  ssh: {user: abcdefghijklmnopqrstuvwxyz012345}\n",
		HEAD "  ssh: {authorizedKeys: [\"ssh-ed25519 "
		     "AAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9etSdVf5ineZh1ozmwvM0Q/o1GzxrqK3ng\"]}\n",
		HEAD
		"  ssh: {authorizedKeys: [\"ssh-ed25519\tAAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9etSdVf5i"
		"neZh1ozmwvM0Q/o1GzxrqK3ng a comment with spaces\"]}\n",
	};
	static const struct bad_case bad[] = {
		{ HEAD "  ssh: {user: Root}\n", 8, 15,
		  "spec.ssh.user: 'Root' is not a valid user name" },
		{ HEAD "  ssh: {user: 1abc}\n", 8, 15, "is not a valid user name" },
		{ HEAD "  ssh: {user: -abc}\n", 8, 15, "is not a valid user name" },
		{ HEAD "  ssh: {user: \"a b\"}\n", 8, 15, "is not a valid user name" },
		{ HEAD "  ssh: {user: abcdefghijklmnopqrstuvwxyz0123456}\n", 8, 15,
		  "is not a valid user name" },
		{ HEAD "  ssh: {authorizedKeys: [foo]}\n", 8, 26,
		  "spec.ssh.authorizedKeys[0]: expected '<key type> <base64 key> [comment]'" },
		{ HEAD "  ssh:\n    authorizedKeys:\n      - " KEY_ED25519
		       "\n      - ssh-dss AAAA x\n",
		  11, 9, "spec.ssh.authorizedKeys[1]: unknown key type 'ssh-dss'" },
		{ HEAD "  ssh: {authorizedKeys: [\"ssh-ed25519 AAAA*AAA x\"]}\n", 8, 26,
		  "spec.ssh.authorizedKeys[0]: key data is not valid base64" },
		{ HEAD
		  "  ssh: {authorizedKeys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9\"]}\n",
		  8, 26, "key data is not valid base64" },
		{ HEAD "  ssh: {authorizedKeys: [\"ssh-rsa "
		       "AAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9etSdVf5ineZh1ozmwvM0Q/o1GzxrqK3ng\"]}\n",
		  8, 26, "spec.ssh.authorizedKeys[0]: key data is not a 'ssh-rsa' public key" },
		{ HEAD "  ssh: {authorizedKeys: [\"" KEY_ED25519 "\\nssh-ed25519 AAAA\"]}\n", 8, 26,
		  "spec.ssh.authorizedKeys[0]: must not contain a line break" },
		{ HEAD "  ssh: {authorizedKeys: [1]}\n", 8, 26,
		  "spec.ssh.authorizedKeys[0]: expected a string, got an integer '1' (quote it)" },
		{ HEAD "  ssh: {authorizedKeys: [[a]]}\n", 8, 26,
		  "spec.ssh.authorizedKeys[0]: expected a string, got a sequence" },
		{ HEAD "  ssh: {authorizedKeys: \"" KEY_ED25519 "\"}\n", 8, 25,
		  "spec.ssh.authorizedKeys: expected a sequence, got the string 'ssh-ed25519" },
		{ HEAD "  ssh: {authorizedKeys: }\n", 8, 25,
		  "spec.ssh.authorizedKeys: expected a sequence, got null" },
	};

	(void)state;
	assert_string_equal(s->ssh_user, "_svc-1");
	assert_int_equal(s->n_ssh_keys, 3);
	assert_string_equal(s->ssh_keys[0], KEY_ED25519);
	assert_string_equal(s->ssh_keys[1], KEY_ECDSA);
	assert_string_equal(s->ssh_keys[2], KEY_RSA);
	check_good_cases(good, ARRAY_SIZE(good));
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

/* ---- several errors, several documents, syntax errors --------------------------- */

static void expect_diag(const struct spec_set *set, size_t i, unsigned line, unsigned col,
			const char *needle)
{
	if (i >= set->n_diags || set->diags[i].line != line || set->diags[i].col != col ||
	    !strstr(set->diags[i].msg, needle)) {
		dump_diags(set);
		fail_msg("diagnostic %zu: expected %u:%u \"%s\"", i, line, col, needle);
	}
}

static void test_all_errors_reported(void **state)
{
	_cleanup_free_ char *data = NULL;
	struct spec_set set;
	size_t len;

	(void)state;
	data = load_fixture("three-errors.yaml", &len);
	spec_set_init(&set);
	assert_int_equal(spec_parse_buffer(&set, DATA "three-errors.yaml", data, len), 3);
	assert_int_equal(set.n_diags, 3);
	expect_diag(&set, 0, 6, 10, "spec.vcpus: must be between 1 and 32, got 40");
	expect_diag(&set, 1, 8, 18, "spec.kernel.path: must be an absolute path");
	expect_diag(&set, 2, 10, 18, "spec.restartPolicy: must be one of");
	assert_string_equal(set.diags[0].file, DATA "three-errors.yaml");
	assert_int_equal(set.n_specs, 0);
	assert_int_equal(set.n_failed_names, 1);
	assert_string_equal(set.failed_names[0], "three");
	spec_set_release(&set);
}

static void test_multi_document_errors(void **state)
{
	/* Errors in two documents; a valid third one is still not used; empty documents skipped. */
	static const char yaml[] = "---\n"
				   "---\n"
				   "# only a comment\n"
				   "---\n" HEAD "  vcpus: 0\n"
				   "---\n"
				   "apiVersion: banger/v1\n"
				   "kind: VM\n"
				   "metadata: {name: second}\n"
				   "spec: {kernel: {path: k}, rootfs: {image: /i}}\n"
				   "---\n"
				   "apiVersion: banger/v1\n"
				   "kind: VM\n"
				   "metadata: {name: third}\n" TAIL_SPEC "...\n";
	struct spec_set set;

	(void)state;
	parse(&set, yaml);
	assert_int_equal(set.n_diags, 2);
	expect_diag(&set, 0, 12, 10, "spec.vcpus: must be between");
	expect_diag(&set, 1, 17, 23, "spec.kernel.path: must be an absolute path");
	assert_int_equal(set.n_specs, 0);
	assert_int_equal(spec_set_finish(&set), 0);
	assert_int_equal(set.n_failed_names, 3);
	assert_string_equal(set.failed_names[0], "second");
	assert_string_equal(set.failed_names[1], "t");
	assert_string_equal(set.failed_names[2], "third");
	assert_true(spec_set_name_failed(&set, "third"));
	assert_false(spec_set_name_failed(&set, "fourth"));
	assert_true(spec_set_file_failed(&set, "t.yaml"));
	assert_false(spec_set_file_failed(&set, "u.yaml"));
	spec_set_release(&set);

	/* Without the errors all five documents give three specs. */
	parse(&set, "---\n---\n" HEAD "---\n# c\n---\napiVersion: banger/v1\nkind: VM\n"
		    "metadata: {name: a}\n" TAIL_SPEC);
	assert_int_equal(set.n_diags, 0);
	assert_int_equal(set.n_specs, 2);
	spec_set_release(&set);
}

static void test_empty_inputs(void **state)
{
	static const char *const empty[] = { "",	   "\n",      "# nothing\n",	"---\n",
					     "---\n...\n", "--- ~\n", "---\n---\n---\n" };
	struct spec_set set;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(empty); i++) {
		parse(&set, empty[i]);
		assert_int_equal(set.n_diags, 0);
		assert_int_equal(set.n_specs, 0);
		spec_set_release(&set);
	}
}

static void test_syntax_errors(void **state)
{
	struct spec_set set;

	(void)state;
	check_error(HEAD_NO_KERNEL "  kernel: {path: /k\n", 8, 1,
		    "did not find expected ',' or '}' (while parsing a flow mapping at line 7, "
		    "column 11)");
	check_error(
		"apiVersion: banger/v1\nkind: VM\n- x\n", 3, 1,
		"did not find expected key (while parsing a block mapping at line 1, column 1)");
	check_error(HEAD "  vcpus: \"2\n", 9, 1, "found unexpected end of stream");
	check_error(HEAD "\tvcpus: 2\n", 8, 1, "found character that cannot start any token");

	/* Semantic errors before a syntax error are reported too, in order. */
	parse(&set, HEAD "  vcpus: 99\n---\n" HEAD "  memoryMiB: 1\n  vmm: [qemu\n");
	assert_int_equal(set.n_diags, 4);
	expect_diag(&set, 0, 8, 10, "spec.vcpus: must be between 1 and 32, got 99");
	expect_diag(&set, 1, 17, 14, "spec.memoryMiB: must be between 64 and 65536, got 1");
	expect_diag(&set, 2, 18, 8, "spec.vmm: expected a string, got a sequence");
	expect_diag(&set, 3, 19, 1, "did not find expected ',' or ']'");
	/* Both documents' names are known even though the second never ended. */
	assert_int_equal(set.n_failed_names, 2);
	spec_set_release(&set);
}

/* ---- hostile input ---------------------------------------------------------------- */

static void test_anchors_aliases_tags(void **state)
{
	static const struct bad_case bad[] = {
		{ HEAD "  vcpus: &n 2\n", 8, 10, "anchors are not allowed (found '&n')" },
		{ HEAD "  ssh: &s {user: root}\n", 8, 8, "anchors are not allowed (found '&s')" },
		{ HEAD "  vcpus: *a\n", 8, 10, "aliases are not allowed (found '*a')" },
		{ "kind: !!str VM\napiVersion: banger/v1\nmetadata: {name: t}\n" TAIL_SPEC, 1, 7,
		  "tags are not allowed (found '!!str')" },
		{ HEAD "  ssh: !custom {user: root}\n", 8, 8,
		  "tags are not allowed (found '!custom')" },
		{ "--- !vm\n" HEAD, 1, 5, "tags are not allowed (found '!vm')" },
	};
	static const char laughs[] =
		"a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
		"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
		"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
		"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
		"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
		"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
		"g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
		"h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
		"i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
	struct spec_set set;

	(void)state;
	check_bad_cases(bad, ARRAY_SIZE(bad));

	/* An alias where a value is expected: one error, no type error on top. */
	parse(&set, "base: &b /k\n" HEAD_NO_KERNEL "  kernel: {path: *b}\n");
	assert_int_equal(set.n_diags, 3);
	expect_diag(&set, 0, 1, 1, "unknown field 'base'");
	expect_diag(&set, 1, 1, 7, "anchors are not allowed");
	expect_diag(&set, 2, 8, 18, "aliases are not allowed (found '*b')");
	spec_set_release(&set);

	/* Billion laughs: nothing is expanded; errors stop at the cap. */
	parse(&set, laughs);
	assert_true(set.n_diags > 9);
	assert_true(set.n_diags <= 101);
	expect_diag(&set, 0, 1, 1, "unknown field 'a'");
	assert_int_equal(set.n_specs, 0);
	spec_set_release(&set);
}

static void test_depth(void **state)
{
	struct buf b;
	struct spec_set set;

	(void)state;
	/* Root mapping (1) + 31 sequences = 32: allowed, only the unknown field is wrong. */
	buf_init(&b);
	buf_adds(&b, "x: ");
	for (int i = 0; i < 31; i++)
		buf_addch(&b, '[');
	for (int i = 0; i < 31; i++)
		buf_addch(&b, ']');
	buf_adds(&b, "\n");
	parse(&set, b.data);
	assert_int_equal(set.n_diags, 1 + 4);
	expect_diag(&set, 0, 1, 1, "unknown field 'x'");
	expect_diag(&set, 1, 1, 1, "missing required field 'apiVersion'");
	expect_diag(&set, 4, 1, 1, "missing required field 'spec'");
	spec_set_release(&set);

	/* 33 levels: one error at the 33rd, and parsing stops. */
	buf_reset(&b);
	buf_adds(&b, "x: ");
	for (int i = 0; i < 32; i++)
		buf_addch(&b, '[');
	for (int i = 0; i < 32; i++)
		buf_addch(&b, ']');
	buf_adds(&b, "\n");
	parse(&set, b.data);
	assert_int_equal(set.n_diags, 2);
	expect_diag(&set, 0, 1, 1, "unknown field 'x'");
	expect_diag(&set, 1, 1, 35, "nesting deeper than 32 levels");
	spec_set_release(&set);

	/* Very deep: libyaml would recurse (and grow) without our limit. */
	buf_reset(&b);
	buf_adds(&b, "x: ");
	for (int i = 0; i < 100000; i++)
		buf_addch(&b, '[');
	parse(&set, b.data);
	assert_int_equal(set.n_diags, 2);
	expect_diag(&set, 1, 1, 35, "nesting deeper than 32 levels");
	spec_set_release(&set);

	/* Block mappings count the same. */
	buf_reset(&b);
	for (int i = 0; i < 33; i++)
		buf_addf(&b, "%*sk:\n", 2 * i, "");
	parse(&set, b.data);
	assert_int_equal(set.n_diags, 2);
	expect_diag(&set, 1, 33, 65, "nesting deeper than 32 levels");
	spec_set_release(&set);
	buf_release(&b);
}

static void test_invalid_utf8(void **state)
{
	static const char bad1[] = "apiVersion: banger/v1\nkind: V\xffM\n";
	static const char bad2[] = "# caf\xc3\xa9\napiVersion: \xc3\xa9\xe2\x82\n";
	static const char nul[] = "apiVersion: banger/v1\nki\0nd: VM\n";
	struct spec_set set;

	(void)state;
	check_error(bad1, 2, 8, "invalid leading UTF-8 octet");
	check_error(bad2, 2, 15, "invalid trailing UTF-8 octet (#x0A)");
	check_error("apiVersion: \xe2\x82", 1, 13, "incomplete UTF-8 octet sequence");
	spec_set_init(&set);
	assert_int_equal(spec_parse_buffer(&set, "t.yaml", nul, sizeof(nul) - 1), 1);
	expect_diag(&set, 0, 2, 3, "control characters are not allowed");
	spec_set_release(&set);
	/* UTF-16 with a BOM is not UTF-8 either. */
	spec_set_init(&set);
	assert_int_equal(spec_parse_buffer(&set, "t.yaml",
					   "\xff\xfe"
					   "a\0:\0",
					   6),
			 1);
	expect_diag(&set, 0, 1, 1, "invalid leading UTF-8 octet");
	spec_set_release(&set);
	/* A UTF-8 BOM is fine. */
	vm_spec_free(parse_ok("\xef\xbb\xbf" HEAD));
	/* Non-ASCII text where the schema allows it. */
	vm_spec_free(parse_ok(HEAD_NO_KERNEL "  kernel: {path: /k, args: \"msg=h\xc3\xa9llo\"}\n"));
}

static void test_file_size_limit(void **state)
{
	_cleanup_free_ char *big = xmalloc(SPEC_FILE_MAX + 2);
	struct spec_set set;

	(void)state;
	/* Exactly the limit: a valid document padded with a comment. */
	memset(big, ' ', SPEC_FILE_MAX);
	memcpy(big, HEAD "#", strlen(HEAD "#"));
	big[SPEC_FILE_MAX - 1] = '\n';
	spec_set_init(&set);
	assert_int_equal(spec_parse_buffer(&set, "big.yaml", big, SPEC_FILE_MAX), 0);
	assert_int_equal(set.n_specs, 1);
	spec_set_release(&set);

	/* One byte more. */
	big[SPEC_FILE_MAX] = '\n';
	spec_set_init(&set);
	assert_int_equal(spec_parse_buffer(&set, "big.yaml", big, SPEC_FILE_MAX + 1), 1);
	assert_int_equal(set.n_specs, 0);
	assert_int_equal(set.diags[0].line, 0);
	assert_non_null(strstr(set.diags[0].msg, "larger than 1048576 bytes"));
	assert_true(spec_set_file_failed(&set, "big.yaml"));
	spec_set_release(&set);

	/* A huge scalar inside the limit is rejected by the field's own limit. */
	memset(big, 'a', SPEC_FILE_MAX);
	memcpy(big, HEAD_NO_KERNEL "  kernel: {path: /",
	       strlen(HEAD_NO_KERNEL "  kernel: {path: /"));
	memcpy(big + SPEC_FILE_MAX - 2, "}\n", 2);
	big[SPEC_FILE_MAX] = '\0';
	check_error(big, 7, 18, "must be at most 4095 bytes long");
}

static void test_too_many_errors(void **state)
{
	struct buf b;
	struct spec_set set;

	(void)state;
	buf_init(&b);
	buf_adds(&b, HEAD);
	for (int i = 0; i < 300; i++)
		buf_addf(&b, "x%d: 1\n", i);
	parse(&set, b.data);
	assert_int_equal(set.n_diags, 101);
	expect_diag(&set, 0, 8, 1, "unknown field 'x0'");
	assert_int_equal(set.diags[100].line, 0);
	assert_non_null(strstr(set.diags[100].msg, "too many errors"));
	assert_int_equal(set.n_failed_names, 1);
	spec_set_release(&set);
	buf_release(&b);
}

/* ---- provenance ------------------------------------------------------------------- */

static void expect_range(const struct vm_spec *s, const char *data, const char *from,
			 const char *to)
{
	size_t start = (size_t)(from - data), end = (size_t)(to - data);

	if (s->source_start != start || s->source_end != end)
		fail_msg("vm '%s': range [%zu, %zu), expected [%zu, %zu): \"%.*s\"", s->name,
			 s->source_start, s->source_end, start, end,
			 (int)(s->source_end - s->source_start), data + s->source_start);
}

static void test_document_ranges_exact(void **state)
{
	static const char data[] =
		"# l\xc3\xa9"
		"ading comment \xe2\x82\xac\n"
		"apiVersion: banger/v1 # \xf0\x9f\x98\x80\n"
		"kind: VM\n"
		"metadata: {name: one}\n" TAIL_SPEC "# trailing \xc3\xbc\n"
		"--- # two\n"
		"apiVersion: banger/v1\n"
		"kind: VM\n"
		"metadata: {name: two, labels: {a: b}} # \xc3\xa9\xc3\xa9\n" TAIL_SPEC "...\n"
		"# between\n"
		"---\n"
		"---\n"
		"{apiVersion: banger/v1, kind: VM, metadata: {name: three},\n"
		" spec: {kernel: {path: /k}, rootfs: {image: /\xc3\xa9}}}";
	const char *two, *two_end, *three;
	struct spec_set set;

	(void)state;
	two = strstr(data, "--- # two");
	two_end = strstr(data, "...\n") + 3;
	three = strstr(data, "---\n---\n") + 4;
	parse(&set, data);
	if (set.n_diags) {
		dump_diags(&set);
		fail();
	}
	assert_int_equal(set.n_specs, 3);
	/* One: from its first token (after the leading comment) up to the next '---'. */
	expect_range(set.specs[0], data, strstr(data, "apiVersion"), two);
	assert_int_equal(set.specs[0]->source_line, 2);
	/* Two: from its '---' to the end of its '...'. */
	expect_range(set.specs[1], data, two, two_end);
	assert_int_equal(set.specs[1]->source_line, 9);
	/* Three: from its '---' to the end of the file. */
	expect_range(set.specs[2], data, three, data + sizeof(data) - 1);
	assert_int_equal(set.specs[2]->source_line, 19);
	assert_string_equal(set.specs[2]->rootfs_image, "/\xc3\xa9");

	/* Each range, parsed alone, is the same document. */
	for (size_t i = 0; i < set.n_specs; i++) {
		const struct vm_spec *s = set.specs[i];
		struct spec_set one;
		char h1[SPEC_HASH_LEN + 1], h2[SPEC_HASH_LEN + 1];

		spec_set_init(&one);
		assert_int_equal(spec_parse_buffer(&one, "part", data + s->source_start,
						   s->source_end - s->source_start),
				 0);
		assert_int_equal(one.n_specs, 1);
		spec_hash(s, h1);
		spec_hash(one.specs[0], h2);
		assert_string_equal(h1, h2);
		spec_set_release(&one);
	}

	/* Replacing document two in place keeps the others intact. */
	{
		const struct vm_spec *s = set.specs[1];
		_cleanup_free_ char *yaml = NULL;
		struct vm_spec *c = vm_spec_dup(s);
		struct buf b;
		struct spec_set after;

		c->vcpus = 4;
		yaml = spec_to_yaml(c);
		buf_init(&b);
		buf_add(&b, data, s->source_start);
		buf_adds(&b, "---\n");
		buf_adds(&b, yaml);
		buf_add(&b, data + s->source_end, sizeof(data) - 1 - s->source_end);
		parse(&after, b.data);
		assert_int_equal(after.n_diags, 0);
		assert_int_equal(after.n_specs, 3);
		assert_int_equal(after.specs[1]->vcpus, 4);
		assert_int_equal(spec_compare(set.specs[0], after.specs[0]), SPEC_SAME);
		assert_int_equal(spec_compare(set.specs[2], after.specs[2]), SPEC_SAME);
		spec_set_release(&after);
		buf_release(&b);
		vm_spec_free(c);
	}
	spec_set_release(&set);
}

/* ---- canonical form ----------------------------------------------------------------- */

static struct vm_spec *load_one_fixture(const char *name)
{
	_cleanup_free_ char *data = NULL;
	size_t len;

	data = load_fixture(name, &len);
	return parse_ok(data);
}

static void test_canonical_json(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *min = parse_ok(HEAD);
	_cleanup_(vm_spec_freep) struct vm_spec *full = load_one_fixture("full.yaml");
	_cleanup_free_ char *j1 = spec_to_json(min), *j2 = spec_to_json(full);
	char hash[SPEC_HASH_LEN + 1];

	(void)state;
	assert_string_equal(j1, "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{"
				"\"name\":\"t\",\"labels\":{}},\"spec\":{\"state\":\"running\","
				"\"vmm\":\"auto\",\"vcpus\":1,\"memoryMiB\":256,\"kernel\":{"
				"\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"},\"ssh\":{\"user\":"
				"\"root\",\"authorizedKeys\":[]},\"restartPolicy\":\"always\"}}");
	assert_string_equal(
		j2,
		"{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"web-1\","
		"\"labels\":{\"empty\":\"\",\"example.com/tier\":\"frontend\",\"team\":"
		"\"infra\"}},\"spec\":{\"state\":\"stopped\",\"vmm\":\"firecracker\",\"vcpus\":"
		"2,\"memoryMiB\":1024,\"kernel\":{\"path\":\"/var/lib/banger/kernels/vmlinux\","
		"\"initrd\":\"/var/lib/banger/kernels/initrd.gz\",\"args\":\"console=ttyS0 "
		"quiet\"},\"rootfs\":{\"image\":\"/var/lib/banger/images/base.ext4\",\"sizeMiB\":"
		"2048},\"workDisk\":{\"sizeMiB\":512},\"network\":{\"ip\":\"172.30.0.10\"},"
		"\"ssh\":{\"user\":\"admin\",\"authorizedKeys\":[\"" KEY_ED25519 "\"]},"
		"\"restartPolicy\":\"on-failure\"}}");
	spec_hash(min, hash);
	assert_int_equal(strlen(hash), SPEC_HASH_LEN);
	assert_int_equal(strspn(hash, "0123456789abcdef"), SPEC_HASH_LEN);
}

static void test_hash_same_meaning(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *a = load_one_fixture("full.yaml");
	_cleanup_(vm_spec_freep) struct vm_spec *b = load_one_fixture("full-restyled.yaml");
	_cleanup_(vm_spec_freep) struct vm_spec *c = parse_ok(HEAD);
	_cleanup_(vm_spec_freep) struct vm_spec *d = parse_ok(
		"# defaults spelled out\nspec:\n  state: running\n  vmm: auto\n  vcpus: 1\n"
		"  memoryMiB: 256\n  ssh: {user: root, authorizedKeys: []}\n"
		"  restartPolicy: always\n  rootfs: {image: '/i'}\n"
		"  kernel: {path: \"/k\", args: \"\"}\n"
		"metadata: {labels: {}, name: t}\nkind: VM\napiVersion: banger/v1\n");
	char ha[SPEC_HASH_LEN + 1], hb[SPEC_HASH_LEN + 1], hc[SPEC_HASH_LEN + 1],
		hd[SPEC_HASH_LEN + 1];

	(void)state;
	spec_hash(a, ha);
	spec_hash(b, hb);
	spec_hash(c, hc);
	spec_hash(d, hd);
	assert_string_equal(ha, hb);
	assert_string_equal(hc, hd);
	assert_string_not_equal(ha, hc);
	/* Provenance is not part of it. */
	assert_int_not_equal(a->source_line, b->source_line);
}

/* One-field changes of full.yaml, and how spec_compare classifies each. */
struct mutation {
	const char *from, *to;
	enum spec_change change;
};

static const struct mutation mutations[] = {
	{ "name: web-1", "name: web-2", SPEC_REBOOT },
	{ "team: infra", "team: platform", SPEC_UPDATE },
	{ "    empty: \"\"\n", "", SPEC_UPDATE },
	{ "state: stopped", "state: running", SPEC_SAME },
	{ "vmm: firecracker", "vmm: qemu", SPEC_REBOOT },
	{ "vcpus: 2", "vcpus: 4", SPEC_REBOOT },
	{ "memoryMiB: 1024", "memoryMiB: 2048", SPEC_REBOOT },
	{ "path: /var/lib/banger/kernels/vmlinux", "path: /var/lib/banger/kernels/vmlinux2",
	  SPEC_REBOOT },
	{ "    initrd: /var/lib/banger/kernels/initrd.gz\n", "", SPEC_REBOOT },
	{ "console=ttyS0 quiet", "console=ttyS0", SPEC_REBOOT },
	{ "image: /var/lib/banger/images/base.ext4", "image: /var/lib/banger/images/b.ext4",
	  SPEC_REBOOT },
	{ "    sizeMiB: 2048\n", "", SPEC_REBOOT },
	{ "    sizeMiB: 512", "    sizeMiB: 513", SPEC_REBOOT },
	{ "  workDisk:\n    sizeMiB: 512\n", "", SPEC_REBOOT },
	{ "ip: 172.30.0.10", "ip: 172.30.0.11", SPEC_REBOOT },
	{ "  network:\n    ip: 172.30.0.10\n", "", SPEC_REBOOT },
	{ "user: admin", "user: root", SPEC_REBOOT },
	{ "      - " KEY_ED25519 "\n", "      - " KEY_ED25519 "\n      - " KEY_ED25519_2 "\n",
	  SPEC_REBOOT },
	{ KEY_ED25519, KEY_ED25519_2, SPEC_REBOOT },
	{ "restartPolicy: on-failure", "restartPolicy: never", SPEC_UPDATE },
};

static char *replace_once(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);

	if (!at)
		fail_msg("'%s' not found", from);
	return xasprintf("%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
}

static void test_hash_and_compare_per_field(void **state)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_(vm_spec_freep) struct vm_spec *base = NULL;
	char hashes[ARRAY_SIZE(mutations) + 1][SPEC_HASH_LEN + 1];
	size_t len;

	(void)state;
	data = load_fixture("full.yaml", &len);
	base = parse_ok(data);
	spec_hash(base, hashes[0]);
	for (size_t i = 0; i < ARRAY_SIZE(mutations); i++) {
		_cleanup_free_ char *yaml = replace_once(data, mutations[i].from, mutations[i].to);
		_cleanup_(vm_spec_freep) struct vm_spec *m = parse_ok(yaml);

		spec_hash(m, hashes[i + 1]);
		if (spec_compare(base, m) != mutations[i].change)
			fail_msg("mutation %zu ('%s'): compare gave %d, expected %d", i,
				 mutations[i].from, spec_compare(base, m), mutations[i].change);
		assert_int_equal(spec_compare(m, base), mutations[i].change);
	}
	/* Every change, state included, changes the hash; all hashes differ. */
	for (size_t i = 0; i <= ARRAY_SIZE(mutations); i++)
		for (size_t j = i + 1; j <= ARRAY_SIZE(mutations); j++)
			if (strcmp(hashes[i], hashes[j]) == 0)
				fail_msg("hash %zu equals hash %zu", i, j);
	assert_int_equal(spec_compare(base, base), SPEC_SAME);
	assert_int_equal(spec_compare(NULL, NULL), SPEC_SAME);
	assert_int_equal(spec_compare(base, NULL), SPEC_REBOOT);
}

static void test_compare_ignores_provenance(void **state)
{
	_cleanup_(vm_spec_freep) struct vm_spec *a = load_one_fixture("full.yaml");
	_cleanup_(vm_spec_freep) struct vm_spec *b = vm_spec_dup(a);

	(void)state;
	free(b->source_file);
	b->source_file = xstrdup("elsewhere.yaml");
	b->source_line = 99;
	b->source_start = 5;
	b->source_end = 6;
	b->name_line = 7;
	assert_int_equal(spec_compare(a, b), SPEC_SAME);
	/* A deep copy: changing it leaves the original alone. */
	b->labels[0].value[0] = 'X';
	assert_int_equal(spec_compare(a, b), SPEC_UPDATE);
	assert_string_equal(a->labels[0].value, "");
	assert_null(vm_spec_dup(NULL));
	vm_spec_free(NULL);
}

static void test_json_round_trip(void **state)
{
	static const char *const fixtures[] = { "full.yaml", "full-restyled.yaml" };

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(fixtures); i++) {
		_cleanup_(vm_spec_freep) struct vm_spec *a = load_one_fixture(fixtures[i]);
		_cleanup_(vm_spec_freep) struct vm_spec *b = NULL;
		_cleanup_free_ char *j1 = spec_to_json(a), *j2 = NULL;
		struct bg_err err = { 0 };

		assert_int_equal(spec_from_json(j1, &b, &err), 0);
		j2 = spec_to_json(b);
		assert_string_equal(j1, j2);
		assert_int_equal(spec_compare(a, b), SPEC_SAME);
		assert_int_equal(a->state, b->state);
		assert_null(b->source_file);
	}
	{
		_cleanup_(vm_spec_freep) struct vm_spec *a = parse_ok(HEAD);
		_cleanup_(vm_spec_freep) struct vm_spec *b = NULL;
		_cleanup_free_ char *j1 = spec_to_json(a), *j2 = NULL;
		struct bg_err err = { 0 };

		assert_int_equal(spec_from_json(j1, &b, &err), 0);
		j2 = spec_to_json(b);
		assert_string_equal(j1, j2);
	}
}

static void test_json_invalid(void **state)
{
	static const struct {
		const char *json;
		const char *needle;
	} bad[] = {
		{ "", "not valid JSON" },
		{ "{", "not valid JSON" },
		{ "[]", "not an object" },
		{ "{\"apiVersion\":\"banger/v1\"} x", "not valid JSON" },
		{ "{\"apiVersion\":\"banger/v1\"}", "missing required field 'kind'" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"vcpus\":40,\"kernel\":{\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"}}}",
		  "spec.vcpus: must be between 1 and 32, got 40" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"vcpus\":\"2\",\"kernel\":{\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"}}}",
		  "spec.vcpus: expected an integer, got the string '2'" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"vcpus\":1.5,\"kernel\":{\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"}}}",
		  "spec.vcpus: expected an integer, got a number '1.5'" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"cpus\":2,\"kernel\":{\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"}}}",
		  "unknown field 'spec.cpus'" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"kernel\":{\"path\":\"/k\"},\"kernel\":{\"path\":\"/k\"},"
		  "\"rootfs\":{\"image\":\"/i\"}}}",
		  "duplicate key 'spec.kernel'" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\","
		  "\"labels\":{\"a\":\"b\",\"a\":\"c\"}},"
		  "\"spec\":{\"kernel\":{\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"}}}",
		  "duplicate key 'metadata.labels.a'" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"kernel\":{\"path\":\"/k\",\"args\":\"a\\u2028b\"},"
		  "\"rootfs\":{\"image\":\"/i\"}}}",
		  "spec.kernel.args: must not contain a line break" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"kernel\":{\"path\":\"/k\xff\"},\"rootfs\":{\"image\":\"/i\"}}}",
		  "spec.kernel.path: must be valid UTF-8" },
		{ "{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":{\"name\":\"t\"},"
		  "\"spec\":{\"kernel\":{\"path\":\"/k\"},\"rootfs\":{\"image\":\"/i\"},\"ssh\":null}}",
		  "spec.ssh: expected a mapping, got null" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct vm_spec *s = NULL;
		struct bg_err err = { 0 };

		if (spec_from_json(bad[i].json, &s, &err) != -EINVAL ||
		    !strstr(err.msg, bad[i].needle))
			fail_msg("case %zu: got \"%s\", expected \"%s\"", i, err.msg,
				 bad[i].needle);
		assert_null(s);
	}
	{
		struct vm_spec *s = NULL;
		struct bg_err err = { 0 };

		assert_int_equal(spec_from_json(NULL, &s, &err), -EINVAL);
	}
}

static void test_yaml_round_trip(void **state)
{
	static const char *const fixtures[] = { "full.yaml", "full-restyled.yaml" };
	_cleanup_(vm_spec_freep) struct vm_spec *odd = parse_ok(
		HEAD_META
		"  name: \"1\"\n  labels: {\"1\": \"true\", a: \"null\", b: \"\", c: \"0x1\","
		" d: \"1.5\", f: \"x.y\"}\n"
		"spec:\n  kernel: {path: \"/k: #x \\\"q\\\" \\\\ \xc3\xa9\", args: \"a #b\"}\n"
		"  ssh: {authorizedKeys: [\"ssh-ed25519\\tAAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9"
		"etSdVf5ineZh1ozmwvM0Q/o1GzxrqK3ng \\\"x\\\" \xc3\xa9\"]}\n"
		"  rootfs: {image: \"/~\"}\n");

	(void)state;
	for (size_t i = 0; i <= ARRAY_SIZE(fixtures); i++) {
		_cleanup_(vm_spec_freep) struct vm_spec *a =
			i < ARRAY_SIZE(fixtures) ? load_one_fixture(fixtures[i]) : vm_spec_dup(odd);
		_cleanup_free_ char *yaml = spec_to_yaml(a);
		_cleanup_(vm_spec_freep) struct vm_spec *b = parse_ok(yaml);
		_cleanup_free_ char *j1 = spec_to_json(a), *j2 = spec_to_json(b);

		assert_string_equal(j1, j2);
	}
	{
		_cleanup_(vm_spec_freep) struct vm_spec *a = parse_ok(HEAD);
		_cleanup_free_ char *yaml = spec_to_yaml(a);

		assert_string_equal(yaml, "apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: t\n"
					  "spec:\n  state: running\n  vmm: auto\n  vcpus: 1\n"
					  "  memoryMiB: 256\n  kernel:\n    path: /k\n  rootfs:\n"
					  "    image: /i\n  ssh:\n    user: root\n"
					  "  restartPolicy: always\n");
	}
}

static void test_enum_strings(void **state)
{
	(void)state;
	for (int i = 0; i < VM_DESIRED_MAX; i++)
		assert_int_equal(vm_desired_state_from_string(vm_desired_state_to_string(i)), i);
	for (int i = 0; i < VMM_KIND_MAX; i++)
		assert_int_equal(vmm_kind_from_string(vmm_kind_to_string(i)), i);
	for (int i = 0; i < RESTART_POLICY_MAX; i++)
		assert_int_equal(restart_policy_from_string(restart_policy_to_string(i)), i);
	assert_string_equal(restart_policy_to_string(RESTART_ON_FAILURE), "on-failure");
	assert_null(vm_desired_state_to_string(VM_DESIRED_MAX));
	assert_null(vmm_kind_to_string(VMM_KIND_MAX));
	assert_null(restart_policy_to_string(RESTART_POLICY_MAX));
	assert_int_equal(vmm_kind_from_string("kvm"), -EINVAL);
	assert_int_equal(vm_desired_state_from_string(NULL), -EINVAL);
	assert_int_equal(restart_policy_from_string("Always"), -EINVAL);
}

static void test_names_and_filenames(void **state)
{
	static const char *const good_names[] = { "a", "0", "web-1", "a--b", "9lives" };
	static const char *const bad_names[] = { "",	"-a",  "a-",  "A",
						 "a_b", "a.b", "a b", "\xc3\xa9" };
	static const char *const spec_files[] = { "a.yaml", "a.yml", "web-1.prod.yaml",
						  "4913.yaml" };
	static const char *const other_files[] = {
		".a.yaml",    "..data",	  ".git",	"a.yaml~",     "4913",
		"#a.yaml#",   ".#a.yaml", "a.yaml.swp", ".a.yaml.swx", "a.json",
		"a.yaml.bak", "yaml",	  ".yaml",	"a.YAML",      "",
	};
	struct spec_diag d = { .file = (char *)"f.yaml", .line = 3, .col = 7, .msg = (char *)"m" };
	_cleanup_free_ char *s1 = NULL, *s2 = NULL;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good_names); i++)
		assert_true(spec_name_valid(good_names[i]));
	for (size_t i = 0; i < ARRAY_SIZE(bad_names); i++)
		assert_false(spec_name_valid(bad_names[i]));
	assert_false(spec_name_valid(NULL));
	assert_true(
		spec_name_valid("a123456789a123456789a123456789a123456789a123456789a123456789abc"));
	assert_false(spec_name_valid(
		"a123456789a123456789a123456789a123456789a123456789a123456789abcd"));
	for (size_t i = 0; i < ARRAY_SIZE(spec_files); i++)
		assert_true(spec_is_spec_filename(spec_files[i]));
	for (size_t i = 0; i < ARRAY_SIZE(other_files); i++)
		if (spec_is_spec_filename(other_files[i]))
			fail_msg("'%s' taken for a spec file", other_files[i]);
	s1 = spec_diag_format(&d);
	assert_string_equal(s1, "f.yaml:3:7: m");
	d.line = 0;
	s2 = spec_diag_format(&d);
	assert_string_equal(s2, "f.yaml: m");
}

/* ---- loading -------------------------------------------------------------------------- */

static char *vm_doc(const char *name)
{
	return xasprintf("apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: %s\n" TAIL_SPEC,
			 name);
}

static void write_in(const char *dir, const char *rel, const char *contents)
{
	_cleanup_free_ char *path = fs_path_join(dir, rel);

	test_write_file(path, contents);
}

static void write_vm(const char *dir, const char *rel, const char *name)
{
	_cleanup_free_ char *path = fs_path_join(dir, rel);
	_cleanup_free_ char *doc = vm_doc(name);

	test_write_file(path, doc);
}

static void mkdir_in(const char *dir, const char *rel)
{
	_cleanup_free_ char *path = fs_path_join(dir, rel);
	struct bg_err err = { 0 };

	if (fs_mkdir_p(path, 0755, &err) < 0)
		fail_msg("%s", err.msg);
}

static void symlink_in(const char *dir, const char *target, const char *rel)
{
	_cleanup_free_ char *path = fs_path_join(dir, rel);

	if (symlink(target, path) < 0)
		fail_msg("symlink %s: %s", path, strerror(errno));
}

static void expect_specs(const struct spec_set *set, const char *const *names, size_t n)
{
	if (set->n_specs != n) {
		for (size_t i = 0; i < set->n_specs; i++)
			fprintf(stderr, "  spec: %s (%s)\n", set->specs[i]->name,
				set->specs[i]->source_file);
		dump_diags(set);
		fail_msg("%zu specs, expected %zu", set->n_specs, n);
	}
	for (size_t i = 0; i < n; i++)
		assert_string_equal(set->specs[i]->name, names[i]);
}

static void test_load_dir(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-spec");
	_cleanup_free_ char *outside = test_tmpdir("bg-spec-out");
	_cleanup_free_ char *outfile = fs_path_join(outside, "linked.yaml");
	_cleanup_free_ char *fifo = fs_path_join(dir, "fifo.yaml");
	static const char *const want[] = { "d8", "deep", "in-linked-dir", "linked", "sub", "top" };
	struct spec_set set;

	(void)state;
	write_vm(dir, "top.yaml", "top");
	mkdir_in(dir, "sub/deeper");
	write_vm(dir, "sub/sub.yml", "sub");
	write_vm(dir, "sub/deeper/deep.yaml", "deep");
	/* Depth 8 is read, depth 9 is an error for that directory. */
	mkdir_in(dir, "1/2/3/4/5/6/7/8/9");
	write_vm(dir, "1/2/3/4/5/6/7/8/d8.yaml", "d8");
	write_vm(dir, "1/2/3/4/5/6/7/8/9/d9.yaml", "d9");
	/* Hidden directories (git, Kubernetes ConfigMap '..data') and hidden files. */
	mkdir_in(dir, ".git");
	write_vm(dir, ".git/hidden.yaml", "hidden-git");
	mkdir_in(dir, "..2024_01_01");
	write_vm(dir, "..2024_01_01/cm.yaml", "hidden-cm");
	symlink_in(dir, "..2024_01_01", "..data");
	write_vm(dir, ".top.yaml", "hidden-file");
	/* Editor scratch files, each with garbage that would fail to parse. */
	write_in(dir, "4913", "x: [");
	write_in(dir, "top.yaml~", "x: [");
	write_in(dir, ".top.yaml.swp", "x: [");
	write_in(dir, "top.yaml.swx", "x: [");
	write_in(dir, "#top.yaml#", "x: [");
	write_in(dir, "notes.txt", "x: [");
	symlink_in(dir, "user@host.1234:1700000000", ".#top.yaml");
	/* Relative symlinks that stay inside the tree are followed; a dangling one and a FIFO are
	 * skipped. */
	mkdir_in(dir, ".repo/ldir");
	write_vm(dir, ".repo/linked.yaml", "linked");
	write_vm(dir, ".repo/ldir/in.yaml", "in-linked-dir");
	symlink_in(dir, ".repo/linked.yaml", "link.yaml");
	symlink_in(dir, ".repo/ldir", "ldir");
	symlink_in(dir, "nope", "dangling.yaml");
	assert_int_equal(mkfifo(fifo, 0644), 0);
	/* A loop back to the top, and a second link to a file already read. */
	symlink_in(dir, "..", "sub/loop");
	symlink_in(dir, "../.repo/linked.yaml", "sub/again.yaml");
	/* Links out of the tree, or absolute ones (even to inside it), are errors, never read. */
	write_vm(outside, "linked.yaml", "outside");
	mkdir_in(outside, "ldir");
	write_vm(outside, "ldir/in.yaml", "outside-dir");
	symlink_in(dir, outfile, "out.yaml");
	{
		_cleanup_free_ char *ldir = fs_path_join(outside, "ldir");
		_cleanup_free_ char *abs = fs_path_join(dir, "top.yaml");

		symlink_in(dir, ldir, "odir");
		symlink_in(dir, abs, "abs.yaml");
	}
	symlink_in(dir, "../../../../../../../../../../..", "up");
	symlink_in(dir, "/", "root");

	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, dir), 6);
	assert_int_equal(spec_set_finish(&set), 0);
	expect_specs(&set, want, ARRAY_SIZE(want));
	{
		static const char *const bad[] = { "1/2/3/4/5/6/7/8/9", "abs.yaml", "odir",
						   "out.yaml",		"root",	    "up" };

		assert_int_equal(set.n_diags, ARRAY_SIZE(bad));
		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			_cleanup_free_ char *f = fs_path_join(dir, bad[i]);

			assert_string_equal(set.diags[i].file, f);
			assert_true(spec_set_file_failed(&set, f));
		}
		assert_non_null(strstr(set.diags[0].msg, "nested more than 8 levels"));
		for (size_t i = 1; i < ARRAY_SIZE(bad); i++)
			assert_non_null(
				strstr(set.diags[i].msg, "leads outside the spec directory"));
	}
	{
		const struct vm_spec *sub = spec_set_find(&set, "sub");
		_cleanup_free_ char *want_file = xasprintf("%s/sub/sub.yml", dir);

		assert_non_null(sub);
		assert_string_equal(sub->source_file, want_file);
		assert_null(spec_set_find(&set, "d9"));
		assert_null(spec_set_find(&set, "outside"));
		assert_null(spec_set_find(&set, "outside-dir"));
	}
	spec_set_release(&set);
	test_rmtree(dir);
	test_rmtree(outside);
}

/* The last diagnostic is about 'file' and says 'needle'; the file failed (its VMs kept). */
static void expect_last_diag(const struct spec_set *set, const char *file, const char *needle)
{
	if (set->n_diags == 0 || strcmp(set->diags[set->n_diags - 1].file, file) != 0 ||
	    !strstr(set->diags[set->n_diags - 1].msg, needle)) {
		dump_diags(set);
		fail_msg("no last diagnostic '%s' for %s", needle, file);
	}
	assert_true(spec_set_file_failed(set, file));
}

/* Each bound of a directory walk, one past it: an error naming the path and the limit. */
static void test_load_limits(void **state)
{
	struct spec_set set;

	(void)state;
	/* Files: SPEC_DIR_FILES_MAX are read, one more stops the walk (the top fails). */
	{
		_cleanup_free_ char *dir = test_tmpdir("bg-spec-lim");

		for (int i = 0; i <= SPEC_DIR_FILES_MAX; i++) {
			char name[32], vm[32];

			snprintf(name, sizeof(name), "f%05d.yaml", i);
			snprintf(vm, sizeof(vm), "f%05d", i);
			write_vm(dir, name, vm);
		}
		spec_set_init(&set);
		assert_int_equal(spec_load_path(&set, dir), 1);
		assert_int_equal(set.n_specs, SPEC_DIR_FILES_MAX);
		expect_last_diag(&set, dir, "more than 4096 spec files (the limit)");
		spec_set_release(&set);
		test_rmtree(dir);
	}
	/* Directories. */
	{
		_cleanup_free_ char *dir = test_tmpdir("bg-spec-lim");

		for (int i = 0; i < SPEC_DIR_DIRS_MAX; i++) {
			char name[32];

			snprintf(name, sizeof(name), "d%05d", i);
			mkdir_in(dir, name);
		}
		spec_set_init(&set);
		assert_int_equal(spec_load_path(&set, dir), 1);
		expect_last_diag(&set, dir, "more than 1024 directories (the limit)");
		spec_set_release(&set);
		test_rmtree(dir);
	}
	/* Directory entries, hidden ones included (they cost a readdir too). In memory when it
	 * can be: 65537 files on a busy disk take seconds. */
	{
		_cleanup_free_ char *dir = xstrdup("/dev/shm/bg-spec-lim.XXXXXX");

		if (!mkdtemp(dir)) {
			free(dir);
			dir = test_tmpdir("bg-spec-lim");
		}
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		assert_true(dfd >= 0);
		for (int i = 0; i <= SPEC_DIR_ENTRIES_MAX; i++) {
			char name[32];
			int fd;

			snprintf(name, sizeof(name), ".e%06d", i);
			fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			assert_true(fd >= 0);
			close(fd);
		}
		close(dfd);
		spec_set_init(&set);
		assert_int_equal(spec_load_path(&set, dir), 1);
		expect_last_diag(&set, dir, "more than 65536 directory entries (the limit)");
		spec_set_release(&set);
		test_rmtree(dir);
	}
	/* Bytes: 65 files of 1 MiB (sparse, so cheap to make) are more than 64 MiB. */
	{
		_cleanup_free_ char *dir = test_tmpdir("bg-spec-lim");

		for (int i = 0; i <= SPEC_DIR_BYTES_MAX / SPEC_FILE_MAX; i++) {
			char name[32];
			_cleanup_free_ char *p = NULL;

			snprintf(name, sizeof(name), "b%03d.yaml", i);
			p = fs_path_join(dir, name);
			test_write_file(p, "");
			assert_int_equal(truncate(p, SPEC_FILE_MAX), 0);
		}
		spec_set_init(&set);
		assert_true(spec_load_path(&set, dir) > 0);
		expect_last_diag(&set, dir, "more than 67108864 bytes of spec files (the limit)");
		spec_set_release(&set);
		test_rmtree(dir);
	}
}

static void test_load_duplicates_and_broken(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-spec");
	static const char *const want[] = { "g1", "g2", "g3" };
	struct spec_set set;

	(void)state;
	/* 'dup' in two good files; b.yaml also holds g2 which stays. */
	write_vm(dir, "a.yaml", "dup");
	{
		_cleanup_free_ char *p = fs_path_join(dir, "b.yaml");
		_cleanup_free_ char *d1 = vm_doc("g2"), *d2 = vm_doc("dup");
		_cleanup_free_ char *both = xasprintf("%s---\n%s", d1, d2);

		test_write_file(p, both);
	}
	/* broken.yaml: a good document (b1), a bad one (b2), and 'clash' also defined in good c.yaml. */
	{
		_cleanup_free_ char *p = fs_path_join(dir, "broken.yaml");
		_cleanup_free_ char *d1 = vm_doc("b1"), *d3 = vm_doc("clash");
		_cleanup_free_ char *all = xasprintf("%s---\n" HEAD_META "  name: b2\n" TAIL_SPEC
						     "  vcpus: 99\n---\n%s",
						     d1, d3);

		test_write_file(p, all);
	}
	write_vm(dir, "c.yaml", "clash");
	write_vm(dir, "g1.yaml", "g1");
	write_vm(dir, "g3.yaml", "g3");

	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, dir), 1);
	assert_int_equal(spec_set_finish(&set), 2);
	expect_specs(&set, want, ARRAY_SIZE(want));
	assert_int_equal(set.n_diags, 3);
	{
		_cleanup_free_ char *broken = fs_path_join(dir, "broken.yaml");
		_cleanup_free_ char *a = fs_path_join(dir, "a.yaml");
		_cleanup_free_ char *b = fs_path_join(dir, "b.yaml");
		_cleanup_free_ char *c = fs_path_join(dir, "c.yaml");
		_cleanup_free_ char *m1 =
			xasprintf("vm 'clash' is also defined at %s:21:9", broken);
		_cleanup_free_ char *m2 = xasprintf("vm 'dup' is also defined at %s:4:9", a);
		_cleanup_free_ char *f1 = spec_diag_format(&set.diags[0]);

		/* The load error first, then the clashes sorted by name. */
		assert_string_equal(set.diags[0].file, broken);
		assert_int_equal(set.diags[0].line, 16);
		assert_non_null(strstr(f1, ":16:10: spec.vcpus: must be between 1 and 32, got 99"));
		assert_string_equal(set.diags[1].file, c);
		assert_int_equal(set.diags[1].line, 4);
		assert_int_equal(set.diags[1].col, 9);
		assert_non_null(strstr(set.diags[1].msg, m1));
		assert_string_equal(set.diags[2].file, b);
		assert_int_equal(set.diags[2].line, 12);
		assert_int_equal(set.diags[2].col, 9);
		assert_string_equal(set.diags[2].msg, m2);
		assert_int_equal(set.n_failed_files, 1);
		assert_string_equal(set.failed_files[0], broken);
	}
	assert_int_equal(set.n_failed_names, 4);
	assert_string_equal(set.failed_names[0], "b1");
	assert_string_equal(set.failed_names[1], "b2");
	assert_string_equal(set.failed_names[2], "clash");
	assert_string_equal(set.failed_names[3], "dup");
	spec_set_release(&set);

	/* Several duplicates sorting before a clash with a broken file: all found. */
	{
		_cleanup_free_ char *dir2 = test_tmpdir("bg-spec");
		_cleanup_free_ char *p = fs_path_join(dir2, "broken.yaml");
		_cleanup_free_ char *d = vm_doc("zz");
		_cleanup_free_ char *bad = xasprintf("%s  bogus: 1\n", d);

		test_write_file(p, bad);
		write_vm(dir2, "zz.yaml", "zz");
		for (int i = 0; i < 6; i++) {
			_cleanup_free_ char *f1 = xasprintf("a%d-1.yaml", i);
			_cleanup_free_ char *f2 = xasprintf("a%d-2.yaml", i);
			_cleanup_free_ char *name = xasprintf("a%d", i);

			write_vm(dir2, f1, name);
			write_vm(dir2, f2, name);
		}
		write_vm(dir2, "ok.yaml", "ok");
		spec_set_init(&set);
		assert_int_equal(spec_load_path(&set, dir2), 1);
		assert_int_equal(spec_set_finish(&set), 7);
		assert_int_equal(set.n_specs, 1);
		assert_string_equal(set.specs[0]->name, "ok");
		assert_int_equal(set.n_failed_names, 7);
		assert_string_equal(set.failed_names[6], "zz");
		spec_set_release(&set);
		test_rmtree(dir2);
	}

	/* The same name twice in one file. */
	{
		_cleanup_free_ char *p = fs_path_join(dir, "twice.yaml");
		_cleanup_free_ char *d = vm_doc("tw");
		_cleanup_free_ char *both = xasprintf("%s---\n%s", d, d);

		test_write_file(p, both);
		spec_set_init(&set);
		assert_int_equal(spec_load_path(&set, p), 0);
		assert_int_equal(spec_set_finish(&set), 1);
		assert_int_equal(set.n_specs, 0);
		assert_int_equal(set.n_diags, 1);
		assert_int_equal(set.diags[0].line, 12);
		assert_true(spec_set_name_failed(&set, "tw"));
		spec_set_release(&set);
	}
	test_rmtree(dir);
}

static void test_load_files_and_stdin(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-spec");
	_cleanup_free_ char *missing = fs_path_join(dir, "missing.yaml");
	_cleanup_free_ char *big = fs_path_join(dir, "big.yaml");
	_cleanup_free_ char *f = fs_path_join(dir, "one.txt");
	struct spec_set set;
	int pipefd[2], saved;

	(void)state;
	/* A missing path is an error without a position. */
	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, missing), 1);
	assert_int_equal(set.diags[0].line, 0);
	assert_string_equal(set.diags[0].msg, "cannot read: No such file or directory");
	assert_true(spec_set_file_failed(&set, missing));
	spec_set_release(&set);

	/* A file named explicitly is read whatever its name. */
	write_vm(dir, "one.txt", "one");
	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, f), 0);
	assert_int_equal(set.n_specs, 1);
	spec_set_release(&set);

	/* Over the size limit on disk. */
	{
		FILE *fp = fopen(big, "we");

		assert_non_null(fp);
		for (int i = 0; i < SPEC_FILE_MAX / 8 + 1; i++)
			fputs("#234567\n", fp);
		fclose(fp);
	}
	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, big), 1);
	assert_non_null(strstr(set.diags[0].msg, "larger than"));
	spec_set_release(&set);

	/* "-" reads stdin. */
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	{
		_cleanup_free_ char *doc = vm_doc("from-stdin");

		assert_int_equal(write(pipefd[1], doc, strlen(doc)), (ssize_t)strlen(doc));
	}
	close(pipefd[1]);
	saved = dup(STDIN_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(pipefd[0], STDIN_FILENO), STDIN_FILENO);
	close(pipefd[0]);
	spec_set_init(&set);
	assert_int_equal(spec_load_path(&set, "-"), 0);
	assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
	close(saved);
	assert_int_equal(set.n_specs, 1);
	assert_string_equal(set.specs[0]->name, "from-stdin");
	assert_string_equal(set.specs[0]->source_file, "<stdin>");
	spec_set_release(&set);
	test_rmtree(dir);
}

/* ---- guest.config and cloudInit -------------------------------------------------------- */

static void test_guest_config(void **state)
{
	static const struct bad_case bad[] = {
		{ HEAD "  guest: {config: cloud-init}\n", 8, 19,
		  "spec.guest.config: must be one of auto, cloudinit, cmdline; got 'cloud-init'" },
		{ HEAD "  guest: {conf: auto}\n", 8, 11,
		  "unknown field 'spec.guest.conf' (did you mean 'config'?)" },
		{ HEAD "  guest: auto\n", 8, 10, "spec.guest: expected a mapping" },
	};
	static const char *const names[] = { "auto", "cloudinit", "cmdline" };

	(void)state;
	{
		_cleanup_(vm_spec_freep) struct vm_spec *s = parse_ok(HEAD);

		assert_int_equal(s->guest_config, GUEST_CONFIG_AUTO);
		assert_null(s->cloudinit_user_data);
		assert_null(s->cloudinit_user_data_file);
	}
	for (int i = 0; i < GUEST_CONFIG_MAX; i++) {
		_cleanup_free_ char *yaml = xasprintf(HEAD "  guest:\n    config: %s\n", names[i]);
		_cleanup_(vm_spec_freep) struct vm_spec *s = parse_ok(yaml);
		_cleanup_(vm_spec_freep) struct vm_spec *back = NULL;
		_cleanup_(vm_spec_freep) struct vm_spec *base = parse_ok(HEAD);
		_cleanup_free_ char *json = spec_to_json(s), *out = spec_to_yaml(s);
		_cleanup_(vm_spec_freep) struct vm_spec *again = parse_ok(out);
		_cleanup_free_ char *json2 = spec_to_json(again);
		struct bg_err err = { 0 };

		assert_int_equal(s->guest_config, i);
		assert_string_equal(guest_config_to_string(i), names[i]);
		assert_int_equal(guest_config_from_string(names[i]), i);
		/* The default stays out of the canonical form: old specs keep their hash. */
		if (i == GUEST_CONFIG_AUTO) {
			assert_null(strstr(json, "guest"));
			assert_null(strstr(out, "guest"));
		} else {
			_cleanup_free_ char *want =
				xasprintf("\"guest\":{\"config\":\"%s\"}", names[i]);

			assert_non_null(strstr(json, want));
			assert_int_equal(spec_compare(base, s), SPEC_REBOOT);
		}
		assert_int_equal(spec_from_json(json, &back, &err), 0);
		assert_int_equal(back->guest_config, i);
		assert_string_equal(json, json2);
	}
	assert_null(guest_config_to_string(GUEST_CONFIG_MAX));
	assert_int_equal(guest_config_from_string("cloud-init"), -EINVAL);
	check_bad_cases(bad, ARRAY_SIZE(bad));
}

#define UD_CC "#cloud-config\nruncmd:\n  - echo hi\n"

static void test_user_data_inline(void **state)
{
	static const char *const good[] = {
		HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      runcmd: [ls]\n",
		HEAD "  cloudInit: {userData: \"#cloud-config\"}\n",
		HEAD "  cloudInit: {userData: \"#cloud-config\\n# nothing\\n\"}\n",
		HEAD "  cloudInit: {userData: \"#cloud-config\\n---\\n{}\\n\"}\n",
		HEAD "  cloudInit: {userData: \"#cloud-config\\nusers: &u [a]\\ngroups: *u\\n\"}\n",
		HEAD "  cloudInit:\n    userData: |\n      #!/bin/bash\n      echo hi\n",
		HEAD "  cloudInit:\n    userData: |\n      MIME-Version: 1.0\n"
		     "      Content-Type: multipart/mixed;\n        boundary=\"==b==\"\n\n"
		     "      --==b==\n      Content-Type: text/x-shellscript\n\n      #!/bin/sh\n"
		     "      --==b==--\n",
		HEAD "  cloudInit: {}\n",
	};
	_cleanup_(vm_spec_freep) struct vm_spec *base = parse_ok(HEAD);
	_cleanup_(vm_spec_freep) struct vm_spec *a =
		parse_ok(HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      runcmd:\n"
			      "        - echo hi\n");
	_cleanup_(vm_spec_freep) struct vm_spec *b = parse_ok(
		HEAD "  cloudInit:\n    userData: \"#cloud-config\\nruncmd:\\n  - echo bye\\n\"\n");
	char ha[SPEC_HASH_LEN + 1], hb[SPEC_HASH_LEN + 1];

	(void)state;
	check_good_cases(good, ARRAY_SIZE(good));
	assert_string_equal(a->cloudinit_user_data, UD_CC);
	assert_null(a->cloudinit_user_data_file);
	spec_hash(a, ha);
	spec_hash(b, hb);
	assert_string_not_equal(ha, hb);
	assert_int_equal(spec_compare(a, b), SPEC_REBOOT);
	assert_int_equal(spec_compare(base, a), SPEC_REBOOT);
	/* JSON and YAML round trips keep the text exactly. */
	for (size_t i = 0; i < 2; i++) {
		const struct vm_spec *s = i ? b : a;
		_cleanup_free_ char *json = spec_to_json(s), *json2 = NULL, *json3 = NULL;
		_cleanup_free_ char *yaml = spec_to_yaml(s);
		_cleanup_(vm_spec_freep) struct vm_spec *back = NULL;
		_cleanup_(vm_spec_freep) struct vm_spec *again = parse_ok(yaml);
		struct bg_err err = { 0 };

		assert_non_null(strstr(json, "\"cloudInit\":{\"userData\":\"#cloud-config\\n"));
		assert_int_equal(spec_from_json(json, &back, &err), 0);
		json2 = spec_to_json(back);
		assert_string_equal(json, json2);
		assert_int_equal(spec_compare(s, back), SPEC_SAME);
		json3 = spec_to_json(again);
		assert_string_equal(json, json3);
	}
	{
		_cleanup_free_ char *yaml = spec_to_yaml(a);

		assert_non_null(strstr(yaml, "  cloudInit:\n    userData: |2\n      #cloud-config\n"
					     "      runcmd:\n        - echo hi\n"));
	}
}

static void test_user_data_inline_errors(void **state)
{
	static const struct bad_case bad[] = {
		/* Kind. */
		{ HEAD "  cloudInit: {userData: hello}\n", 8, 25,
		  "spec.cloudInit.userData: user-data must start with '#cloud-config' (a "
		  "cloud-config), '#!' (a script) or MIME headers" },
		{ HEAD "  cloudInit: {userData: \"#include http://x\"}\n", 8, 25, "got '#include" },
		{ HEAD "  cloudInit: {userData: \"#cloud-config-archive\"}\n", 8, 25,
		  "must start with" },
		{ HEAD "  cloudInit: {userData: \"\"}\n", 8, 25, "must start with" },
		{ HEAD "  cloudInit: {userData: 42}\n", 8, 25,
		  "spec.cloudInit.userData: expected a string, got an integer" },
		{ HEAD "  cloudInit: {userData: \"#!/bin/sh\\0\"}\n", 8, 25,
		  "must not contain NUL" },
		/* YAML errors inside a literal block point at the line of the spec file. */
		{ HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      runcmd:\n"
		       "        - echo hi\n      packages: [a\n      bad: x\n",
		  14, 10,
		  "spec.cloudInit.userData: cloud-config is not valid YAML: did not find "
		  "expected ',' or ']'" },
		{ HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      a: b: c\n", 11,
		  11, "mapping values are not allowed" },
		{ HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      - a\n      - b\n",
		  11, 7, "the top level of a cloud-config must be a mapping, got a sequence" },
		{ HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      a: 1\n      ---\n"
		       "      b: 2\n",
		  12, 7, "a cloud-config must be a single YAML document" },
		{ HEAD "  cloudInit:\n    userData: |\n      #cloud-config\n      just text\n", 11,
		  7, "must be a mapping, got a scalar" },
		{ HEAD
		  "  cloudInit:\n    userData: |\n      #cloud-config\n      a: !ruby/object x\n",
		  11, 10,
		  "cloud-config uses the tag '!ruby/object', which cloud-init's YAML loader" },
		/* Other styles: the value's position, and where inside the text. */
		{ HEAD "  cloudInit: {userData: \"#cloud-config\\na: b: c\\n\"}\n", 8, 25,
		  "at line 2, column 5 of the user-data: cloud-config is not valid YAML: mapping "
		  "values are not allowed" },
		/* MIME. */
		{ HEAD "  cloudInit:\n    userData: |\n      Content-Type: text/plain\n\n      x\n",
		  10, 21, "must be a multi-part archive" },
		{ HEAD "  cloudInit:\n    userData: |\n      MIME-Version: 1.0\n"
		       "      Content-Type: multipart/mixed\n\n      x\n",
		  11, 21, "no boundary parameter" },
		{ HEAD "  cloudInit:\n    userData: |\n      MIME-Version: 1.0\n      oops\n", 11,
		  7, "not a MIME header line" },
		{ HEAD "  cloudInit:\n    userData: |\n      MIME-Version: 1.0\n"
		       "      Content-Type: multipart/mixed; boundary=zz\n\n      --yy\n",
		  9, 15, "the boundary 'zz' never starts a line" },
		/* Both, or a file name that cannot be one. */
		{ HEAD "  cloudInit:\n    userData: \"#!/bin/sh\"\n    userDataFile: ud.sh\n", 10,
		  5, "spec.cloudInit: give either userData or userDataFile, not both" },
		{ HEAD "  cloudInit: {userDataFile: /etc/passwd}\n", 8, 29,
		  "spec.cloudInit.userDataFile: must be a path relative to the spec file's "
		  "directory, got '/etc/passwd'" },
		{ HEAD "  cloudInit: {userDataFile: \"\"}\n", 8, 29, "must be a path relative" },
		{ HEAD "  cloudInit: {userDataFile: \"a\\nb\"}\n", 8, 29,
		  "must not contain a line" },
		{ HEAD "  cloudInit: {userDataFile: ../../../../../../../../etc/passwd}\n", 8, 29,
		  "leads outside the spec directory" },
	};
	_cleanup_free_ char *big = NULL;

	(void)state;
	check_bad_cases(bad, ARRAY_SIZE(bad));
	{
		/* 256 KiB + 1 inline. */
		size_t n = SPEC_USERDATA_MAX + 1 - strlen("#!/bin/sh\n");
		_cleanup_free_ char *filler = xmalloc(n + 1);

		memset(filler, 'x', n);
		filler[n] = '\0';
		big = xasprintf(HEAD "  cloudInit: {userData: \"#!/bin/sh\\n%s\"}\n", filler);
		check_error(big, 8, 25, "must be at most 262144 bytes (256 KiB)");
	}
}

static void test_userdata_check_api(void **state)
{
	struct bg_err err = { 0 };
	static const char bad[] = "#cloud-config\nruncmd: [\n";

	(void)state;
	assert_int_equal(spec_userdata_check(UD_CC, strlen(UD_CC), "f", 0, 0, &err), 0);
	assert_int_equal(spec_userdata_check(bad, strlen(bad), "ud.yaml", 0, 0, &err), -EINVAL);
	assert_true(strncmp(err.msg, "ud.yaml:3:1: cloud-config is not valid YAML", 43) == 0);
	bg_err_clear(&err);
	assert_int_equal(spec_userdata_check(bad, strlen(bad), "s.yaml", 10, 4, &err), -EINVAL);
	assert_true(strncmp(err.msg, "s.yaml:13:5: ", 13) == 0);
	bg_err_clear(&err);
	assert_int_equal(spec_userdata_check("#!x\xff", 4, "f", 0, 0, &err), -EINVAL);
	assert_string_equal(err.msg, "f: must be valid UTF-8");
	assert_int_equal(spec_userdata_kind("#cloud-config", 13), SPEC_USERDATA_CLOUD_CONFIG);
	assert_int_equal(spec_userdata_kind("#cloud-config\r\n", 15), SPEC_USERDATA_CLOUD_CONFIG);
	assert_int_equal(spec_userdata_kind("#cloud-configx", 14), SPEC_USERDATA_UNKNOWN);
	assert_int_equal(spec_userdata_kind("#!", 2), SPEC_USERDATA_SCRIPT);
	assert_int_equal(spec_userdata_kind("mime-version: 1.0", 17), SPEC_USERDATA_MIME);
	assert_int_equal(spec_userdata_kind("", 0), SPEC_USERDATA_UNKNOWN);
}

static struct spec_set load(const char *path)
{
	struct spec_set set;

	spec_set_init(&set);
	spec_load_path(&set, path);
	spec_set_finish(&set);
	return set;
}

/* Exactly one diagnostic, in file (a path suffix), at line:col, containing needle. */
static void expect_one_diag(const struct spec_set *set, const char *file, unsigned line,
			    unsigned col, const char *needle)
{
	size_t fl, l;

	if (set->n_diags != 1) {
		dump_diags(set);
		fail_msg("%zu diagnostics, expected 1 (%s)", set->n_diags, needle);
	}
	fl = strlen(file);
	l = strlen(set->diags[0].file);
	if (l < fl || strcmp(set->diags[0].file + l - fl, file) != 0 ||
	    set->diags[0].line != line || set->diags[0].col != col ||
	    !strstr(set->diags[0].msg, needle)) {
		dump_diags(set);
		fail_msg("expected %s:%u:%u: ...%s...", file, line, col, needle);
	}
}

#define UD_VM(name, file)                                                                        \
	"apiVersion: banger/v1\nkind: VM\nmetadata:\n  name: " name "\nspec:\n  kernel: {path: " \
	"/k}\n  rootfs: {image: /i}\n  cloudInit:\n    userDataFile: " file "\n"

static void test_user_data_file(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-spec-ud");
	_cleanup_free_ char *outside = test_tmpdir("bg-spec-ud-out");
	_cleanup_free_ char *hash1 = NULL;
	struct spec_set set;

	(void)state;
	mkdir_in(dir, "ud");
	mkdir_in(dir, "vms");
	write_in(dir, "ud/web.yaml", UD_CC);
	write_in(dir, "vms/web.yaml", UD_VM("web", "../ud/web.yaml"));
	write_in(dir, "top.yaml", UD_VM("top", "ud/web.yaml"));
	write_in(outside, "secret.sh", "#!/bin/sh\n");

	/* A directory load: '..' that stays inside is fine; the cloud-config is no spec. */
	set = load(dir);
	{
		static const char *const want[] = { "top", "web" };

		expect_specs(&set, want, ARRAY_SIZE(want));
		assert_int_equal(set.n_diags, 0);
	}
	{
		const struct vm_spec *web = spec_set_find(&set, "web");
		_cleanup_free_ char *json = spec_to_json(web);
		_cleanup_(vm_spec_freep) struct vm_spec *back = NULL;
		_cleanup_(vm_spec_freep) struct vm_spec *renamed = vm_spec_dup(web);
		_cleanup_free_ char *yaml = spec_to_yaml(web);
		struct bg_err err = { 0 };

		assert_string_equal(web->cloudinit_user_data, UD_CC);
		assert_string_equal(web->cloudinit_user_data_file, "../ud/web.yaml");
		assert_non_null(strstr(json,
				       "\"cloudInit\":{\"userData\":\"#cloud-config\\nruncmd:"
				       "\\n  - echo hi\\n\",\"userDataFile\":\"../ud/web.yaml\"}"));
		/* The JSON carries the content: reading it back opens no file. */
		assert_int_equal(spec_from_json(json, &back, &err), 0);
		assert_string_equal(back->cloudinit_user_data, UD_CC);
		assert_int_equal(spec_compare(web, back), SPEC_SAME);
		/* YAML output keeps the reference. */
		assert_non_null(
			strstr(yaml, "  cloudInit:\n    userDataFile: \"../ud/web.yaml\"\n"));
		assert_null(strstr(yaml, "userData:"));
		/* Another name for the same content: no reboot. */
		free(renamed->cloudinit_user_data_file);
		renamed->cloudinit_user_data_file = xstrdup("other.yaml");
		assert_int_equal(spec_compare(web, renamed), SPEC_UPDATE);
		hash1 = xmalloc(SPEC_HASH_LEN + 1);
		spec_hash(web, hash1);
	}
	spec_set_release(&set);
	{
		/* JSON with a file name but no content is refused. */
		struct vm_spec *s = NULL;
		struct bg_err err = { 0 };

		assert_int_equal(
			spec_from_json("{\"apiVersion\":\"banger/v1\",\"kind\":\"VM\",\"metadata\":"
				       "{\"name\":\"t\"},\"spec\":{\"kernel\":{\"path\":\"/k\"},"
				       "\"rootfs\":{\"image\":\"/i\"},\"cloudInit\":{"
				       "\"userDataFile\":\"x\"}}}",
				       &s, &err),
			-EINVAL);
		assert_non_null(strstr(err.msg, "its content (userData) is missing"));
	}

	/* Editing the file changes the hash (and so the VM's generation). */
	write_in(dir, "ud/web.yaml", "#cloud-config\nruncmd:\n  - echo changed\n");
	set = load(dir);
	{
		char h2[SPEC_HASH_LEN + 1];

		assert_int_equal(set.n_diags, 0);
		spec_hash(spec_set_find(&set, "web"), h2);
		assert_string_not_equal(hash1, h2);
	}
	spec_set_release(&set);

	/* A single-file load: the spec directory is the file's own, so '..' leaves it. */
	{
		_cleanup_free_ char *p = fs_path_join(dir, "vms/web.yaml");

		set = load(p);
		expect_one_diag(&set, "vms/web.yaml", 9, 19, "leads outside the spec directory");
		spec_set_release(&set);
		p = (free(p), fs_path_join(dir, "top.yaml"));
		set = load(p);
		assert_int_equal(set.n_diags, 0);
		assert_int_equal(set.n_specs, 1);
		spec_set_release(&set);
	}

	/* Errors inside the file are reported in that file. */
	write_in(dir, "ud/web.yaml", "#cloud-config\nruncmd:\n  - [a\n");
	set = load(dir);
	{
		bool found = false;

		for (size_t i = 0; i < set.n_diags; i++)
			if (strstr(set.diags[i].file, "/ud/web.yaml") && set.diags[i].line == 4 &&
			    strstr(set.diags[i].msg, "spec.cloudInit.userDataFile: cloud-config is "
						     "not valid YAML"))
				found = true;
		if (!found) {
			dump_diags(&set);
			fail_msg("no error in ud/web.yaml at line 4");
		}
		assert_int_equal(set.n_specs, 0);
		assert_true(spec_set_name_failed(&set, "web"));
	}
	spec_set_release(&set);
	test_rmtree(dir);

	/* Each way of not being a readable file inside the directory. */
	{
		static const struct {
			const char *setup, *ref;
			const char *needle;
		} bad[] = {
			{ "missing", "nope.sh", "cannot open" },
			/* Hidden, so the walk skips the link and only the reader sees it. */
			{ "abs-link", ".abs/secret.sh", "leads outside the spec directory" },
			{ "final-link", ".link.sh", "is a symbolic link" },
			{ "dir", "adir", "is not a regular file" },
			{ "fifo", "fifo.sh", "is not a regular file" },
			{ "big", "big.sh", "is larger than 262144 bytes (256 KiB)" },
			{ "kind", "notes.txt", "user-data must start with" },
		};

		for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
			_cleanup_free_ char *d = test_tmpdir("bg-spec-ud");
			_cleanup_free_ char *vm = xasprintf(UD_VM("v", "%s"), bad[i].ref);
			_cleanup_free_ char *sec = fs_path_join(outside, "secret.sh");
			_cleanup_free_ char *shown = xasprintf("/%s", bad[i].ref);
			const char *s = bad[i].setup;

			write_in(d, "v.yaml", vm);
			if (strcmp(s, "abs-link") == 0)
				symlink_in(d, outside, ".abs");
			else if (strcmp(s, "final-link") == 0)
				symlink_in(d, sec, ".link.sh");
			else if (strcmp(s, "dir") == 0)
				mkdir_in(d, "adir");
			else if (strcmp(s, "fifo") == 0) {
				_cleanup_free_ char *f = fs_path_join(d, "fifo.sh");

				assert_int_equal(mkfifo(f, 0644), 0);
			} else if (strcmp(s, "big") == 0) {
				_cleanup_free_ char *f = fs_path_join(d, "big.sh");
				_cleanup_free_ char *text = xmalloc(SPEC_USERDATA_MAX + 2);

				memset(text, 'x', SPEC_USERDATA_MAX + 1);
				memcpy(text, "#!", 2);
				text[SPEC_USERDATA_MAX + 1] = '\0';
				test_write_file(f, text);
			} else if (strcmp(s, "kind") == 0) {
				write_in(d, "notes.txt", "just notes\n");
			}
			set = load(d);
			if (strcmp(s, "kind") == 0) {
				/* About the file's content: reported in the file, at its start. */
				expect_one_diag(&set, "/notes.txt", 1, 1, bad[i].needle);
			} else {
				expect_one_diag(&set, "/v.yaml", 9, 19, bad[i].needle);
				if (strcmp(s, "missing") == 0 || strcmp(s, "big") == 0)
					assert_non_null(strstr(set.diags[0].msg, shown));
			}
			assert_int_equal(set.n_specs, 0);
			spec_set_release(&set);
			test_rmtree(d);
		}
	}
	test_rmtree(outside);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full_fixture),
		cmocka_unit_test(test_top_level),
		cmocka_unit_test(test_metadata_name),
		cmocka_unit_test(test_metadata_labels),
		cmocka_unit_test(test_state_vmm_restart),
		cmocka_unit_test(test_vcpus_memory),
		cmocka_unit_test(test_kernel),
		cmocka_unit_test(test_rootfs_workdisk),
		cmocka_unit_test(test_network),
		cmocka_unit_test(test_network_egress_ports),
		cmocka_unit_test(test_ssh),
		cmocka_unit_test(test_all_errors_reported),
		cmocka_unit_test(test_multi_document_errors),
		cmocka_unit_test(test_empty_inputs),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_anchors_aliases_tags),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_file_size_limit),
		cmocka_unit_test(test_too_many_errors),
		cmocka_unit_test(test_document_ranges_exact),
		cmocka_unit_test(test_canonical_json),
		cmocka_unit_test(test_hash_same_meaning),
		cmocka_unit_test(test_hash_and_compare_per_field),
		cmocka_unit_test(test_compare_ignores_provenance),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_invalid),
		cmocka_unit_test(test_yaml_round_trip),
		cmocka_unit_test(test_enum_strings),
		cmocka_unit_test(test_names_and_filenames),
		cmocka_unit_test(test_load_dir),
		cmocka_unit_test(test_load_limits),
		cmocka_unit_test(test_load_duplicates_and_broken),
		cmocka_unit_test(test_load_files_and_stdin),
		cmocka_unit_test(test_guest_config),
		cmocka_unit_test(test_user_data_inline),
		cmocka_unit_test(test_user_data_inline_errors),
		cmocka_unit_test(test_userdata_check_api),
		cmocka_unit_test(test_user_data_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
