/*
 * jsonparse.c — efs_json_parse (see jsonparse.h): yajl's callbacks build jansson values on a stack of
 * open containers. yajl does the lexing, unescaping and UTF-8 validation; this file only decides
 * where each value goes and enforces what jansson would (no duplicate keys, no NUL in strings).
 */
#include "common/jsonparse.h"
#include "common/wipe.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#define MAX_DEPTH 64

struct level {
    json_t *container;
    char *key;          /* pending object key (inline or malloc'd), NULL between members */
    size_t key_len;
    char inline_key[48];
};

struct builder {
    struct level stack[MAX_DEPTH];
    int depth;          /* number of open containers */
    json_t *root;
    const char *why;    /* our own rejection reason, when a callback stops the parse */
};

/* Well-formed UTF-8 as jansson checks it: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void drop_key(struct level *l)
{
    if (l->key != l->inline_key)
        free(l->key);
    l->key = NULL;
}

/* yajl's buffers may hold unescaped request strings: wipe them on free. */
static void *y_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return malloc(n);
}

static void y_free(void *ctx, void *p)
{
    (void)ctx;
    efs_free_wiped(p);
}

static void *y_realloc(void *ctx, void *p, size_t n)
{
    size_t old;
    void *np;
    (void)ctx;
    if (!p)
        return malloc(n);
    old = malloc_usable_size(p);
    np = malloc(n);
    if (!np)
        return NULL;
    memcpy(np, p, old < n ? old : n);
    y_free(NULL, p);
    return np;
}

/* Attach v to the innermost open container (or make it the root); steals v. 1 to go on, 0 to stop. */
static int put(struct builder *b, json_t *v)
{
    struct level *l;
    if (!v) {
        b->why = "out of memory";
        return 0;
    }
    if (b->depth == 0) {
        if (b->root) { /* a second top-level value: see yajl_allow_multiple_values below */
            json_decref(v);
            b->why = "end of file expected";
            return 0;
        }
        b->root = v;
        return 1;
    }
    l = &b->stack[b->depth - 1];
    if (json_is_array(l->container))
        return json_array_append_new(l->container, v) == 0 ? 1 : (b->why = "out of memory", 0);
    if (json_object_setn_new_nocheck(l->container, l->key, l->key_len, v)) {
        b->why = "out of memory";
        drop_key(l);
        return 0;
    }
    drop_key(l);
    return 1;
}

static int open_container(struct builder *b, json_t *c)
{
    if (!c) {
        b->why = "out of memory";
        return 0;
    }
    if (b->depth == MAX_DEPTH) {
        json_decref(c);
        b->why = "maximum parsing depth reached";
        return 0;
    }
    json_incref(c); /* one reference for the stack, one for the parent (given by put) */
    if (!put(b, c)) {
        json_decref(c);
        return 0;
    }
    b->stack[b->depth].container = c;
    b->stack[b->depth].key = NULL;
    b->stack[b->depth].key_len = 0;
    b->depth++;
    return 1;
}

static int close_container(struct builder *b)
{
    struct level *l = &b->stack[--b->depth];
    json_decref(l->container); /* the stack's reference; the parent (or root) keeps its own */
    return 1;
}

static int cb_null(void *ctx) { return put(ctx, json_null()); }
static int cb_boolean(void *ctx, int v) { return put(ctx, json_boolean(v)); }
/* Numbers arrive as yajl's validated token text and are converted as jansson does: an integer unless
 * it has a fraction or exponent, out of range is an error (yajl's own integer conversion refuses
 * INT64_MIN). The program never calls setlocale, so strtod reads '.' as the decimal point. */
static int cb_number(void *ctx, const char *t, size_t n)
{
    struct builder *b = ctx;
    char small[64], *buf = n < sizeof small ? small : malloc(n + 1), *end;
    bool real = memchr(t, '.', n) || memchr(t, 'e', n) || memchr(t, 'E', n);
    json_t *v = NULL;
    if (!buf) {
        b->why = "out of memory";
        return 0;
    }
    memcpy(buf, t, n);
    buf[n] = 0;
    errno = 0;
    if (real) {
        double d = strtod(buf, &end);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
            b->why = "real number overflow";
        else
            v = json_real(d);
    } else {
        long long i = strtoll(buf, &end, 10);
        if (errno == ERANGE)
            b->why = i < 0 ? "too big negative integer" : "too big integer";
        else
            v = json_integer((json_int_t)i);
    }
    if (buf != small)
        free(buf);
    if (!v) {
        if (!b->why)
            b->why = "out of memory";
        return 0;
    }
    return put(b, v);
}

static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
    struct builder *b = ctx;
    if (memchr(s, 0, n)) {
        b->why = "\\u0000 is not allowed";
        return 0;
    }
    if (!utf8_ok(s, n)) { /* stricter than yajl's own check, as jansson's is */
        b->why = "invalid UTF-8 in a string";
        return 0;
    }
    return put(b, json_stringn_nocheck((const char *)s, n));
}

static int cb_start_map(void *ctx) { return open_container(ctx, json_object()); }
static int cb_start_array(void *ctx) { return open_container(ctx, json_array()); }
static int cb_end(void *ctx) { return close_container(ctx); }

static int cb_map_key(void *ctx, const unsigned char *k, size_t n)
{
    struct builder *b = ctx;
    struct level *l = &b->stack[b->depth - 1];
    if (memchr(k, 0, n)) {
        b->why = "\\u0000 is not allowed in an object key";
        return 0;
    }
    if (!utf8_ok(k, n)) {
        b->why = "invalid UTF-8 in an object key";
        return 0;
    }
    if (json_object_getn(l->container, (const char *)k, n)) {
        b->why = "duplicate object key";
        return 0;
    }
    l->key = n < sizeof l->inline_key ? l->inline_key : malloc(n + 1);
    if (!l->key) {
        b->why = "out of memory";
        return 0;
    }
    memcpy(l->key, k, n);
    l->key[n] = 0;
    l->key_len = n;
    return 1;
}

static const yajl_callbacks CALLBACKS = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/* A \uD800-\uDFFF escape somewhere in the text: yajl turns an unpaired one into '?' where jansson
 * refuses the text, so such (rare) texts are left to jansson. False positives only cost speed. */
static bool has_surrogate_escape(const char *t, size_t len)
{
    for (const char *p = t; (p = memchr(p, '\\', len - (size_t)(p - t))) && (size_t)(p - t) + 3 < len; p++)
        if (p[1] == 'u' && (p[2] == 'd' || p[2] == 'D') && strchr("89abcdefABCDEF", p[3]) && p[3])
            return true;
    return false;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* With the text's first value an object or array that yajl accepted: whether only whitespace follows
 * its closing bracket. yajl reports success when an incomplete token (a lone '"', "tru") follows a
 * complete value, so the end is found here by matching brackets outside strings. */
static bool only_ws_after_root(const char *t, size_t n)
{
    size_t i = 0;
    int depth = 0;
    bool in_str = false;
    while (i < n && is_ws(t[i]))
        i++;
    for (; i < n; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            break;
        }
    }
    for (i++; i < n; i++)
        if (!is_ws(t[i]))
            return false;
    return true;
}

/* Texts whose top-level value is not an object or array (never a key-service request) go to jansson,
 * as do texts with a form feed or vertical tab (see efs_json_parse). */
static bool container_first(const char *t, size_t n)
{
    size_t i = 0;
    while (i < n && is_ws(t[i]))
        i++;
    return i < n && (t[i] == '{' || t[i] == '[');
}

json_t *efs_json_parse(const char *text, size_t len, char *err, size_t errcap)
{
    yajl_alloc_funcs af = {y_malloc, y_realloc, y_free, NULL};
    struct builder b;
    yajl_handle h;
    yajl_status st;

    /* yajl also takes form feed and vertical tab for whitespace; JSON does not (nor raw in strings) */
    if (has_surrogate_escape(text, len) || !container_first(text, len) || memchr(text, '\f', len) ||
        memchr(text, '\v', len)) {
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!j && err && errcap)
            snprintf(err, errcap, "%s", je.text);
        return j;
    }
    b.depth = 0; /* the stack's levels are set as containers open */
    b.root = NULL;
    b.why = NULL;
    h = yajl_alloc(&CALLBACKS, &af, &b);
    if (!h) {
        if (err && errcap)
            snprintf(err, errcap, "out of memory");
        return NULL;
    }
    /* Multiple top-level values are "allowed" so that yajl lexes everything after the first one (with
     * trailing garbage refused it stops at an incomplete token such as a lone '"' and reports
     * success); put() refuses a second value, and an incomplete token fails yajl_complete_parse. */
    yajl_config(h, yajl_allow_multiple_values, 1);
    st = yajl_parse(h, (const unsigned char *)text, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st == yajl_status_ok && !b.depth && b.root && !only_ws_after_root(text, len)) {
        st = yajl_status_error;
        b.why = "end of file expected";
    }
    if (st != yajl_status_ok || b.depth || !b.root) {
        if (err && errcap) {
            if (b.why) {
                snprintf(err, errcap, "%s", b.why);
            } else {
                unsigned char *m = yajl_get_error(h, 0, NULL, 0);
                snprintf(err, errcap, "%s", m ? (const char *)m : "malformed JSON");
                if (m)
                    yajl_free_error(h, m);
            }
        }
        for (int i = 0; i < b.depth; i++) {
            drop_key(&b.stack[i]);
            json_decref(b.stack[i].container);
        }
        json_decref(b.root);
        yajl_free(h);
        return NULL;
    }
    yajl_free(h);
    return b.root;
}
