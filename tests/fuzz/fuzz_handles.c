/*
 * fuzz_handles.c - libFuzzer target for the handles.json parser
 * (handles_parse): any input either parses into handles that pass the same
 * checks handles_save() applies, or is rejected with -EBADMSG.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler/handles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bg_err err = { 0 };
	struct vm_handles h;
	int r;

	r = handles_parse((const char *)data, size, &h, &err);
	if (r < 0) {
		if (r != -EBADMSG || err.msg[0] == '\0')
			abort();
		return 0;
	}
	/* Accepted handles are well-formed: strings terminated, pid sane. */
	if (h.pid < 0 || (h.pid == 0) != (h.start_time == 0))
		abort();
	if (!memchr(h.tap, '\0', sizeof(h.tap)) ||
	    !memchr(h.base_loop, '\0', sizeof(h.base_loop)) ||
	    !memchr(h.cow_loop, '\0', sizeof(h.cow_loop)) ||
	    !memchr(h.dm_name, '\0', sizeof(h.dm_name)) ||
	    !memchr(h.dm_dev, '\0', sizeof(h.dm_dev)))
		abort();
	return 0;
}
