/*
 * specfile.h - editing spec files in place: replace or remove one document of
 * a (possibly multi-document) YAML file, atomically.
 */
#ifndef BANGER_CLI_SPECFILE_H
#define BANGER_CLI_SPECFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Replace bytes [start, end) of 'file' with 'text' (NULL: remove them). */
struct specfile_edit {
	const char *file;
	size_t start;
	size_t end;
	const char *text; /* a document body (see specfile_doc_body), or NULL */
	bool create;	  /* the file is new: write text as its whole content */
};

/*
 * The body of a YAML document as written in a file: without a leading "---"
 * marker line or a trailing "..." line, ending with exactly one newline. Owned.
 */
char *specfile_doc_body(const char *text, size_t len);

/*
 * Apply edits, grouped per file, each file rewritten once with temp + fsync +
 * rename (its mode kept; new files 0644). A replaced document that started
 * with a "---" marker keeps it, so neighbouring documents stay apart. A file
 * left with no content but comments and markers is removed. Returns 0 or
 * -errno at the first file that fails (earlier files stay written).
 */
int specfile_apply(struct specfile_edit *edits, size_t n, struct bg_err *err);

#endif
