/*
 * readfile.h — read a whole file into memory, for files that may hold secrets (TLS keys, plaintext
 * arguments of the CLI).
 */
#ifndef ENVELOPEFS_READFILE_H
#define ENVELOPEFS_READFILE_H

#include <stddef.h>

/* The whole of path in a malloc'd, NUL-terminated buffer; *len (if non-NULL) its length without the
 * NUL. The buffer is sized from fstat first, so no partial copy is left behind by realloc; on failure
 * whatever was read is wiped. NULL with errno on failure (EFBIG if the file grew by more than 4 KiB
 * while it was read). The caller frees it (wiping it first if it may hold a secret). */
char *efs_read_file(const char *path, size_t *len) __attribute__((warn_unused_result));

#endif
