/*
 * httpreq.h — one POST of the AWS JSON protocol over libcurl: the X-Amz-Target request signed with SigV4
 * (or sent unsigned), its answer's status and body buffered. Shared by the client library's HTTP backend
 * (kmsclient/http.c: TrentService calls, retried there) and the key service's replication calls to other
 * servers (kms/remote.c: EnvelopefsReplication calls, whose answers it authenticates by a response MAC).
 * What an answer means (error names, retries, MACs) stays with the callers.
 */
#ifndef ENVELOPEFS_HTTPREQ_H
#define ENVELOPEFS_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "envelopefs/sigv4.h"

#define EFS_HTTP_MAX_EXTRA 8
#define EFS_HTTP_MAX_BODY (1u << 20) /* an answer larger than this fails as a transport error */

/* What to send. Every pointer is borrowed for the call only. */
typedef struct efs_http_post {
    const char *url;               /* where to POST: http(s)://HOST[:PORT]/PATH */
    const char *host;              /* the Host header's value (signed) */
    const char *unix_path;         /* HTTP over this Unix socket instead of TCP, or NULL */
    const char *target;            /* X-Amz-Target, e.g. "TrentService.Encrypt" */
    const sigv4_header *extra;     /* more headers, signed (when signing) and sent as named; at most 8 */
    size_t n_extra;
    const char *access_key;        /* NULL: the request goes unsigned */
    const char *secret;            /* with access_key */
    const char *region, *service;  /* the credential scope */
    const char *body;              /* the JSON request (body_len bytes) */
    size_t body_len;
    long timeout_ms;               /* the whole exchange; connecting at most min(this, 5 s) */
    bool keepalive;                /* TCP keepalive probes (pooled handles) */
    bool insecure_tls;             /* no TLS peer or host verification */
    const char *ca_file;           /* TLS trust anchors, or NULL for the system's */
    const char *user_agent;        /* or NULL: libcurl sends none */
    const char *capture_header;    /* the name of a response header to keep (efs_http_answer.captured), or NULL */
    bool want_signing_key;         /* fill efs_http_answer.signing_key (for a MAC keyed by it) */
} efs_http_post;

/* What came back. Owned by the caller; release with efs_http_answer_clear (which wipes it). */
typedef struct efs_http_answer {
    long status;                   /* HTTP status; 0 when no answer came */
    char *body;                    /* malloc'd, NUL-terminated (len bytes before the NUL); NULL when empty.
                                    * Grown without realloc, every old copy wiped: it may hold key material.
                                    * The caller may take it (set it to NULL) and free it wiped itself. */
    size_t len;
    char captured[129];            /* the last capture_header's value, trimmed; "" if none or longer than 128 */
    char signature[65];            /* the request's SigV4 signature (hex); "" when unsigned */
    uint8_t signing_key[32];       /* with want_signing_key: the SigV4 signing key of the request's scope */
    char error[256];               /* why, when the call fails */
} efs_http_answer;

/* A new easy handle, libcurl initialised once per process first (curl_global_init is not thread-safe
 * itself). NULL on OOM. The caller owns it (curl_easy_cleanup). */
CURL *efs_http_handle(void) __attribute__((warn_unused_result));

/* POST rq on handle c (reset first, so a pooled handle keeps only its connection cache; NULL: a one-shot
 * handle made and cleaned up here). No retries. *ans is filled from scratch (whatever it held is not
 * freed). Returns 0 when an answer came, whatever its status (ans->status, ans->body); -EINVAL when the
 * request cannot be signed or its headers are too long, -ENOMEM, or -EIO when the endpoint cannot be
 * reached, timed out or sent more than EFS_HTTP_MAX_BODY (curl's reason in ans->error); on failure *ans
 * holds nothing to free but may be cleared all the same. */
int efs_http_post_json(CURL *c, const efs_http_post *rq, efs_http_answer *ans) __attribute__((warn_unused_result));

/* Wipe and free what *ans holds; safe on a zeroed or already cleared answer. */
void efs_http_answer_clear(efs_http_answer *ans);

/* The error of an AWS JSON error answer: its "__type" without any "namespace#" prefix into type and its
 * "message" (or "Message") into msg ("" where absent, truncated to the capacities). Returns true when the
 * body is a JSON object with a string __type. */
bool efs_http_aws_error(const efs_http_answer *ans, char *type, size_t tcap, char *msg, size_t mcap);

#endif
