/*
 * jsondump.c — compact JSON serialisation (see jsondump.h). Output matches jansson 2.14's
 * json_dumps(JSON_COMPACT): members in insertion order (or, sorted, in the byte order of their keys, as
 * JSON_SORT_KEYS orders them), "," and ":" without spaces, strings with
 * \" \\ \b \f \n \r \t and \u00XX for other control characters, everything else (UTF-8) verbatim,
 * integers in decimal. Buffers that grow are wiped before they are freed.
 */
#include "common/jsondump.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static int put(struct efs_jbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = 2 * b->cap + n + 1;
        char *np = malloc(cap);
        if (!np)
            return -1;
        if (b->p) {
            memcpy(np, b->p, b->n);
            sodium_memzero(b->p, b->cap);
            free(b->p);
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static int put_string(struct efs_jbuf *b, const char *s, size_t n)
{
    size_t run = 0;
    if (put(b, "\"", 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        const char *e = NULL;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (put(b, s + run, i - run))
            return -1;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", c);
            e = esc;
        }
        if (put(b, e, strlen(e)))
            return -1;
        run = i + 1;
    }
    if (put(b, s + run, n - run))
        return -1;
    return put(b, "\"", 1);
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b); /* unsigned bytes, as jansson's memcmp */
}

static int dump(struct efs_jbuf *b, const json_t *j, int depth, int sorted);

/* An object's members in key order: the keys sorted in a stack array (malloc'd past 32 members). */
static int dump_sorted(struct efs_jbuf *b, const json_t *j, int depth)
{
    const char *stack[32], **keys = stack, *k;
    size_t n = json_object_size(j), i = 0;
    json_t *v;
    int rc = 0;
    if (n > sizeof stack / sizeof stack[0] && !(keys = malloc(n * sizeof *keys)))
        return -1;
    json_object_foreach((json_t *)j, k, v)
        keys[i++] = k;
    qsort(keys, n, sizeof *keys, cmp_keys);
    for (i = 0; i < n && !rc; i++)
        rc = (i && put(b, ",", 1)) || put_string(b, keys[i], strlen(keys[i])) || put(b, ":", 1) ||
                     dump(b, json_object_get(j, keys[i]), depth + 1, 1)
                 ? -1
                 : 0;
    if (keys != stack)
        free(keys);
    return rc;
}

static int dump(struct efs_jbuf *b, const json_t *j, int depth, int sorted)
{
    if (depth > 32)
        return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        if (put(b, "{", 1))
            return -1;
        if (sorted)
            return dump_sorted(b, j, depth) ? -1 : put(b, "}", 1);
        json_object_foreach((json_t *)j, k, v) {
            if ((!first && put(b, ",", 1)) || put_string(b, k, strlen(k)) || put(b, ":", 1) ||
                dump(b, v, depth + 1, 0))
                return -1;
            first = 0;
        }
        return put(b, "}", 1);
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        if (put(b, "[", 1))
            return -1;
        json_array_foreach((json_t *)j, i, v) {
            if ((i && put(b, ",", 1)) || dump(b, v, depth + 1, sorted))
                return -1;
        }
        return put(b, "]", 1);
    }
    case JSON_STRING:
        return put_string(b, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: {
        char num[32];
        int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return n > 0 ? put(b, num, (size_t)n) : -1;
    }
    case JSON_TRUE:
        return put(b, "true", 4);
    case JSON_FALSE:
        return put(b, "false", 5);
    case JSON_NULL:
        return put(b, "null", 4);
    default: /* JSON_REAL: jansson's formatting rules are left to jansson */
        return -1;
    }
}

static int dump_text(const json_t *j, char **out, size_t *len, int sorted)
{
    struct efs_jbuf b = {malloc(1024), 0, 1024};
    *out = NULL;
    *len = 0;
    if (!b.p)
        return -1;
    if (!j || dump(&b, j, 0, sorted)) {
        sodium_memzero(b.p, b.cap);
        free(b.p);
        return -1;
    }
    b.p[b.n] = 0;
    *out = b.p;
    *len = b.n;
    return 0;
}

int efs_json_dump_compact(const json_t *j, char **out, size_t *len)
{
    return dump_text(j, out, len, 0);
}

int efs_json_dump_compact_sorted(const json_t *j, char **out, size_t *len)
{
    return dump_text(j, out, len, 1);
}

int efs_jbuf_put(struct efs_jbuf *b, const char *s, size_t n)
{
    return put(b, s, n);
}

int efs_jbuf_string(struct efs_jbuf *b, const char *s, size_t n)
{
    return put_string(b, s, n);
}

int efs_jbuf_value_sorted(struct efs_jbuf *b, const json_t *j)
{
    size_t at = b->n;
    if (j && !dump(b, j, 0, 1))
        return 0;
    b->n = at;
    return -1;
}
