/*
 * jsondump.h — compact JSON text of a jansson tree, byte for byte what json_dumps(JSON_COMPACT)
 * writes, without its per-node costs (a "%p" key and a hashtable entry per container for loop
 * detection, a callback per string segment). Used for every key-service response and, with sorted
 * keys, every audit record.
 */
#ifndef ENVELOPEFS_JSONDUMP_H
#define ENVELOPEFS_JSONDUMP_H

#include <stddef.h>
#include <jansson.h>

/* New NUL-terminated malloc'd text in *out (length *len): 0. -1 on OOM, on a real number (not
 * produced here; the caller falls back to jansson), or nesting deeper than 32. On failure nothing is
 * left allocated and partial text is wiped. Free the text wiped: it may hold plaintext. */
int efs_json_dump_compact(const json_t *j, char **out, size_t *len);

/* The same, byte for byte what json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes: every object's members
 * in the byte order of their keys (the audit trail's records). */
int efs_json_dump_compact_sorted(const json_t *j, char **out, size_t *len);

/* Appending to a growing text (the audit trail's records are written directly with these). cap 0 and p
 * NULL is an empty buffer; a buffer that grows is wiped before its old block is freed. 0, or -1 on OOM. */
struct efs_jbuf {
    char *p;
    size_t n, cap;
};
int efs_jbuf_put(struct efs_jbuf *b, const char *s, size_t n);
/* s[0..n) as a JSON string, escaped as json_dumps escapes it (quotes included). */
int efs_jbuf_string(struct efs_jbuf *b, const char *s, size_t n);
/* j with sorted keys, as efs_json_dump_compact_sorted writes it; -1 on OOM, a real or deep nesting, with
 * b->n back where it was (the caller may append jansson's own text instead). */
int efs_jbuf_value_sorted(struct efs_jbuf *b, const json_t *j);

#endif
