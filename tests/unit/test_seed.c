/*
 * test_seed.c - reconciler/guest/seed: the rendered NoCloud files against
 * golden files, what cloud-init would make of them (PyYAML + email through
 * tests/unit/data/seed/cloudinit-view.py, also golden), input checks, and
 * the ISO (genisoimage, checked with isoinfo).
 *
 * Goldens: tests/unit/data/seed/<case>/{meta-data,network-config,user-data,
 * cmdline,cloud-init.json}. REGEN=1 rewrites them (review the diff!).
 * Run from the top of the tree.
 */
#include <errno.h>
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

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/proc.h"
#include "common/xalloc.h"
#include "reconciler/guest/seed.h"
#include "tests/lib/testutil.h"

#define DATA "tests/unit/data/seed/"
#define VIEW DATA "cloudinit-view.py"

#define KEY1 \
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJDmNHp1dq9etSdVf5ineZh1ozmwvM0Q/o1GzxrqK3ng me@host"
#define KEY2 \
	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBLf3hf5xcXkBhl+kM+rGmlcgO8Uawx4dQqJ4iZj6mWu other"
#define CMDLINE                                                                                \
	"ip=172.30.0.10::172.30.0.1:255.255.255.0:web-1:eth0:off:172.30.0.1 banger.user=root " \
	"banger.sshkeys=c3NoLWVkMjU1MTkgQUFBQQo="

static char *read_data(const char *name)
{
	_cleanup_free_ char *path = xasprintf(DATA "%s", name);
	struct bg_err err = { 0 };
	char *data = NULL;

	if (fs_read_file(path, 1 << 20, &data, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return data;
}

static char *host_private, *host_public;

static int setup(void **state)
{
	size_t n;

	(void)state;
	host_private = read_data("host_key");
	host_public = read_data("host_key.pub");
	n = strlen(host_public);
	while (n > 0 && host_public[n - 1] == '\n')
		host_public[--n] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(host_private);
	free(host_public);
	return 0;
}

static const char *const ns1[] = { "172.30.0.1" };
static const char *const ns2[] = { "1.1.1.1", "9.9.9.9" };

static const char user_cloud_config[] =
	"#cloud-config\n"
	"# the user's own: users, host keys and lists banger must merge with\n"
	"users:\n"
	"  - default\n"
	"  - name: bob\n"
	"    shell: /bin/bash\n"
	"ssh_keys:\n"
	"  rsa_private: not-a-key\n"
	"ssh_pwauth: true\n"
	"hostname: theirs\n"
	"packages: [htop, jq]\n"
	"runcmd:\n"
	"  - [touch, /root/user-ran]\n"
	"write_files:\n"
	"  - path: /etc/motd\n"
	"    content: hello\n"
	"mounts:\n"
	"  - [tmpfs, /scratch, tmpfs, defaults, \"0\", \"0\"]\n";

static const char user_script[] = "#!/bin/sh\necho user script ran > /root/script-ran\n";

static const char user_mime[] = "Content-Type: multipart/mixed; boundary=\"XYZ\"\n"
				"MIME-Version: 1.0\n"
				"\n"
				"--XYZ\n"
				"Content-Type: text/cloud-config; charset=\"us-ascii\"\n"
				"\n"
				"#cloud-config\n"
				"runcmd:\n"
				"  - echo from-mime\n"
				"\n"
				"--XYZ\n"
				"Content-Type: text/x-shellscript; charset=\"us-ascii\"\n"
				"Content-Disposition: attachment; filename=\"mime-script\"\n"
				"\n"
				"#!/bin/sh\n"
				"echo mime script\n"
				"\n"
				"--XYZ--\n";

/* Strings that would break out of a naively written field, and non-ASCII user-data. */
static const char hostile_keys[] =
	KEY1 "\n"
	     "ssh-ed25519 AAAA \"quoted\" \\back\\ #not-a-comment: x\n"
	     "ssh-ed25519 AAAA tail\xe2\x80\xa8users: [evil]\xc2\x85---\n"
	     "\n"
	     "  ssh-ed25519 AAAA '}{]['\t\r\n";

static const char hostile_user_data[] = "#cloud-config\n"
					"runcmd:\n"
					"  - echo caf\xc3\xa9 --banger- \"x\"\n";

struct seed_case {
	const char *name;
	struct seed_input in;
};

static struct seed_case *cases(size_t *ret_n)
{
	static struct seed_case c[8];
	const struct seed_input base = {
		.instance_id = "iid-banger-1a2b3c4d",
		.hostname = "web-1",
		.mac = "02:fc:1a:2b:3c:4d",
		.ip = "172.30.0.10",
		.prefix = 24,
		.gateway = "172.30.0.1",
		.nameservers = ns1,
		.n_nameservers = 1,
		.user = "root",
		.authorized_keys = KEY1 "\n" KEY2 "\n",
		.host_key_private = host_private,
		.host_key_public = host_public,
		.cmdline = CMDLINE,
	};

	for (size_t i = 0; i < ARRAY_SIZE(c); i++)
		c[i].in = base;
	c[0].name = "root";
	c[1].name = "user";
	c[1].in.user = "alice";
	c[1].in.nameservers = ns2;
	c[1].in.n_nameservers = 2;
	c[2].name = "no-nameservers";
	c[2].in.nameservers = NULL;
	c[2].in.n_nameservers = 0;
	c[3].name = "work-disk";
	c[3].in.work_disk_dev = "/dev/vdb";
	c[4].name = "user-cloud-config";
	c[4].in.user = "alice";
	c[4].in.work_disk_dev = "/dev/vdb";
	c[4].in.user_data = user_cloud_config;
	c[5].name = "user-script";
	c[5].in.user_data = user_script;
	c[6].name = "user-mime";
	c[6].in.user_data = user_mime;
	c[7].name = "hostile";
	c[7].in.hostname = "h: #x \"y\" \\z \xe2\x80\xa8 ---";
	c[7].in.user = "al'ice";
	c[7].in.authorized_keys = hostile_keys;
	c[7].in.user_data = hostile_user_data;
	*ret_n = ARRAY_SIZE(c);
	return c;
}

static bool regen(void)
{
	const char *r = getenv("REGEN");

	return r && strcmp(r, "1") == 0;
}

/* Compare (or with REGEN=1 write) one golden file. Returns false on a mismatch. */
static bool golden(const char *dir, const char *name, const char *text)
{
	_cleanup_free_ char *path = xasprintf(DATA "%s/%s", dir, name);
	_cleanup_free_ char *want = NULL;
	struct bg_err err = { 0 };

	if (regen()) {
		_cleanup_free_ char *d = xasprintf(DATA "%s", dir);

		if (fs_mkdir_p(d, 0755, &err) < 0 ||
		    fs_write_atomic(path, text, strlen(text), 0644, &err) < 0)
			fail_msg("%s", err.msg);
		return true;
	}
	if (fs_read_file(path, 1 << 20, &want, NULL, &err) < 0) {
		fprintf(stderr, "golden %s: %s (REGEN=1 writes it)\n", path, err.msg);
		return false;
	}
	if (strcmp(want, text) != 0) {
		fprintf(stderr, "golden %s differs; got:\n%s\n", path, text);
		return false;
	}
	return true;
}

static void render_ok(const struct seed_input *in, struct seed_files *f)
{
	struct bg_err err = { 0 };

	if (seed_render(in, f, &err) < 0)
		fail_msg("seed_render: %s", err.msg);
}

static void test_golden(void **state)
{
	size_t n, wrong = 0;
	struct seed_case *c = cases(&n);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		struct seed_files f, again;

		render_ok(&c[i].in, &f);
		wrong += !golden(c[i].name, "meta-data", f.meta_data);
		wrong += !golden(c[i].name, "network-config", f.network_config);
		wrong += !golden(c[i].name, "user-data", f.user_data);
		wrong += !golden(c[i].name, "cmdline", f.cmdline);
		/* Deterministic. */
		render_ok(&c[i].in, &again);
		assert_string_equal(f.user_data, again.user_data);
		seed_files_release(&again);
		seed_files_release(&f);
	}
	if (wrong)
		fail_msg("%zu golden files differ", wrong);
}

static bool have_pyyaml(void)
{
	const char *argv[] = { "python3", "-c", "import yaml, email", NULL };

	return proc_run(argv, 30000, NULL, NULL) == 0;
}

/* The cloud-init view of a rendered case (JSON text), from cloudinit-view.py. Owned. */
static char *view(const struct seed_files *f)
{
	_cleanup_free_ char *dir = test_tmpdir("bg-seed-view");
	_cleanup_free_ char *m = fs_path_join(dir, "meta-data");
	_cleanup_free_ char *nc = fs_path_join(dir, "network-config");
	_cleanup_free_ char *u = fs_path_join(dir, "user-data");
	const char *argv[] = { "python3", VIEW, dir, NULL };
	struct bg_err err = { 0 };
	char *out = NULL;

	test_write_file(m, f->meta_data);
	test_write_file(nc, f->network_config);
	test_write_file(u, f->user_data);
	if (proc_run(argv, 60000, &out, &err) < 0)
		fail_msg("cloudinit-view.py: %s\n%s", err.msg, out ? out : "");
	test_rmtree(dir);
	return out;
}

static void expect_in(const char *hay, const char *needle, const char *what)
{
	if (!strstr(hay, needle))
		fail_msg("%s: '%s' not found in:\n%s", what, needle, hay);
}

static void expect_not_in(const char *hay, const char *needle, const char *what)
{
	if (strstr(hay, needle))
		fail_msg("%s: '%s' found in:\n%s", what, needle, hay);
}

/*
 * Parse every case as cloud-init would (PyYAML, email, the documented merge
 * rules) and check the result: golden, plus the facts that matter, asserted
 * here so the golden cannot silently absorb a regression.
 */
static void test_cloudinit_view(void **state)
{
	size_t n, wrong = 0;
	struct seed_case *c = cases(&n);

	(void)state;
	if (!have_pyyaml()) {
		test_skip_reason("python3 with PyYAML is not installed (make deps installs it)");
		skip();
	}
	for (size_t i = 0; i < n; i++) {
		struct seed_files f;
		_cleanup_free_ char *v = NULL;

		render_ok(&c[i].in, &f);
		v = view(&f);
		wrong += !golden(c[i].name, "cloud-init.json", v);
		/* The host key is ours whatever the user set; no password logins. */
		expect_in(v, "\"ed25519_public\": \"ssh-ed25519 ", c[i].name);
		expect_in(v, "\"ssh_deletekeys\": true", c[i].name);
		expect_in(v, "\"ssh_genkeytypes\": [\n   \"ed25519\"\n  ]", c[i].name);
		/* sshd is never restarted for banger's sake: no ssh_pwauth of ours. */
		if (strstr(c[i].name, "user-") == NULL)
			expect_not_in(v, "ssh_pwauth", c[i].name);
		expect_not_in(v, "rsa_private", c[i].name);
		expect_in(v, "\"instance-id\": \"iid-banger-1a2b3c4d\"", c[i].name);
		expect_in(v, "\"macaddress\": \"02:fc:1a:2b:3c:4d\"", c[i].name);
		expect_in(v, "\"172.30.0.10/24\"", c[i].name);
		seed_files_release(&f);
	}
	if (wrong)
		fail_msg("%zu golden files differ", wrong);
}

/* The user's lists survive and banger's user lands, in the merged config. */
static void test_merge_semantics(void **state)
{
	size_t n;
	struct seed_case *c = cases(&n);
	struct seed_files f;
	_cleanup_free_ char *v = NULL, *v2 = NULL, *v3 = NULL;

	(void)state;
	if (!have_pyyaml()) {
		test_skip_reason("python3 with PyYAML is not installed (make deps installs it)");
		skip();
	}
	render_ok(&c[4].in, &f);
	v = view(&f);
	seed_files_release(&f);
	/* users: theirs, then banger's; their runcmd, packages, write_files, mounts stay. */
	expect_in(v, "\"users\": [\n   \"default\",\n   {\n    \"name\": \"bob\"", "users");
	expect_in(v, "\"name\": \"alice\"", "banger's user");
	expect_in(v, "\"sudo\": \"ALL=(ALL) NOPASSWD:ALL\"", "sudo");
	expect_in(v, "\"touch\",\n    \"/root/user-ran\"", "runcmd");
	expect_in(v, "\"htop\"", "packages");
	expect_in(v, "\"path\": \"/etc/motd\"", "write_files");
	expect_in(v, "\"/scratch\"", "their mount");
	expect_in(v, "\"/mnt/work\"", "banger's mount");
	expect_in(v, "\"hostname\": \"web-1\"", "hostname");
	expect_in(v, KEY1, "authorized key");

	render_ok(&c[5].in, &f);
	v2 = view(&f);
	seed_files_release(&f);
	expect_in(v2, "\"user-script\",\n   \"#!/bin/sh\"", "script part");
	expect_in(v2, "\"disable_root\": false", "root login");

	render_ok(&c[6].in, &f);
	v3 = view(&f);
	seed_files_release(&f);
	expect_in(v3, "\"echo from-mime\"", "nested MIME cloud-config");
	expect_in(v3, "\"mime-script\"", "nested MIME script");
}

/* Hostile strings come back exactly, each inside its own field. */
static void test_hostile_round_trip(void **state)
{
	size_t n;
	struct seed_case *c = cases(&n);
	struct seed_files f;
	_cleanup_free_ char *v = NULL;

	(void)state;
	if (!have_pyyaml()) {
		test_skip_reason("python3 with PyYAML is not installed (make deps installs it)");
		skip();
	}
	render_ok(&c[7].in, &f);
	v = view(&f);
	seed_files_release(&f);
	expect_in(v, "\"local-hostname\": \"h: #x \\\"y\\\" \\\\z \xe2\x80\xa8 ---\"", "hostname");
	expect_in(v, "\"name\": \"al'ice\"", "user");
	expect_in(v, "\"ssh-ed25519 AAAA \\\"quoted\\\" \\\\back\\\\ #not-a-comment: x\"", "key 2");
	expect_in(v, "\"ssh-ed25519 AAAA tail\xe2\x80\xa8users: [evil]\xc2\x85---\"", "key 3");
	expect_in(v, "\"ssh-ed25519 AAAA '}{][\'\"", "key 4 (trimmed)");
	expect_in(v, "\"echo caf\xc3\xa9 --banger- \\\"x\\\"\"", "non-ASCII user-data");
	expect_not_in(v, "\"evil\"", "no injected user");
}

static void test_render_errors(void **state)
{
	size_t n;
	struct seed_case *c = cases(&n);
	static const char *const bad_ud[] = { "hello", "#include http://x", "" };

	(void)state;
	for (int k = 0; k < 6; k++) {
		struct seed_input in = c[0].in;
		struct seed_files f = { 0 };
		struct bg_err err = { 0 };

		switch (k) {
		case 0:
			in.hostname = NULL;
			break;
		case 1:
			in.mac = "02:00\n#x";
			break;
		case 2:
			in.user = "bad\xff";
			break;
		case 3:
			in.prefix = 33;
			break;
		case 4:
			in.cmdline = "a\nb";
			break;
		default:
			in.host_key_private = "";
			break;
		}
		assert_int_equal(seed_render(&in, &f, &err), -EINVAL);
		assert_true(strncmp(err.msg, "seed: ", 6) == 0);
		assert_null(f.user_data);
	}
	for (size_t k = 0; k < ARRAY_SIZE(bad_ud); k++) {
		struct seed_input in = c[0].in;
		struct seed_files f = { 0 };
		struct bg_err err = { 0 };

		in.user_data = bad_ud[k];
		assert_int_equal(seed_render(&in, &f, &err), -EINVAL);
	}
	seed_files_release(NULL);
}

static bool have_tool(const char *name)
{
	_cleanup_free_ char *p = proc_find_in_path(name);

	return p != NULL;
}

static void test_write_iso(void **state)
{
	size_t n;
	struct seed_case *c = cases(&n);
	_cleanup_free_ char *dir = NULL, *iso = NULL, *out = NULL, *listing = NULL;
	struct seed_files f;
	struct bg_err err = { 0 };
	struct stat st;

	(void)state;
	if (!have_tool("genisoimage") || !have_tool("isoinfo")) {
		test_skip_reason("genisoimage/isoinfo not installed (make deps installs them)");
		skip();
	}
	dir = test_tmpdir("bg-seed-iso");
	iso = fs_path_join(dir, "seed.iso");
	render_ok(&c[3].in, &f);
	/* Over an older seed: replaced atomically. */
	test_write_file(iso, "old");
	assert_int_equal(seed_write_iso(&f, host_private, host_public, iso, &err), 0);
	assert_int_equal(stat(iso, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_true(st.st_size > 0 && st.st_size <= SEED_MAX_BYTES);
	{
		const char *argv[] = { "isoinfo", "-d", "-i", iso, NULL };

		assert_int_equal(proc_run(argv, 30000, &out, &err), 0);
		expect_in(out, "Volume id: cidata\n", "volume id");
		expect_in(out, "Rock Ridge signatures version", "Rock Ridge");
		expect_in(out, "Joliet with UCS level", "Joliet");
	}
	{
		const char *argv[] = { "isoinfo", "-R", "-f", "-i", iso, NULL };
		static const char *const want[] = {
			"/meta-data\n",
			"/user-data\n",
			"/network-config\n",
			"/banger/cmdline\n",
			"/banger/ssh_host_ed25519_key\n",
			"/banger/ssh_host_ed25519_key.pub\n",
		};

		assert_int_equal(proc_run(argv, 30000, &listing, &err), 0);
		for (size_t i = 0; i < ARRAY_SIZE(want); i++)
			expect_in(listing, want[i], "listing");
	}
	{
		/* The files in the image are the rendered ones; the private key is 0600. */
		_cleanup_free_ char *ud = NULL, *key = NULL, *lsl = NULL;
		const char *a1[] = { "isoinfo", "-R", "-i", iso, "-x", "/user-data", NULL };
		const char *a2[] = { "isoinfo", "-R", "-i",
				     iso,	"-x", "/banger/ssh_host_ed25519_key",
				     NULL };
		const char *a3[] = { "isoinfo", "-R", "-l", "-i", iso, NULL };

		assert_int_equal(proc_run(a1, 30000, &ud, &err), 0);
		assert_string_equal(ud, f.user_data);
		assert_int_equal(proc_run(a2, 30000, &key, &err), 0);
		assert_string_equal(key, host_private);
		assert_int_equal(proc_run(a3, 30000, &lsl, &err), 0);
		expect_in(lsl, "-rw-------", "0600 files (user-data, the private key)");
	}
	/* Nothing left behind but the image. */
	{
		const char *argv[] = { "ls", "-A", dir, NULL };
		_cleanup_free_ char *ls = NULL;

		assert_int_equal(proc_run(argv, 30000, &ls, &err), 0);
		assert_string_equal(ls, "seed.iso\n");
	}
	seed_files_release(&f);

	/* Too big: refused before genisoimage runs, the old image untouched. */
	{
		struct seed_files big = { 0 };
		char *huge = xmalloc(SEED_MAX_BYTES + 2);

		memset(huge, 'a', SEED_MAX_BYTES + 1);
		huge[SEED_MAX_BYTES + 1] = '\0';
		big.meta_data = xstrdup("x");
		big.network_config = xstrdup("x");
		big.cmdline = xstrdup("x");
		big.user_data = huge;
		assert_int_equal(seed_write_iso(&big, host_private, host_public, iso, &err),
				 -EFBIG);
		expect_in(err.msg, "4 MiB", "size message");
		seed_files_release(&big);
		assert_int_equal(stat(iso, &st), 0);
		assert_int_equal(st.st_mode & 07777, 0600);
	}
	test_rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),		cmocka_unit_test(test_cloudinit_view),
		cmocka_unit_test(test_merge_semantics), cmocka_unit_test(test_hostile_round_trip),
		cmocka_unit_test(test_render_errors),	cmocka_unit_test(test_write_iso),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
