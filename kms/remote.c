/*
 * remote.c — one call of the replication protocol to another region's server (remote.h): the body signed
 * with SigV4 (service kms, the destination's region) under X-Amz-Target EnvelopefsReplication.<Operation>,
 * sent by common/httpreq.h's POST (no retries: the caller decides; a bounded timeout), and the answer
 * accepted only with a valid X-Envelopefs-Response-Mac. SigV4 authenticates requests only; the MAC authenticates the answer (the
 * destination's one-time wrapping key above all): HMAC-SHA256 under the request's SigV4 signing key — which
 * only this side and the destination know — over the request's signature and the response body, so an answer
 * can be neither forged nor replayed for another request by anyone on the path, over plain HTTP too.
 */
#include "remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/httpreq.h"
#include "common/jsondump.h"
#include "internal.h"

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

/* Auth-failure names of the other end: this server's credentials for it are wrong, not the caller's. */
static bool auth_failure(kms_err e)
{
    return e == KMS_ERR_MISSING_AUTH || e == KMS_ERR_INCOMPLETE_SIGNATURE || e == KMS_ERR_SIGNATURE_MISMATCH ||
           e == KMS_ERR_UNRECOGNIZED_CLIENT || e == KMS_ERR_CLOCK_SKEW;
}

kms_err kms_remote_call(const kms_endpoint *ep, const char *operation, json_t *req, long timeout_ms, json_t **resp,
                        char **msg)
{
    char target[96], host[256], *body = NULL, want[65];
    const char *rest;
    size_t body_len = 0, hostlen;
    efs_http_answer ans = {0};
    efs_http_post rq;
    kms_err e = KMS_ERR_INTERNAL;
    int rc;

    *resp = NULL;
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
    rq = (efs_http_post){.url = ep->url, .host = host, .target = target, .access_key = ep->akid,
                         .secret = ep->secret, .region = ep->region, .service = "kms", .body = body,
                         .body_len = body_len, .timeout_ms = timeout_ms, .user_agent = "envelopefs-replication/1",
                         .capture_header = KMS_REPLICATION_MAC_HEADER, .want_signing_key = true};
    rc = efs_http_post_json(NULL, &rq, &ans);
    if (rc == -ENOMEM) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    if (rc == -EIO) {
        kms_set_msg(msg, "the key service of region %s (%s) cannot be reached: %s", ep->region, ep->url, ans.error);
        e = KMS_ERR_DEPENDENCY_TIMEOUT;
        goto out;
    }
    if (rc) {
        kms_set_msg(msg, "region %s: cannot sign the replication request", ep->region);
        goto out;
    }
    if (ans.status != 200) {
        char type[128], m[1024];
        bool typed = efs_http_aws_error(&ans, type, sizeof type, m, sizeof m);
        e = typed ? kms_err_from_name(type) : KMS_ERR_REMOTE;
        if (e == KMS_ERR_REMOTE || e == KMS_ERR_IO || e == KMS_ERR_NOMEM || e == KMS_ERR_CORRUPT_STORE)
            e = KMS_ERR_INTERNAL;
        if (auth_failure(e)) {
            kms_set_msg(msg, "the key service of region %s (%s) refused this service's credentials for it "
                             "(%s: %s): check the region's \"credentials\" in the regions file",
                        ep->region, ep->url, type, m);
            e = KMS_ERR_ACCESS_DENIED;
        } else {
            kms_set_msg(msg, "region %s: %s%s%s", ep->region, typed ? type : "HTTP error", m[0] ? ": " : "", m);
        }
        goto out;
    }
    kms_replication_mac(ans.signing_key, ans.signature, ans.body ? ans.body : "", ans.len, want);
    if (strlen(ans.captured) != 64 || sodium_memcmp(want, ans.captured, 64)) {
        kms_set_msg(msg, "region %s (%s): the answer is not authenticated (no valid %s): refused", ep->region,
                    ep->url, KMS_REPLICATION_MAC_HEADER);
        e = KMS_ERR_INTERNAL;
        goto out;
    }
    *resp = ans.body ? json_loadb(ans.body, ans.len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!json_is_object(*resp)) {
        json_decref(*resp);
        *resp = NULL;
        kms_set_msg(msg, "region %s: the answer is not a JSON object", ep->region);
        e = KMS_ERR_INTERNAL;
        goto out;
    }
    e = KMS_OK;
out:
    efs_http_answer_clear(&ans);
    sodium_memzero(body, body_len);
    free(body);
    return e;
}
