/*
 * sigv4.h — AWS Signature Version 4 for JSON-over-HTTP services: signing (client) and verification
 * (server). Pure functions of their inputs (the clock is a parameter), so they can be tested against
 * botocore and fuzzed.
 */
#ifndef ENVELOPEFS_SIGV4_H
#define ENVELOPEFS_SIGV4_H

#include <stddef.h>
#include <stdint.h>

typedef struct sigv4_header {
    const char *name;   /* any case; canonicalised to lowercase */
    const char *value;  /* trimmed, inner runs of spaces collapsed */
} sigv4_header;

typedef struct sigv4_request {
    const char *method;            /* "POST" */
    const char *path;              /* "/" (already URI-encoded) */
    const char *query;             /* canonical query string or "" */
    const sigv4_header *headers;   /* the headers to sign */
    size_t n_headers;
    const uint8_t *payload;
    size_t payload_len;
} sigv4_request;

/* Fill auth (cap ≥ 512) with the Authorization header value for the request signed at amz_date
 * ("YYYYMMDDTHHMMSSZ") with the given credential scope. Returns 0 or -1. */
int sigv4_sign(const sigv4_request *r, const char *access_key, const char *secret, const char *amz_date,
               const char *region, const char *service, char *auth, size_t cap);

/* A parsed Authorization header. Strings point into `buf`. */
typedef struct sigv4_auth {
    char buf[1024];
    const char *access_key, *date, *region, *service;  /* from Credential= */
    const char *signed_headers;                        /* "content-type;host;..." */
    const char *signature;                             /* 64 lowercase hex */
} sigv4_auth;

/* Parse "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...".
 * Returns 0 or -1 (malformed). */
int sigv4_parse_auth(const char *header, sigv4_auth *a);

/* Verify: recompute the signature of r (whose headers must be exactly those named in
 * a->signed_headers) with secret; constant-time compare. Returns 0 on match, -1 otherwise. */
int sigv4_verify(const sigv4_request *r, const sigv4_auth *a, const char *secret, const char *amz_date);

/* The signing key of a credential scope: the HMAC chain "AWS4"+secret → date ("YYYYMMDD") → region →
 * service → "aws4_request". It depends only on the scope, so a server may keep it (as secret as the
 * secret itself) and verify each request with one HMAC: sigv4_verify_with_key is sigv4_verify with the
 * chain already applied (the body hash, canonical request and final HMAC are computed every time).
 * Both return 0 or -1. */
int sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                      uint8_t key[32]);
int sigv4_verify_with_key(const sigv4_request *r, const sigv4_auth *a, const uint8_t key[32], const char *amz_date);

/* Seconds since the epoch of an "YYYYMMDDTHHMMSSZ" date, or -1. */
int64_t sigv4_parse_date(const char *amz_date);
/* Format t as "YYYYMMDDTHHMMSSZ" into out[17]. */
void sigv4_format_date(int64_t t, char out[17]);

#endif
