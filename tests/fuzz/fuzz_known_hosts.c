/*
 * fuzz_known_hosts.c - the known_hosts parser, the host-key decision and the
 * removal filter on arbitrary file contents.
 *
 * Invariants checked: nothing crashes or reads out of bounds (ASan/UBSan),
 * removal never grows the file and is idempotent (a second pass removes
 * nothing), and after removal no plain line names the removed hosts.
 *
 * The module's .c is included to reach the line iterator and the filter.
 */
#include "reconciler/guest/known_hosts.c"

/* An ed25519 public key blob (tests/unit/data/known_hosts/key_a.pub). */
static const char offered_b64[] =
	"AAAAC3NzaC1lZDI1NTE5AAAAIKceyvuO6yXTJ/OpD4608zv1W9EryHmwUR3JvAOQUwnB";

static int count_named(const struct kh_line *l, void *arg)
{
	unsigned *n = arg;

	if (l->status != KH_LINE_COMMENT && l->marker == KH_MARKER_NONE && l->exact)
		(*n)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = { "web.vm", "172.30.0.10" };
	static const int ports[] = { 22, 2222 };
	uint8_t *blob = NULL;
	size_t blob_len = 0;

	if (size > KH_FILE_MAX)
		return 0;
	log_set_level(LOG_LEVEL_ERR); /* skipped lines are logged at debug/warn */
	if (base64_decode(offered_b64, strlen(offered_b64), &blob, &blob_len) < 0)
		abort();

	for (size_t h = 0; h < 2; h++)
		for (size_t p = 0; p < 2; p++) {
			struct kh_match m;
			int r = known_hosts_check_buffer((const char *)data, size, hosts[h],
							 ports[p], blob, blob_len, &m, NULL);

			if (r < 0 || r >= KH_VERDICT_MAX)
				abort();
			if ((r == KH_NEW) != (m.line == 0))
				abort();
		}

	/* The input as a key blob, too. */
	{
		struct kh_key k;

		kh_key_init(&k);
		(void)kh_key_parse(data, size, &k);
		kh_key_release(&k);
	}

	for (size_t p = 0; p < 2; p++) {
		char *q[2] = { NULL, NULL };
		struct remove_ctx once, twice;
		unsigned left = 0;

		if (queries_make(hosts, 2, ports[p], q, NULL) < 0)
			abort();
		buf_init(&once.out);
		buf_init(&twice.out);
		once.removed = twice.removed = 0;
		if (kh_foreach((const char *)data, size, q, 2, remove_line, &once) != 0)
			abort();
		if (once.out.len > size)
			abort();
		if (kh_foreach(once.out.data, once.out.len, q, 2, remove_line, &twice) != 0)
			abort();
		if (twice.removed != 0 || twice.out.len != once.out.len ||
		    memcmp(twice.out.data, once.out.data, once.out.len) != 0)
			abort();
		if (kh_foreach(once.out.data, once.out.len, q, 2, count_named, &left) != 0 || left)
			abort();
		buf_release(&once.out);
		buf_release(&twice.out);
		queries_free(q, 2);
	}
	free(blob);
	return 0;
}
