/*
 * jsonparse.h — JSON text to a jansson tree through yajl's lexer. Accepts and rejects what
 * json_loadb(JSON_REJECT_DUPLICATES) does on the texts the key service receives (tested against it on
 * random and malformed texts), at a fraction of the cost: jansson reads its input a byte at a time
 * through a callback and copies every string; yajl scans a buffer in place. Used for every
 * key-service request body.
 */
#ifndef ENVELOPEFS_JSONPARSE_H
#define ENVELOPEFS_JSONPARSE_H

#include <stddef.h>
#include <jansson.h>

/*
 * Parse len bytes of JSON text. Returns a new reference (json_decref it), or NULL with a short
 * reason in err (errcap bytes, may be NULL) when the text is not one well-formed JSON value, an
 * object repeats a key, a string holds a NUL, or nesting is deeper than 64. Internal buffers that
 * held request bytes (which may carry plaintext) are wiped before they are freed; the tree's own
 * strings are freed by jansson's allocator (see common/jsonwipe.h).
 */
json_t *efs_json_parse(const char *text, size_t len, char *err, size_t errcap) __attribute__((warn_unused_result));

#endif
