/*
 * ectx.c — canonical encryption-context encoding (see ectx.h).
 */
#include "ectx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmp_pair(const void *a, const void *b)
{
    const kms_ectx_pair *x = *(const kms_ectx_pair *const *)a;
    const kms_ectx_pair *y = *(const kms_ectx_pair *const *)b;
    return strcmp(x->key, y->key); /* strcmp compares as unsigned char: bytewise order */
}

static uint8_t *put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

int kms_ectx_encode(const kms_ectx *ctx, uint8_t **out, size_t *out_len)
{
    size_t n = ctx ? ctx->n : 0, total = 2;
    const kms_ectx_pair **sorted = NULL;
    uint8_t *buf, *p;

    if (n > 65535)
        return -EINVAL;
    if (n) {
        sorted = malloc(n * sizeof *sorted);
        if (!sorted)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            size_t kl = strlen(ctx->pairs[i].key), vl = strlen(ctx->pairs[i].value);
            if (kl == 0 || kl > 65535 || vl > 65535) {
                free(sorted);
                return -EINVAL;
            }
            total += 4 + kl + vl;
            sorted[i] = &ctx->pairs[i];
        }
        qsort(sorted, n, sizeof *sorted, cmp_pair);
        for (size_t i = 1; i < n; i++)
            if (!strcmp(sorted[i - 1]->key, sorted[i]->key)) {
                free(sorted);
                return -EINVAL;
            }
    }
    buf = malloc(total);
    if (!buf) {
        free(sorted);
        return -ENOMEM;
    }
    p = put16(buf, n);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(sorted[i]->key), vl = strlen(sorted[i]->value);
        p = put16(p, kl);
        memcpy(p, sorted[i]->key, kl);
        p += kl;
        p = put16(p, vl);
        memcpy(p, sorted[i]->value, vl);
        p += vl;
    }
    free(sorted);
    *out = buf;
    *out_len = total;
    return 0;
}
