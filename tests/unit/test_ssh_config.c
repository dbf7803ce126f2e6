/*
 * test_ssh_config.c - reconciler/guest/ssh_config.c: the rendered block, the
 * splice (idempotent, byte for byte outside the markers), writing banger's
 * file (fail closed), the Include at the top of ~/.ssh/config, and what
 * OpenSSH itself makes of the result (`ssh -G -F`).
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
#include "reconciler/guest/ssh_config.h"
#include "tests/lib/testutil.h"

static char *tmpdir;

static int group_setup(void **state)
{
	(void)state;
	tmpdir = test_tmpdir("bg-sshcfg");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	test_rmtree(tmpdir);
	free(tmpdir);
	return 0;
}

static char *slurp(const char *path)
{
	char *data = NULL;
	struct bg_err err = { 0 };

	assert_int_equal(fs_read_file(path, 1 << 20, &data, NULL, &err), 0);
	return data;
}

static void test_render(void **state)
{
	_cleanup_free_ char *block = NULL;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(ssh_config_render("/var/lib/banger/", "/usr/bin/banger", &block, &err), 0);
	assert_string_equal(block,
			    "# BEGIN banger managed block\n"
			    "# Written by 'banger ssh-config'; edits inside this block are "
			    "replaced.\n"
			    "Host *.vm\n"
			    "    UserKnownHostsFile \"/var/lib/banger/ssh/known_hosts\"\n"
			    "    StrictHostKeyChecking accept-new\n"
			    "    HashKnownHosts no\n"
			    "    UpdateHostKeys no\n"
			    "    User root\n"
			    "    IdentityFile \"/var/lib/banger/ssh/id_ed25519\"\n"
			    "    ProxyCommand '/usr/bin/banger' --state-dir '/var/lib/banger' "
			    "ssh-proxy %n\n"
			    "# END banger managed block\n");
	free(block);
	block = NULL;
	/* '%' is a token character in all three paths; spaces are fine inside quotes */
	assert_int_equal(ssh_config_render("/srv/my state/100%", "/opt/b%n/banger", &block, &err),
			 0);
	assert_non_null(
		strstr(block, "UserKnownHostsFile \"/srv/my state/100%%/ssh/known_hosts\""));
	assert_non_null(strstr(block, "IdentityFile \"/srv/my state/100%%/ssh/id_ed25519\""));
	assert_non_null(strstr(block,
			       "ProxyCommand '/opt/b%%n/banger' --state-dir '/srv/my state/100%%' "
			       "ssh-proxy %n\n"));
	assert_null(strstr(block, "%h"));
}

static void test_render_refuses_unsafe_paths(void **state)
{
	const char *bad[] = { "relative", "", "/a\"b", "/a'b", "/a\\b", "/a\nb", "/a$b", "/a\tb" };
	struct bg_err err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *block = NULL;

		assert_int_equal(ssh_config_render(bad[i], "/usr/bin/banger", &block, &err),
				 -EINVAL);
		assert_null(block);
		assert_int_equal(ssh_config_render("/var/lib/banger", bad[i], &block, &err),
				 -EINVAL);
		assert_null(block);
	}
	assert_int_equal(ssh_config_render(NULL, "/usr/bin/banger", &(char *){ NULL }, &err),
			 -EINVAL);
}

static void test_splice(void **state)
{
	const char *block = "# BEGIN banger managed block\nX\n# END banger managed block\n";
	const char *block2 = "# BEGIN banger managed block\nY\n# END banger managed block\n";
	const char *user = "# mine\r\nHost *\n  User bob\n";
	_cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
	_cleanup_free_ char *want = NULL;

	(void)state;
	/* inserted at the top, user's bytes kept */
	a = ssh_config_splice(user, strlen(user), block);
	want = xasprintf("%s%s", block, user);
	assert_string_equal(a, want);
	/* idempotent */
	b = ssh_config_splice(a, strlen(a), block);
	assert_string_equal(a, b);
	/* replaced in place, wherever it is, everything around it byte for byte */
	free(want);
	want = xasprintf("top\n%smid\n", block);
	c = ssh_config_splice(want, strlen(want), block2);
	assert_string_equal(c, "top\n# BEGIN banger managed block\nY\n# END banger managed "
			       "block\nmid\n");
	/* a BEGIN without END: replaced through the end */
	d = ssh_config_splice("a\n# BEGIN banger managed block\nold\n", 35, block);
	free(want);
	want = xasprintf("a\n%s", block);
	assert_string_equal(d, want);
	/* empty file */
	e = ssh_config_splice("", 0, block);
	assert_string_equal(e, block);
}

static void test_write_banger_file(void **state)
{
	_cleanup_free_ char *st = xasprintf("%s/state", tmpdir);
	_cleanup_free_ char *path = NULL, *first = NULL, *again = NULL, *path2 = NULL;
	_cleanup_free_ char *want = NULL, *edited = NULL;
	struct bg_err err = { 0 };
	struct stat s;

	(void)state;
	assert_int_equal(ssh_config_write(st, "/usr/bin/banger", &path, &err), 0);
	want = xasprintf("%s/ssh/ssh_config", st);
	assert_string_equal(path, want);
	assert_int_equal(stat(st, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0700);
	free(want);
	want = xasprintf("%s/ssh", st);
	assert_int_equal(stat(want, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0700);
	first = slurp(path);
	assert_non_null(strstr(first, "Host *.vm\n"));
	/* user text around the block survives a rewrite */
	edited = xasprintf("# user note\n%sHost extra\n", first);
	test_write_file(path, edited);
	assert_int_equal(ssh_config_write(st, "/usr/bin/banger", &path2, &err), 0);
	again = slurp(path);
	assert_string_equal(again, edited);
}

static void test_write_fails_closed(void **state)
{
	_cleanup_free_ char *file = xasprintf("%s/a-file", tmpdir);
	_cleanup_free_ char *under = xasprintf("%s/a-file/state", tmpdir);
	char *path = NULL;
	struct bg_err err = { 0 };

	(void)state;
	test_write_file(file, "x");
	assert_true(ssh_config_write(under, "/usr/bin/banger", &path, &err) < 0);
	assert_null(path);
	assert_true(ssh_config_write("relative/state", "/usr/bin/banger", &path, &err) < 0);
	assert_null(path);
	assert_false(fs_exists("relative"));
	assert_true(ssh_config_write("/x\"y", "/usr/bin/banger", &path, &err) < 0);
	assert_false(fs_exists("/x\"y"));
}

/* What OpenSSH itself resolves for host through config file f. */
static char *ssh_G(const char *f, const char *host)
{
	const char *argv[] = { "ssh", "-F", f, "-G", host, NULL };
	char *out = NULL;
	struct bg_err err = { 0 };

	assert_int_equal(proc_run(argv, 30000, &out, &err), 0);
	return out;
}

static void test_install_include(void **state)
{
	_cleanup_free_ char *home = xasprintf("%s/home", tmpdir);
	_cleanup_free_ char *cfg = xasprintf("%s/home/.ssh/config", tmpdir);
	_cleanup_free_ char *st = xasprintf("%s/inc-state", tmpdir);
	_cleanup_free_ char *path = NULL, *text = NULL, *want = NULL, *g = NULL;
	_cleanup_free_ char *ssh = proc_find_in_path("ssh");
	const char *user = "Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile "
			   "/dev/null\n    User bob\n";
	struct bg_err err = { 0 };
	struct stat s;

	(void)state;
	assert_int_equal(mkdir(home, 0755), 0);
	assert_int_equal(ssh_config_write(st, "/usr/bin/banger", &path, &err), 0);
	/* no ~/.ssh yet: created 0700, config 0600 */
	assert_int_equal(ssh_config_install_include(cfg, path, &err), 1);
	free(want);
	want = xasprintf("%s/home/.ssh", tmpdir);
	assert_int_equal(stat(want, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0700);
	assert_int_equal(stat(cfg, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0600);
	/* the user's own config goes after our block; mode is kept */
	free(want);
	want = xasprintf("# BEGIN banger managed block\nInclude \"%s\"\n# END banger managed "
			 "block\n",
			 path);
	text = slurp(cfg);
	assert_string_equal(text, want);
	test_write_file(cfg, user);
	assert_int_equal(chmod(cfg, 0640), 0);
	assert_int_equal(ssh_config_install_include(cfg, path, &err), 1);
	assert_int_equal(ssh_config_install_include(cfg, path, &err), 0); /* idempotent */
	free(text);
	text = slurp(cfg);
	free(want);
	want = xasprintf("# BEGIN banger managed block\nInclude \"%s\"\n# END banger managed "
			 "block\n%s",
			 path, user);
	assert_string_equal(text, want);
	assert_int_equal(stat(cfg, &s), 0);
	assert_int_equal(s.st_mode & 07777, 0640);

	/* OpenSSH agrees: *.vm gets our settings although a 'Host *' follows... */
	if (!ssh)
		return;
	g = ssh_G(cfg, "web.vm");
	assert_non_null(strstr(g, "stricthostkeychecking accept-new\n"));
	assert_non_null(strstr(g, "hashknownhosts no\n"));
	assert_non_null(strstr(g, "updatehostkeys false\n"));
	assert_non_null(strstr(g, "user root\n"));
	free(want);
	want = xasprintf("userknownhostsfile %s/ssh/known_hosts\n", st);
	assert_non_null(strstr(g, want));
	free(want);
	want = xasprintf("proxycommand '/usr/bin/banger' --state-dir '%s' ssh-proxy %%n\n", st);
	assert_non_null(strstr(g, want));
	free(g);
	/* ...and the user's 'Host *' still rules every other host. */
	g = ssh_G(cfg, "example.org");
	assert_non_null(strstr(g, "stricthostkeychecking false\n"));
	assert_non_null(strstr(g, "user bob\n"));
	assert_null(strstr(g, "ssh-proxy"));
}

static void test_install_refuses_symlinks(void **state)
{
	_cleanup_free_ char *real = xasprintf("%s/real-ssh", tmpdir);
	_cleanup_free_ char *home = xasprintf("%s/home2", tmpdir);
	_cleanup_free_ char *link_dir = xasprintf("%s/home2/.ssh", tmpdir);
	_cleanup_free_ char *cfg = xasprintf("%s/home2/.ssh/config", tmpdir);
	_cleanup_free_ char *home3 = xasprintf("%s/home3", tmpdir);
	_cleanup_free_ char *dir3 = xasprintf("%s/home3/.ssh", tmpdir);
	_cleanup_free_ char *cfg3 = xasprintf("%s/home3/.ssh/config", tmpdir);
	_cleanup_free_ char *target = xasprintf("%s/elsewhere", tmpdir);
	_cleanup_free_ char *text = NULL;
	struct bg_err err = { 0 };

	(void)state;
	assert_int_equal(mkdir(real, 0700), 0);
	assert_int_equal(mkdir(home, 0700), 0);
	assert_int_equal(symlink(real, link_dir), 0);
	assert_int_equal(ssh_config_install_include(cfg, "/x/ssh_config", &err), -EPERM);
	assert_false(fs_exists(cfg));

	assert_int_equal(mkdir(home3, 0700), 0);
	assert_int_equal(mkdir(dir3, 0700), 0);
	test_write_file(target, "Host x\n");
	assert_int_equal(symlink(target, cfg3), 0);
	assert_int_equal(ssh_config_install_include(cfg3, "/x/ssh_config", &err), -EPERM);
	text = slurp(target);
	assert_string_equal(text, "Host x\n");
	/* unsafe include paths */
	assert_int_equal(ssh_config_install_include(cfg3, "/x/*.conf", &err), -EINVAL);
	assert_int_equal(ssh_config_install_include(cfg3, "rel", &err), -EINVAL);
}

static void test_install_refuses_other_owner(void **state)
{
	_cleanup_free_ char *home = xasprintf("%s/home4", tmpdir);
	_cleanup_free_ char *dir = xasprintf("%s/home4/.ssh", tmpdir);
	_cleanup_free_ char *cfg = xasprintf("%s/home4/.ssh/config", tmpdir);
	_cleanup_free_ char *text = NULL;
	struct bg_err err = { 0 };

	(void)state;
	if (geteuid() != 0) {
		test_skip_reason("changing file owners needs root");
		skip();
	}
	assert_int_equal(mkdir(home, 0700), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	test_write_file(cfg, "Host x\n");
	assert_int_equal(chown(cfg, 4242, 4242), 0);
	assert_int_equal(ssh_config_install_include(cfg, "/x/ssh_config", &err), -EPERM);
	assert_non_null(strstr(err.msg, "4242"));
	text = slurp(cfg);
	assert_string_equal(text, "Host x\n");
	assert_int_equal(chown(dir, 4242, 4242), 0);
	assert_int_equal(ssh_config_install_include(cfg, "/x/ssh_config", &err), -EPERM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_render_refuses_unsafe_paths),
		cmocka_unit_test(test_splice),
		cmocka_unit_test(test_write_banger_file),
		cmocka_unit_test(test_write_fails_closed),
		cmocka_unit_test(test_install_include),
		cmocka_unit_test(test_install_refuses_symlinks),
		cmocka_unit_test(test_install_refuses_other_owner),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
