/*
 * sigv4.c — AWS Signature Version 4 (see sigv4.h). Canonical request:
 *   METHOD \n PATH \n QUERY \n (lowercase-name:trimmed-value \n)* \n signed;headers \n hex(sha256(payload))
 * String to sign: "AWS4-HMAC-SHA256" \n DATE \n SCOPE \n hex(sha256(canonical request)), and the key is the
 * HMAC chain "AWS4"+secret → date → region → service → "aws4_request".
 *
 * SHA-256 goes through one EVP_MD fetched once: OpenSSL 3's one-shot HMAC() and EVP_sha256() look the
 * algorithm up in the provider store (locks, allocations) on every call, which cost more than the
 * hashing. HMAC is written out over that digest (RFC 2104).
 */
#include "envelopefs/sigv4.h"
#include "common/evp.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

/* One digest context per thread, kept for the thread's life: EVP_MD_CTX_new/free per hash (an
 * allocation, a provider context, a cleanse) cost more than hashing a canonical request. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static void md_release(void *p) { EVP_MD_CTX_free(p); }
static void md_setup(void) { (void)pthread_key_create(&md_key, md_release); }

static EVP_MD_CTX *thread_md(void)
{
    EVP_MD_CTX *ctx;
    if (pthread_once(&md_once, md_setup))
        return NULL;
    ctx = pthread_getspecific(md_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (ctx && pthread_setspecific(md_key, ctx)) {
            EVP_MD_CTX_free(ctx);
            ctx = NULL;
        }
    }
    return ctx;
}

/* SHA-256 of two concatenated pieces (b may be NULL). */
static int sha256_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    EVP_MD_CTX *ctx = thread_md();
    unsigned int len = 0;
    int rc = -1;
    if (!ctx)
        return -1;
    if (EVP_DigestInit_ex(ctx, efs_evp_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, a, alen) == 1 &&
        (!blen || EVP_DigestUpdate(ctx, b, blen) == 1) && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 32)
        rc = 0;
    /* Back to the initial state: the context may have hashed HMAC key material (the final block is
     * cleansed by the finalisation, the chaining value by this). */
    (void)EVP_DigestInit_ex(ctx, efs_evp_sha256(), NULL);
    return rc;
}

static int sha256(const void *d, size_t n, uint8_t out[32]) { return sha256_2(d, n, NULL, 0, out); }

/* HMAC-SHA256 (RFC 2104). */
static int hmac(const uint8_t *key, size_t klen, const void *msg, size_t mlen, uint8_t out[32])
{
    uint8_t k[64], pad[64], inner[32];
    int rc = -1;
    memset(k, 0, sizeof k);
    if (klen > sizeof k) {
        if (sha256(key, klen, k))
            goto out;
    } else if (klen) {
        memcpy(k, key, klen);
    }
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x36;
    if (sha256_2(pad, sizeof pad, msg, mlen, inner))
        goto out;
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x5c;
    rc = sha256_2(pad, sizeof pad, inner, sizeof inner, out);
out:
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
    return rc;
}

/* A growable string, starting in a caller's (stack) buffer; heap only when that is outgrown. */
struct sb {
    char *p;
    size_t n, cap;
    int err;
    bool heap;
};

static void sb_init(struct sb *s, char *buf, size_t cap)
{
    s->p = buf;
    s->n = 0;
    s->cap = cap;
    s->err = 0;
    s->heap = false;
    buf[0] = 0;
}

static void sb_free(struct sb *s)
{
    if (s->heap)
        free(s->p);
}

static void sb_add(struct sb *s, const char *t, size_t n)
{
    if (s->err)
        return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = (s->cap ? s->cap * 2 : 512) + n;
        char *np = s->heap ? realloc(s->p, cap) : malloc(cap);
        if (!np) {
            s->err = 1;
            return;
        }
        if (!s->heap)
            memcpy(np, s->p, s->n + 1);
        s->heap = true;
        s->p = np;
        s->cap = cap;
    }
    memcpy(s->p + s->n, t, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void sb_str(struct sb *s, const char *t) { sb_add(s, t, strlen(t)); }

/* Canonical header value: trim, collapse inner runs of whitespace (appended a run at a time). */
static void sb_value(struct sb *s, const char *v)
{
    bool first = true;
    for (;;) {
        size_t run;
        while (*v && isspace((unsigned char)*v))
            v++;
        if (!*v)
            return;
        for (run = 0; v[run] && !isspace((unsigned char)v[run]); run++)
            ;
        if (!first)
            sb_add(s, " ", 1);
        sb_add(s, v, run);
        v += run;
        first = false;
    }
}

static int cmp_hdr(const void *a, const void *b)
{
    return strcasecmp(((const sigv4_header *)a)->name, ((const sigv4_header *)b)->name);
}

int sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                      uint8_t key[32])
{
    uint8_t k1[32], k2[32], k3[32];
    char *ksecret;
    int rc = -1;
    if (!secret || !date || strlen(date) != 8 || !region || !service)
        return -1;
    if (asprintf(&ksecret, "AWS4%s", secret) < 0)
        return -1;
    if (!hmac((const uint8_t *)ksecret, strlen(ksecret), date, 8, k1) &&
        !hmac(k1, 32, region, strlen(region), k2) && !hmac(k2, 32, service, strlen(service), k3) &&
        !hmac(k3, 32, "aws4_request", 12, key))
        rc = 0;
    OPENSSL_cleanse(ksecret, strlen(ksecret));
    free(ksecret);
    OPENSSL_cleanse(k1, 32);
    OPENSSL_cleanse(k2, 32);
    OPENSSL_cleanse(k3, 32);
    return rc;
}

/* signature hex into sig[65] with the derived signing key; signed_out gets "a;b;c" (cap bytes). */
static int compute(const sigv4_request *r, const uint8_t key[32], const char *amz_date, const char *region,
                   const char *service, char sig[65], char *signed_out, size_t signed_cap)
{
    struct sb c, sts, signed_h;
    sigv4_header hbuf[16], *h = hbuf;
    uint8_t digest[32], mac[32];
    char dh[65], date[9], cbuf[2048], stsbuf[256], shbuf[256];
    int rc = -1;

    if (!amz_date || strlen(amz_date) != 16)
        return -1;
    memcpy(date, amz_date, 8);
    date[8] = 0;
    if (r->n_headers > sizeof hbuf / sizeof hbuf[0] && !(h = malloc(r->n_headers * sizeof *h)))
        return -1;
    if (r->n_headers)
        memcpy(h, r->headers, r->n_headers * sizeof *h);
    qsort(h, r->n_headers, sizeof *h, cmp_hdr);
    sb_init(&c, cbuf, sizeof cbuf);
    sb_init(&sts, stsbuf, sizeof stsbuf);
    sb_init(&signed_h, shbuf, sizeof shbuf);
    sb_str(&c, r->method);
    sb_str(&c, "\n");
    sb_str(&c, r->path);
    sb_str(&c, "\n");
    sb_str(&c, r->query ? r->query : "");
    sb_str(&c, "\n");
    for (size_t i = 0; i < r->n_headers; i++) {
        char lc[128];
        size_t ln = strlen(h[i].name);
        if (ln >= sizeof lc) {
            c.err = 1;
            break;
        }
        for (size_t j = 0; j < ln; j++)
            lc[j] = (char)tolower((unsigned char)h[i].name[j]);
        sb_add(&c, lc, ln);
        sb_add(&signed_h, lc, ln);
        sb_str(&c, ":");
        sb_value(&c, h[i].value);
        sb_str(&c, "\n");
        if (i + 1 < r->n_headers)
            sb_str(&signed_h, ";");
    }
    sb_str(&c, "\n");
    sb_str(&c, signed_h.p);
    sb_str(&c, "\n");
    if (sha256(r->payload ? r->payload : (const uint8_t *)"", r->payload_len, digest))
        goto out;
    hex(digest, 32, dh);
    sb_str(&c, dh);
    if (c.err || signed_h.err)
        goto out;
    if (sha256(c.p, c.n, digest))
        goto out;
    hex(digest, 32, dh);
    sb_str(&sts, "AWS4-HMAC-SHA256\n");
    sb_str(&sts, amz_date);
    sb_str(&sts, "\n");
    sb_str(&sts, date);
    sb_str(&sts, "/");
    sb_str(&sts, region);
    sb_str(&sts, "/");
    sb_str(&sts, service);
    sb_str(&sts, "/aws4_request\n");
    sb_str(&sts, dh);
    if (sts.err)
        goto out;
    if (!hmac(key, 32, sts.p, sts.n, mac)) {
        hex(mac, 32, sig);
        if (signed_out)
            snprintf(signed_out, signed_cap, "%s", signed_h.p);
        rc = 0;
    }
    OPENSSL_cleanse(mac, sizeof mac);
out:
    if (h != hbuf)
        free(h);
    sb_free(&c);
    sb_free(&sts);
    sb_free(&signed_h);
    return rc;
}

int sigv4_sign(const sigv4_request *r, const char *access_key, const char *secret, const char *amz_date,
               const char *region, const char *service, char *auth, size_t cap)
{
    char sig[65], signed_h[512], date[9];
    uint8_t key[32];
    int n, rc;
    if (!amz_date || strlen(amz_date) != 16)
        return -1;
    memcpy(date, amz_date, 8);
    date[8] = 0;
    if (sigv4_signing_key(secret, date, region, service, key))
        return -1;
    rc = compute(r, key, amz_date, region, service, sig, signed_h, sizeof signed_h);
    OPENSSL_cleanse(key, sizeof key);
    if (rc)
        return -1;
    n = snprintf(auth, cap, "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
                 access_key, amz_date, region, service, signed_h, sig);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int sigv4_parse_auth(const char *header, sigv4_auth *a)
{
    char *p, *cred = NULL, *sh = NULL, *sig = NULL, *save = NULL, *tok;
    memset(a, 0, sizeof *a);
    if (!header || strncmp(header, "AWS4-HMAC-SHA256 ", 17) || strlen(header) >= sizeof a->buf)
        return -1;
    snprintf(a->buf, sizeof a->buf, "%s", header + 17);
    for (tok = strtok_r(a->buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!strncmp(tok, "Credential=", 11))
            cred = tok + 11;
        else if (!strncmp(tok, "SignedHeaders=", 14))
            sh = tok + 14;
        else if (!strncmp(tok, "Signature=", 10))
            sig = tok + 10;
    }
    if (!cred || !sh || !sig || strlen(sig) != 64 || strspn(sig, "0123456789abcdef") != 64 || !*sh)
        return -1;
    a->access_key = cred;
    p = strchr(cred, '/');
    if (!p)
        return -1;
    *p++ = 0;
    a->date = p;
    if (!(p = strchr(p, '/')))
        return -1;
    *p++ = 0;
    a->region = p;
    if (!(p = strchr(p, '/')))
        return -1;
    *p++ = 0;
    a->service = p;
    if (!(p = strchr(p, '/')))
        return -1;
    *p++ = 0;
    if (strcmp(p, "aws4_request") || strlen(a->date) != 8 || !*a->access_key || !*a->region || !*a->service)
        return -1;
    a->signed_headers = sh;
    a->signature = sig;
    return 0;
}

int sigv4_verify_with_key(const sigv4_request *r, const sigv4_auth *a, const uint8_t key[32], const char *amz_date)
{
    char sig[65], signed_h[512];
    if (!amz_date || strncmp(amz_date, a->date, 8))
        return -1;
    if (compute(r, key, amz_date, a->region, a->service, sig, signed_h, sizeof signed_h))
        return -1;
    if (strcmp(signed_h, a->signed_headers))
        return -1;
    return CRYPTO_memcmp(sig, a->signature, 64) == 0 ? 0 : -1;
}

int sigv4_verify(const sigv4_request *r, const sigv4_auth *a, const char *secret, const char *amz_date)
{
    uint8_t key[32];
    int rc;
    if (sigv4_signing_key(secret, a->date, a->region, a->service, key))
        return -1;
    rc = sigv4_verify_with_key(r, a, key, amz_date);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* Digits d[0..n) as a number, or -1 if any is not a digit. */
static int digits(const char *d, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        v = v * 10 + (d[i] - '0');
    }
    return v;
}

int64_t sigv4_parse_date(const char *d)
{
    struct tm tm;
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return -1;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = digits(d, 4);
    tm.tm_mon = digits(d + 4, 2);
    tm.tm_mday = digits(d + 6, 2);
    tm.tm_hour = digits(d + 9, 2);
    tm.tm_min = digits(d + 11, 2);
    tm.tm_sec = digits(d + 13, 2);
    if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mday < 0 || tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0)
        return -1;
    /* timegm would normalise out-of-range fields (month 13, 30 February, hour 24): refuse them, and
     * anything before 1970. */
    {
        static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int y = tm.tm_year;
        bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if (y < 1970 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
            tm.tm_mday > mdays[tm.tm_mon - 1] + (tm.tm_mon == 2 && leap) || tm.tm_hour > 23 || tm.tm_min > 59 ||
            tm.tm_sec > 59)
            return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

void sigv4_format_date(int64_t t, char out[17])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}
