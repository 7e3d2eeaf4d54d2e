/*
 * fuzz_sigv4_auth.c — sigv4_parse_auth (common/sigv4.c), the Authorization header of every request
 * to `envelopefs kms serve`. The input is the header value (up to its first NUL). A parsed header's
 * fields must all be NUL-terminated strings inside the parsed copy, of the shapes sigv4.h promises,
 * and the header rebuilt from them must parse to the same fields.
 */
#include <string.h>

#include "envelopefs/sigv4.h"
#include "fuzz.h"

/* p is a NUL-terminated string lying inside a->buf. */
static void inside(const sigv4_auth *a, const char *p)
{
    FUZZ_CHECK(p && p >= a->buf && p < a->buf + sizeof a->buf);
    FUZZ_CHECK(memchr(p, 0, (size_t)(a->buf + sizeof a->buf - p)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sigv4_auth a, b; /* 1 KiB each: kept off the stack */
    char *header = malloc(size + 1), rebuilt[2048];
    int n;

    if (!header)
        return 0;
    memcpy(header, data, size);
    header[size] = 0;
    if (sigv4_parse_auth(header, &a)) {
        free(header);
        return 0;
    }
    FUZZ_CHECK(!strncmp(header, "AWS4-HMAC-SHA256 ", 17) && strlen(header) < sizeof a.buf);
    inside(&a, a.access_key);
    inside(&a, a.date);
    inside(&a, a.region);
    inside(&a, a.service);
    inside(&a, a.signed_headers);
    inside(&a, a.signature);
    FUZZ_CHECK(*a.access_key && *a.region && *a.service && *a.signed_headers);
    FUZZ_CHECK(strlen(a.date) == 8);
    FUZZ_CHECK(strlen(a.signature) == 64 && strspn(a.signature, "0123456789abcdef") == 64);
    FUZZ_CHECK(!strchr(a.access_key, '/') && !strchr(a.date, '/') && !strchr(a.region, '/') &&
               !strchr(a.service, '/'));
    FUZZ_CHECK(!strchr(a.signed_headers, ','));

    /* Round trip: the canonical form of the same fields (up to two bytes longer than a header that
     * separates its parts with "," alone: only compared when it still fits). */
    n = snprintf(rebuilt, sizeof rebuilt, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                 "Signature=%s", a.access_key, a.date, a.region, a.service, a.signed_headers, a.signature);
    if (n > 0 && (size_t)n < sizeof a.buf) {
        FUZZ_CHECK(sigv4_parse_auth(rebuilt, &b) == 0);
        FUZZ_CHECK(!strcmp(a.access_key, b.access_key) && !strcmp(a.date, b.date) && !strcmp(a.region, b.region) &&
                   !strcmp(a.service, b.service) && !strcmp(a.signed_headers, b.signed_headers) &&
                   !strcmp(a.signature, b.signature));
    }
    free(header);
    return 0;
}
