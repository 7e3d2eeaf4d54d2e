/*
 * kmsclient.h — the client library every envelopefs component uses to reach a key service.
 *
 * A client is made from a URL:
 *   local:PATH          the embedded key-service core on the store in directory PATH (default backend)
 *   http://HOST:PORT    any server speaking the AWS KMS JSON protocol (envelopefs kms serve, AWS KMS,
 *   https://HOST:PORT   moto, LocalStack); requests are SigV4-signed with credentials from the standard
 *                       AWS places.
 * Backends implement one function (send an operation's JSON body, get a JSON body or an error), so
 * every operation works on every backend; typed helpers for the calls the filesystem makes sit on top.
 *
 * Ownership: every pointer a function returns through an out-parameter belongs to the caller and is
 * released with the matching _free function named in its comment. Plaintext key material is always
 * returned as a kmsc_secret in locked memory (sodium_malloc; small secrets share locked slabs, see
 * common/secpool.h) and wiped by kmsc_secret_free.
 * Threading: a kmsc and a kmsc_cache are safe to use from many threads at once.
 */
#ifndef ENVELOPEFS_KMSCLIENT_H
#define ENVELOPEFS_KMSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "envelopefs/kms_types.h"
#include "envelopefs/kms.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kmsc kmsc;

/* Error detail of a failed call. `name` is the AWS exception name as received (also for names
 * kms_err does not know: code is then KMS_ERR_REMOTE). */
typedef struct kmsc_error {
    kms_err code;
    char name[96];
    char message[512];
} kmsc_error;

typedef struct kmsc_opts {
    const char *url;               /* "local:PATH", "http(s)://..." or "unix:/SOCKET"; required */
    /* local: how to unlock the store (see kms_store_opts; store_dir comes from the URL) */
    const char *root_key_file;
    const char *passphrase_file;
    const char *passphrase;
    /* local: the principal the embedded core acts as: NULL for the store's account root, a user name of
     * the store's account, or a principal ARN (arn:aws:iam::ACCOUNT:root | arn:aws:iam::ACCOUNT:user/NAME) */
    const char *as_user;
    /* A service name ("ec2"): every call is made through that service on the principal's behalf, as AWS
     * services call KMS, so policies see kms:ViaService NAME.REGION.amazonaws.com (and
     * kms:GrantIsForAWSResource on grant calls). local: set on the principal; http(s): sent in the signed
     * header X-Envelopefs-Via-Service, which `envelopefs kms serve` honours only for the access keys it was
     * told to trust (--trust-via-service) and other services ignore. NULL: direct calls. */
    const char *via_service;
    /* http(s): overrides; NULL means the standard AWS environment / config files */
    const char *region;
    const char *profile;
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
    int timeout_ms;                /* per request; 0 = default (10000) */
    int max_retries;               /* on ThrottlingException / 5xx / transport errors; <0 = default (4) */
    bool insecure_tls;             /* https: skip certificate verification (tests only) */
    const char *ca_file;           /* https: CA bundle to trust */
} kmsc_opts;

/* Create a client. On error *errmsg (if non-NULL) receives a malloc'd message to free(). */
kms_err kmsc_new(const kmsc_opts *opts, kmsc **out, char **errmsg) KMS_WUR;
/* NULL is a no-op. */
void kmsc_free(kmsc *c);
/* For the embedded backend, the core (borrowed); NULL for remote backends. */
kms_core *kmsc_embedded_core(kmsc *c);

/* A batch of calls from this thread whose audit records are committed together (embedded backend:
 * kms_core_defer_begin/_end, with the same contract: use nothing the calls returned until kmsc_defer_end
 * returned KMS_OK, discard all of it otherwise). Remote backends: no-ops (the server commits each record
 * before it answers). */
void kmsc_defer_begin(kmsc *c);
kms_err kmsc_defer_end(kmsc *c) KMS_WUR;

/*
 * Generic call: any operation by its AWS name with a JSON body. *resp is NUL-terminated JSON, free
 * with kmsc_response_free (wipes it: it may hold plaintext). err may be NULL.
 */
kms_err kmsc_call(kmsc *c, const char *operation, const char *req, size_t req_len,
                  char **resp, size_t *resp_len, kmsc_error *err) KMS_WUR;
void kmsc_response_free(char *resp, size_t resp_len);

/* Secret bytes in locked memory. */
typedef struct kmsc_secret {
    uint8_t *data;   /* locked memory; only kmsc_secret_new makes a kmsc_secret */
    size_t len;
} kmsc_secret;
/* Allocate a secret of len bytes (contents undefined); NULL on OOM. */
kmsc_secret *kmsc_secret_new(size_t len);
/* Wipe and free. NULL is a no-op. */
void kmsc_secret_free(kmsc_secret *s);

/* Result of GenerateDataKey(WithoutPlaintext). Free with kmsc_data_key_free (wipes plaintext). */
typedef struct kmsc_data_key {
    kmsc_secret *plaintext;    /* NULL for ...WithoutPlaintext */
    uint8_t *ciphertext;       /* malloc'd CiphertextBlob */
    size_t ciphertext_len;
    char *key_arn;             /* malloc'd; the full key ARN that protects it */
} kmsc_data_key;
void kmsc_data_key_free(kmsc_data_key *dk);

/* GenerateDataKey with NumberOfBytes = nbytes (1..1024). ectx may be NULL. */
kms_err kmsc_generate_data_key(kmsc *c, const char *key_id, const kms_ectx *ectx, size_t nbytes,
                               kmsc_data_key **out, kmsc_error *err) KMS_WUR;
kms_err kmsc_generate_data_key_without_plaintext(kmsc *c, const char *key_id, const kms_ectx *ectx,
                                                 size_t nbytes, kmsc_data_key **out,
                                                 kmsc_error *err) KMS_WUR;
/* Decrypt; key_id may be NULL (the blob names its key). *out freed with kmsc_secret_free. */
kms_err kmsc_decrypt(kmsc *c, const char *key_id, const uint8_t *blob, size_t blob_len,
                     const kms_ectx *ectx, kmsc_secret **out, kmsc_error *err) KMS_WUR;
/* Decrypt presenting a grant token (NULL: none), as a grantee does right after CreateGrant. */
kms_err kmsc_decrypt_with_grant(kmsc *c, const char *key_id, const uint8_t *blob, size_t blob_len,
                                const kms_ectx *ectx, const char *grant_token, kmsc_secret **out,
                                kmsc_error *err) KMS_WUR;
/* CreateGrant for `ops` (n_ops names, e.g. "Decrypt") with an EncryptionContextSubset constraint
 * (subset may be NULL: none); retiring and name may be NULL. *grant_id and *grant_token are malloc'd;
 * free(). */
kms_err kmsc_create_grant(kmsc *c, const char *key_id, const char *grantee, const char *retiring,
                          const char *const *ops, size_t n_ops, const kms_ectx *subset, const char *name,
                          char **grant_id, char **grant_token, kmsc_error *err) KMS_WUR;
/* RetireGrant / RevokeGrant by key ARN and grant id. */
kms_err kmsc_retire_grant(kmsc *c, const char *key_arn, const char *grant_id, kmsc_error *err) KMS_WUR;
kms_err kmsc_revoke_grant(kmsc *c, const char *key_arn, const char *grant_id, kmsc_error *err) KMS_WUR;
/* Record another service's call (kms_core_audit_service_event) as the principal this client acts as:
 * the embedded backend only (the store's own trail); KMS_ERR_UNSUPPORTED_OPERATION over http(s), which
 * has no such operation. */
kms_err kmsc_audit_service_event(kmsc *c, const kms_service_event *ev) KMS_WUR;
/* The principal ARN this client acts as, when the client knows it (the embedded backend: the store's
 * account root or --as-user); KMS_ERR_UNSUPPORTED_OPERATION over http(s), where the server decides. */
kms_err kmsc_caller_arn(kmsc *c, char *buf, size_t cap) KMS_WUR;
/* The access key id this client signs its requests with (borrowed, valid until kmsc_free): NULL for the
 * embedded backend and for unsigned calls over a Unix socket (the server knows the caller by its uid). */
const char *kmsc_access_key_id(kmsc *c);
/* The region this client calls (borrowed): the embedded store's, or the http(s) client's (kmsc_opts,
 * AWS_REGION, AWS_DEFAULT_REGION, the config file, us-east-1). */
const char *kmsc_region(kmsc *c);
/* Encrypt (plaintext ≤ 4096 bytes). *blob is malloc'd; free(). */
kms_err kmsc_encrypt(kmsc *c, const char *key_id, const uint8_t *pt, size_t pt_len,
                     const kms_ectx *ectx, uint8_t **blob, size_t *blob_len, kmsc_error *err) KMS_WUR;
/* ReEncrypt to dst_key_id (src_key_id may be NULL). *blob is malloc'd; free(). */
kms_err kmsc_re_encrypt(kmsc *c, const char *src_key_id, const uint8_t *blob, size_t blob_len,
                        const kms_ectx *src_ectx, const char *dst_key_id, const kms_ectx *dst_ectx,
                        uint8_t **out_blob, size_t *out_len, kmsc_error *err) KMS_WUR;
/* DescribeKey: *arn malloc'd (free()); *enabled true when KeyState is Enabled. Either out may be NULL. */
kms_err kmsc_describe_key(kmsc *c, const char *key_id, char **arn, bool *enabled,
                          kmsc_error *err) KMS_WUR;

/*
 * The caller's account (12 digits) into account[16]. The embedded backend knows its principal; KMS has
 * no caller-identity operation, so for a server the account is learned from DescribeKey of
 * "alias/aws/ebs", an alias resolved in the caller's own account: its key ARN on success, else the
 * alias ARN that AWS's NotFoundException message names ("Alias arn:aws:kms:R:ACCOUNT:alias/aws/ebs is
 * not found."), or the principal an AccessDeniedException names ("User: arn:aws:iam::ACCOUNT:… is not
 * authorized …"). KMS_ERR_SERIALIZATION when none names an account. What a server said is kept for the
 * process, per endpoint and access key: later clients with the same identity do not ask again.
 */
kms_err kmsc_caller_account(kmsc *c, char account[16], kmsc_error *err) KMS_WUR;

/*
 * Data-key cache, modelled on the AWS Encryption SDK caching materials manager: a bounded LRU of
 * plaintext data keys in locked memory, keyed by an opaque id chosen by the caller (e.g. the
 * wrapped blob plus its encryption context). An entry is dropped — and wiped — when older than
 * max_age_s, used more than max_uses times, or after max_bytes bytes were accounted to it.
 */
typedef struct kmsc_cache kmsc_cache;
typedef struct kmsc_cache_opts {
    size_t max_entries;      /* required, > 0 */
    int64_t max_age_s;       /* required, > 0 */
    uint64_t max_uses;       /* 0 = unlimited */
    uint64_t max_bytes;      /* 0 = unlimited */
    kms_clock_fn clock;      /* NULL = time(NULL); tests inject one */
    void *clock_arg;
} kmsc_cache_opts;

kmsc_cache *kmsc_cache_new(const kmsc_cache_opts *opts);
/* Wipes every entry. NULL is a no-op. */
void kmsc_cache_free(kmsc_cache *cache);
/* On a hit, *out receives a copy (kmsc_secret_free) and the entry's use count grows by one and its
 * byte count by `bytes`; returns true. On a miss or an expired entry (wiped now) returns false. */
bool kmsc_cache_get(kmsc_cache *cache, const void *id, size_t id_len, uint64_t bytes,
                    kmsc_secret **out) KMS_WUR;
/* Insert a copy of key under id (replacing any entry), evicting the least recently used entry when
 * full. Returns false on OOM (nothing inserted). */
bool kmsc_cache_put(kmsc_cache *cache, const void *id, size_t id_len, const kmsc_secret *key);
/* Drop every entry (wiped). */
void kmsc_cache_clear(kmsc_cache *cache);
size_t kmsc_cache_size(kmsc_cache *cache);

/* Decrypt through the cache: a hit makes no call to the key service. cache may be NULL. */
kms_err kmsc_decrypt_cached(kmsc *c, kmsc_cache *cache, const char *key_id, const uint8_t *blob,
                            size_t blob_len, const kms_ectx *ectx, kmsc_secret **out,
                            kmsc_error *err) KMS_WUR;

/* Number of calls this client has sent to its backend (for tests and statistics). */
uint64_t kmsc_call_count(kmsc *c);

#ifdef __cplusplus
}
#endif
#endif
