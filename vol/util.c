/*
 * util.c — small helpers of the volume layer: ids, error detail, freeing records, key rings.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "vol.h"

int vol_fail(vol_err *e, int rc, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (!e)
        return rc;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return rc;
}

void vol_lineage_clear(vol_lineage *l)
{
    if (!l)
        return;
    free(l->wrapped);
    l->wrapped = NULL;
    l->wrapped_len = 0;
}

void vol_volume_clear(vol_volume *v)
{
    if (!v)
        return;
    free(v->tags);
    v->tags = NULL;
}

void vol_snapshot_clear(vol_snapshot *s)
{
    if (!s)
        return;
    free(s->description);
    free(s->tags);
    s->description = s->tags = NULL;
}

int vol_new_id(const char *prefix, char *out, size_t cap)
{
    uint8_t r[9];
    char hex[19];
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    hex[17] = 0;
    if ((size_t)snprintf(out, cap, "%s%s", prefix, hex) >= cap)
        return -ENAMETOOLONG;
    return 0;
}

bool vol_id_valid(const char *prefix, const char *s)
{
    size_t p = strlen(prefix);
    if (!s || strncmp(s, prefix, p) || strlen(s) != p + 17)
        return false;
    for (const char *c = s + p; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

int vol_keyring_add(vol_keyring *r, const char *binding, const char *lineage, const uint8_t *dk)
{
    vol_key *k;
    if (!binding || strlen(binding) != 2 * VOL_LINEAGE_LEN)
        return -EINVAL;
    if (!(k = realloc(r->k, (r->n + 1) * sizeof *k)))
        return -ENOMEM;
    r->k = k;
    k += r->n;
    memset(k, 0, sizeof *k);
    if (!(k->dk = sodium_malloc(32)))
        return -ENOMEM;
    memcpy(k->dk, dk, 32);
    snprintf(k->binding, sizeof k->binding, "%s", binding);
    snprintf(k->lineage, sizeof k->lineage, "%s", lineage ? lineage : "");
    r->n++;
    return 0;
}

const uint8_t *vol_keyring_find(const vol_keyring *r, const char *binding)
{
    for (size_t i = 0; r && binding && i < r->n; i++)
        if (!strcmp(r->k[i].binding, binding))
            return r->k[i].dk;
    return NULL;
}

void vol_keyring_clear(vol_keyring *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        sodium_free(r->k[i].dk);
    free(r->k);
    r->k = NULL;
    r->n = 0;
}

int vol_blocks_add(void *list, uint64_t block, uint64_t gen)
{
    vol_blocks *b = list;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        uint64_t *x = realloc(b->block, cap * sizeof *x), *y;
        if (!x)
            return -ENOMEM;
        b->block = x;
        if (!(y = realloc(b->gen, cap * sizeof *y)))
            return -ENOMEM;
        b->gen = y;
        b->cap = cap;
    }
    b->block[b->n] = block;
    b->gen[b->n++] = gen;
    return 0;
}

void vol_blocks_clear(vol_blocks *b)
{
    free(b->block);
    free(b->gen);
    *b = (vol_blocks){0};
}
