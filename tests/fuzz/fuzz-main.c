/*
 * fuzz-main.c - replay driver for libFuzzer targets (systemd fuzz-main.c style).
 *
 * Built with a fuzz target when not fuzzing: runs LLVMFuzzerTestOneInput over
 * every file named on the command line, or every file in a directory named
 * there, so 'make test' replays the committed corpus under plain gcc (and
 * under ASan with 'make asan'). Without arguments, the program fuzz_<t>
 * replays tests/fuzz/corpus/<t>/ (run from the top of the tree). Exits 0 when
 * every input ran to completion; a crash is the failure.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	char *data = NULL;
	size_t len = 0;
	struct bg_err err = { 0 };

	if (fs_read_file(path, 16 * 1024 * 1024, &data, &len, &err) < 0) {
		fprintf(stderr, "fuzz-main: %s\n", err.msg);
		return -1;
	}
	LLVMFuzzerTestOneInput((const uint8_t *)data, len);
	free(data);
	return 0;
}

static int run_path(const char *path, unsigned *count)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (stat(path, &st) < 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	d = opendir(path);
	if (!d) {
		perror(path);
		return -1;
	}
	while ((de = readdir(d))) {
		char *p;

		if (de->d_name[0] == '.')
			continue;
		p = fs_path_join(path, de->d_name);
		if (run_path(p, count) < 0)
			r = -1;
		free(p);
	}
	closedir(d);
	return r;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int r = 0;

	if (argc < 2) {
		const char *base = strrchr(argv[0], '/');
		char path[4096];

		base = base ? base + 1 : argv[0];
		if (strncmp(base, "fuzz_", 5) == 0)
			base += 5;
		snprintf(path, sizeof(path), "tests/fuzz/corpus/%s", base);
		if (run_path(path, &count) < 0)
			r = 1;
	}
	for (int i = 1; i < argc; i++)
		if (run_path(argv[i], &count) < 0)
			r = 1;
	if (count == 0) {
		fprintf(stderr, "fuzz-main: no inputs found\n");
		r = 1;
	}
	printf("fuzz-main: replayed %u inputs\n", count);
	return r;
}
