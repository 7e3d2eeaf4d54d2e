/*
 * fuzz_ectx.c — kms_ectx_encode (kms/ectx.c), the canonical encoding of an encryption context that
 * becomes AEAD associated data. ectx.c has no decoder (the context arrives as a JSON object, parsed by
 * ops.c behind kms_core_call: see fuzz_kms_call.c), so this target checks the encoder against one:
 * the input is NUL-separated strings key, value, key, value...; the encoder must refuse exactly the
 * contexts the contract names (an empty key, a duplicate key) and otherwise produce bytes that decode
 * back to the same pairs, sorted by key, whatever the order the pairs were given in.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "ectx.h"
#include "fuzz.h"

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const kms_ectx_pair *)a)->key, ((const kms_ectx_pair *)b)->key);
}

static size_t get16(const uint8_t *p) { return (size_t)p[0] << 8 | p[1]; }

/* Decode enc (the reference decoder of ectx.h's format) and compare it with the sorted pairs. */
static void check_encoding(const uint8_t *enc, size_t len, const kms_ectx_pair *sorted, size_t n)
{
    size_t off = 2;
    FUZZ_CHECK(len >= 2 && get16(enc) == n);
    for (size_t i = 0; i < n; i++) {
        size_t kl, vl;
        FUZZ_CHECK(off + 2 <= len);
        kl = get16(enc + off);
        off += 2;
        FUZZ_CHECK(kl == strlen(sorted[i].key) && off + kl <= len && !memcmp(enc + off, sorted[i].key, kl));
        off += kl;
        FUZZ_CHECK(off + 2 <= len);
        vl = get16(enc + off);
        off += 2;
        FUZZ_CHECK(vl == strlen(sorted[i].value) && off + vl <= len && !memcmp(enc + off, sorted[i].value, vl));
        off += vl;
    }
    FUZZ_CHECK(off == len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 2);
    kms_ectx_pair *pairs, *sorted, *reversed;
    size_t n = 0, nstr = 0, enc_len = 0, enc2_len = 0;
    uint8_t *enc = NULL, *enc2 = NULL;
    bool valid = true;
    const char *s;
    int rc;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = text[size + 1] = 0; /* the last string ends, and an odd one out gets an empty value */
    for (size_t i = 0; i < size; i++)
        nstr += !data[i];
    nstr += size && data[size - 1] ? 1 : 0;
    pairs = calloc(nstr / 2 + 1, sizeof *pairs);
    sorted = calloc(nstr / 2 + 1, sizeof *sorted);
    reversed = calloc(nstr / 2 + 1, sizeof *reversed);
    if (!pairs || !sorted || !reversed)
        goto out;
    for (s = text; s < text + size; n++) {
        pairs[n].key = s;
        s += strlen(s) + 1;
        pairs[n].value = s < text + size ? s : text + size + 1;
        s += strlen(pairs[n].value) + 1;
    }
    FUZZ_CHECK(n <= nstr / 2 + 1);

    /* What the contract says the answer is. */
    memcpy(sorted, pairs, n * sizeof *pairs);
    qsort(sorted, n, sizeof *sorted, cmp_key);
    for (size_t i = 0; i < n; i++)
        if (!*sorted[i].key || strlen(sorted[i].key) > 65535 || strlen(sorted[i].value) > 65535 ||
            (i && !strcmp(sorted[i - 1].key, sorted[i].key)))
            valid = false;
    if (n > 65535)
        valid = false;

    rc = kms_ectx_encode(&(kms_ectx){pairs, n}, &enc, &enc_len);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
    if (rc == -ENOMEM)
        goto out;
    FUZZ_CHECK((rc == 0) == valid);
    if (rc)
        goto out;
    check_encoding(enc, enc_len, sorted, n);

    /* Canonical: the same pairs in another order encode to the same bytes. */
    for (size_t i = 0; i < n; i++)
        reversed[i] = pairs[n - 1 - i];
    rc = kms_ectx_encode(&(kms_ectx){reversed, n}, &enc2, &enc2_len);
    FUZZ_CHECK(rc == 0 || rc == -ENOMEM);
    if (rc == 0)
        FUZZ_CHECK(enc2_len == enc_len && !memcmp(enc, enc2, enc_len));
    if (n == 0) { /* no context and an empty one are the same */
        free(enc2);
        enc2 = NULL;
        FUZZ_CHECK(kms_ectx_encode(NULL, &enc2, &enc2_len) == 0 && enc2_len == 2 && !memcmp(enc2, "\0\0", 2));
    }
out:
    free(enc);
    free(enc2);
    free(pairs);
    free(sorted);
    free(reversed);
    free(text);
    return 0;
}
