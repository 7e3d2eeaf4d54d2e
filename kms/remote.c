/*
 * remote.c — one call of the replication protocol to another region's server (remote.h): the body signed
 * with SigV4 (service kms, the destination's region) under X-Amz-Target EnvelopefsReplication.<Operation>,
 * sent with libcurl (no retries: the caller decides; a bounded timeout), and the answer accepted only with a
 * valid X-Envelopefs-Response-Mac. SigV4 authenticates requests only; the MAC authenticates the answer (the
 * destination's one-time wrapping key above all): HMAC-SHA256 under the request's SigV4 signing key — which
 * only this side and the destination know — over the request's signature and the response body, so an answer
 * can be neither forged nor replayed for another request by anyone on the path, over plain HTTP too.
 */
#include "remote.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "common/jsondump.h"
#include "envelopefs/sigv4.h"
#include "internal.h"

#define MAX_RESPONSE (1u << 20)

void kms_endpoint_clear(kms_endpoint *ep)
{
    if (!ep)
        return;
    free(ep->url);
    if (ep->secret)
        sodium_free(ep->secret);
    memset(ep, 0, sizeof *ep);
}

void kms_replication_mac(const uint8_t key[32], const char *signature, const char *body, size_t len, char out[65])
{
    crypto_auth_hmacsha256_state st;
    uint8_t mac[32];
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)KMS_REPLICATION_MAC_LABEL "\n",
                                  sizeof KMS_REPLICATION_MAC_LABEL);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)signature, strlen(signature));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)"\n", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(out, 65, mac, sizeof mac);
    sodium_memzero(&st, sizeof st);
}

struct rbuf {
    char *p;
    size_t n;
    char mac[65];
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct rbuf *b = ud;
    size_t n = size * nmemb;
    char *np;
    if (b->n + n > MAX_RESPONSE)
        return 0;
    np = malloc(b->n + n + 1); /* not realloc: the old block may hold wrapped material; wiped below */
    if (!np)
        return 0;
    if (b->p) {
        memcpy(np, b->p, b->n);
        sodium_memzero(b->p, b->n);
        free(b->p);
    }
    memcpy(np + b->n, ptr, n);
    b->p = np;
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct rbuf *b = ud;
    size_t n = size * nmemb, hl = sizeof KMS_REPLICATION_MAC_HEADER - 1;
    if (n > hl + 1 && !strncasecmp(ptr, KMS_REPLICATION_MAC_HEADER, hl) && ptr[hl] == ':') {
        const char *v = ptr + hl + 1;
        size_t l;
        while (v < ptr + n && *v == ' ')
            v++;
        l = strcspn(v, "\r\n");
        if (l == 64 && v + l <= ptr + n) {
            memcpy(b->mac, v, 64);
            b->mac[64] = 0;
        }
    }
    return n;
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Auth-failure names of the other end: this server's credentials for it are wrong, not the caller's. */
static bool auth_failure(kms_err e)
{
    return e == KMS_ERR_MISSING_AUTH || e == KMS_ERR_INCOMPLETE_SIGNATURE || e == KMS_ERR_SIGNATURE_MISMATCH ||
           e == KMS_ERR_UNRECOGNIZED_CLIENT || e == KMS_ERR_CLOCK_SKEW;
}

kms_err kms_remote_call(const kms_endpoint *ep, const char *operation, json_t *req, long timeout_ms, json_t **resp,
                        char **msg)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    char target[96], date[17], auth[1024], host[256], hbuf[5][1100], *body = NULL, want[65];
    const char *rest;
    size_t body_len = 0, hostlen;
    struct curl_slist *hl = NULL;
    struct rbuf b = {0};
    sigv4_header sh[4];
    sigv4_auth a;
    uint8_t skey[32];
    long status = 0;
    CURL *c = NULL;
    CURLcode cc;
    kms_err e = KMS_ERR_INTERNAL;

    *resp = NULL;
    pthread_once(&once, curl_init_once);
    rest = strstr(ep->url, "://");
    if (!rest) {
        kms_set_msg(msg, "region %s: %s is not an http(s) URL", ep->region, ep->url);
        return KMS_ERR_INTERNAL;
    }
    rest += 3;
    hostlen = strcspn(rest, "/");
    if (!hostlen || hostlen >= sizeof host) {
        kms_set_msg(msg, "region %s: %s is not an http(s) URL", ep->region, ep->url);
        return KMS_ERR_INTERNAL;
    }
    memcpy(host, rest, hostlen);
    host[hostlen] = 0;
    if (efs_json_dump_compact(req, &body, &body_len)) {
        body = json_dumps(req, JSON_COMPACT);
        body_len = body ? strlen(body) : 0;
        if (!body)
            return KMS_ERR_NOMEM;
    }
    snprintf(target, sizeof target, "%s%s", KMS_REPLICATION_TARGET, operation);
    sigv4_format_date((int64_t)time(NULL), date);
    sh[0] = (sigv4_header){"content-type", "application/x-amz-json-1.1"};
    sh[1] = (sigv4_header){"host", host};
    sh[2] = (sigv4_header){"x-amz-date", date};
    sh[3] = (sigv4_header){"x-amz-target", target};
    {
        sigv4_request r = {.method = "POST", .path = "/", .query = "", .headers = sh, .n_headers = 4,
                           .payload = (const uint8_t *)body, .payload_len = body_len};
        if (sigv4_sign(&r, ep->akid, ep->secret, date, ep->region, "kms", auth, sizeof auth) ||
            sigv4_parse_auth(auth, &a) ||
            sigv4_signing_key(ep->secret, a.date, ep->region, "kms", skey)) {
            kms_set_msg(msg, "region %s: cannot sign the replication request", ep->region);
            goto out;
        }
    }
    snprintf(hbuf[0], sizeof hbuf[0], "Content-Type: application/x-amz-json-1.1");
    snprintf(hbuf[1], sizeof hbuf[1], "Host: %s", host);
    snprintf(hbuf[2], sizeof hbuf[2], "X-Amz-Date: %s", date);
    snprintf(hbuf[3], sizeof hbuf[3], "X-Amz-Target: %s", target);
    snprintf(hbuf[4], sizeof hbuf[4], "Authorization: %s", auth);
    for (int i = 0; i < 5; i++) {
        struct curl_slist *n = curl_slist_append(hl, hbuf[i]);
        if (!n) {
            e = KMS_ERR_NOMEM;
            goto out;
        }
        hl = n;
    }
    {
        struct curl_slist *n = curl_slist_append(hl, "Expect:");
        if (!n) {
            e = KMS_ERR_NOMEM;
            goto out;
        }
        hl = n;
    }
    if (!(c = curl_easy_init())) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, ep->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "envelopefs-replication/1");
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        kms_set_msg(msg, "the key service of region %s (%s) cannot be reached: %s", ep->region, ep->url,
                    curl_easy_strerror(cc));
        e = KMS_ERR_DEPENDENCY_TIMEOUT;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        json_t *o = b.p ? json_loadb(b.p, b.n, 0, NULL) : NULL;
        const char *type = json_string_value(json_object_get(o, "__type"));
        const char *m = json_string_value(json_object_get(o, "message"));
        e = type ? kms_err_from_name(type) : KMS_ERR_REMOTE;
        if (e == KMS_ERR_REMOTE || e == KMS_ERR_IO || e == KMS_ERR_NOMEM || e == KMS_ERR_CORRUPT_STORE)
            e = KMS_ERR_INTERNAL;
        if (auth_failure(e)) {
            kms_set_msg(msg, "the key service of region %s (%s) refused this service's credentials for it "
                             "(%s: %s): check the region's \"credentials\" in the regions file",
                        ep->region, ep->url, type, m ? m : "");
            e = KMS_ERR_ACCESS_DENIED;
        } else {
            kms_set_msg(msg, "region %s: %s%s%s", ep->region, type ? type : "HTTP error", m ? ": " : "", m ? m : "");
        }
        json_decref(o);
        goto out;
    }
    kms_replication_mac(skey, a.signature, b.p ? b.p : "", b.n, want);
    if (strlen(b.mac) != 64 || sodium_memcmp(want, b.mac, 64)) {
        kms_set_msg(msg, "region %s (%s): the answer is not authenticated (no valid %s): refused", ep->region,
                    ep->url, KMS_REPLICATION_MAC_HEADER);
        e = KMS_ERR_INTERNAL;
        goto out;
    }
    *resp = b.p ? json_loadb(b.p, b.n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(*resp)) {
        json_decref(*resp);
        *resp = NULL;
        kms_set_msg(msg, "region %s: the answer is not a JSON object", ep->region);
        e = KMS_ERR_INTERNAL;
        goto out;
    }
    e = KMS_OK;
out:
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    sodium_memzero(auth, sizeof auth);
    sodium_memzero(hbuf, sizeof hbuf);
    sodium_memzero(skey, sizeof skey);
    sodium_memzero(&a, sizeof a);
    if (b.p) {
        sodium_memzero(b.p, b.n);
        free(b.p);
    }
    if (body) {
        sodium_memzero(body, body_len);
        free(body);
    }
    return e;
}
