/*
 * oputil.h — the request helpers of ops.c shared with the operations in their own files (asym.c,
 * mac.c, datakeypair.c, ops_access.c): field parsing with AWS's validation errors, key resolution, the key ARN, key
 * metadata, and sealing a ciphertext blob under a symmetric key. Called with core->lock held.
 */
#ifndef ENVELOPEFS_KMS_OPUTIL_H
#define ENVELOPEFS_KMS_OPUTIL_H

#include <stdbool.h>

#include <jansson.h>

#include "ops.h"

/* Set *x->msg from the format (NULL: no message) and return e (ops.c's fail, for the other files). */
#define kms_op_fail(x, e, ...) (kms_set_msg((x)->msg, __VA_ARGS__), (e))
/* A string field (*out NULL when absent; required: ValidationException). */
kms_err kms_op_get_str(struct op_ctx *x, json_t *in, const char *field, bool required, const char **out);
/* A base64 field of 1..max bytes, decoded into a malloc'd buffer (wipe and free it). */
kms_err kms_op_get_b64(struct op_ctx *x, json_t *in, const char *field, bool required, size_t max, uint8_t **out,
                       size_t *out_len);
/* EncryptionContext-shaped field; *pairs malloc'd (free it), strings borrowed from in. */
kms_err kms_op_get_ectx(struct op_ctx *x, json_t *in, const char *field, kms_ectx *ctx, kms_ectx_pair **pairs);
/* KeyId → an Enabled key (authorised; due automatic rotation applied). */
kms_err kms_op_resolve_usable(struct op_ctx *x, json_t *in, kms_key **k);
/* KeyId → a key in any state (authorised). */
kms_err kms_op_check_tags(struct op_ctx *x, json_t *tags); /* CreateKey's checks of Tags */
kms_err kms_op_resolve_any(struct op_ctx *x, json_t *in, kms_key **k);
/* DescribeKey's KeyMetadata of k (new reference; NULL on OOM). */
json_t *kms_op_key_metadata(kms_core *c, const kms_key *k);
/* The key's ARN into buf. */
void kms_op_key_arn(kms_core *c, const kms_key *k, char *buf, size_t cap);
/* Seal n bytes under a symmetric key's newest version as a ciphertext blob (base64 JSON string). */
kms_err kms_op_seal_blob(struct op_ctx *x, kms_key *k, const uint8_t *pt, size_t n, const kms_ectx *ectx,
                         json_t **blob_json);
/* InvalidKeyUsageException for a key whose usage or spec does not allow the operation. */
kms_err kms_op_wrong_usage(struct op_ctx *x, const kms_key *k);
/* Limit and Marker of a list operation (default def, at most max, over total items): the first item and
 * how many; and the NextMarker/Truncated members of its answer. */
kms_err kms_op_paging(struct op_ctx *x, json_t *in, long long def, long long max, size_t total, size_t *start,
                      size_t *limit);
void kms_op_page_end(json_t *o, size_t next, size_t total);

/* datakeypair.c: a fresh key pair of an asymmetric spec, generated with the core lock released (RSA_4096
 * takes seconds): every kms_key pointer taken before is stale afterwards. NULL on failure. */
EVP_PKEY *kms_op_keygen(struct op_ctx *x, enum kms_key_spec s);

/* asym.c: Encrypt and Decrypt with an asymmetric key (RSAES_OAEP_*; the wrong usage for other keys).
 * alg may be NULL (then SYMMETRIC_DEFAULT, which no asymmetric key supports). */
kms_err kms_asym_encrypt(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *pt,
                         size_t n, json_t **out);
kms_err kms_asym_decrypt(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *ct,
                         size_t n, json_t **out);
/* The same as building blocks (ReEncrypt): seal n bytes into *ct (a base64 JSON string), or open a ciphertext
 * into *pt (this thread's scratch buffer: wipe *pt_len bytes after use); *alg_name: the algorithm's name. */
kms_err kms_asym_seal(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *pt, size_t n,
                      json_t **ct, const char **alg_name);
kms_err kms_asym_open(struct op_ctx *x, kms_key *k, const char *alg, const kms_ectx *ectx, const uint8_t *ct, size_t n,
                      uint8_t **pt, size_t *pt_len, const char **alg_name);

/* cks.c: keys in a custom key store. create_key: check the store (CustomKeyStoreNotFoundException,
 * CustomKeyStoreInvalidStateException unless CONNECTED), set k's hsm and cks_id and generate its AES-256
 * key in the token. seal/open: a ciphertext blob of k sealed / opened inside the token (pt: n bytes,
 * b->ciphertext_len for open); KMSInvalidStateException while k's store is not connected. */
struct kms_blob;
kms_err kms_cks_create_key(struct op_ctx *x, const char *cks_id, kms_key *k);
kms_err kms_cks_seal(struct op_ctx *x, kms_key *k, const uint8_t *pt, size_t n, const kms_ectx *ectx,
                     json_t **blob_json);
kms_err kms_cks_open(struct op_ctx *x, kms_key *k, const struct kms_blob *b, const kms_ectx *ectx, uint8_t *pt);

#endif
