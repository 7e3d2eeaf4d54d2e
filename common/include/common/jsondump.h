/*
 * jsondump.h — compact JSON text of a jansson tree, byte for byte what json_dumps(JSON_COMPACT)
 * writes, without its per-node costs (a "%p" key and a hashtable entry per container for loop
 * detection, a callback per string segment). Used for every key-service response.
 */
#ifndef ENVELOPEFS_JSONDUMP_H
#define ENVELOPEFS_JSONDUMP_H

#include <stddef.h>
#include <jansson.h>

/* New NUL-terminated malloc'd text in *out (length *len): 0. -1 on OOM, on a real number (not
 * produced here; the caller falls back to jansson), or nesting deeper than 32. On failure nothing is
 * left allocated and partial text is wiped. Free the text wiped: it may hold plaintext. */
int efs_json_dump_compact(const json_t *j, char **out, size_t *len);

#endif
