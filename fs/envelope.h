/*
 * envelope.h — envelope encryption with the key service: data keys generated and unwrapped under a
 * caller-given encryption context (GenerateDataKey, GenerateDataKeyWithoutPlaintext, Decrypt), a cache of
 * unwrapped data keys, and the mapping of key-service errors to errno. Knows nothing of files: the
 * directory mount (keys.c) binds its keys with {"envelopefs:fs-id", "envelopefs:file-id"}, volumes with
 * {"aws:ebs:id": VOLUME_ID}. Error convention: 0 / -errno (-EACCES: the key service refuses — key
 * disabled, pending deletion, deleted, not ours; -EIO: the wrapped key was modified or belongs elsewhere,
 * or the service failed). Thread-safe: one envelope may serve every thread.
 */
#ifndef ENVELOPEFS_FS_ENVELOPE_H
#define ENVELOPEFS_FS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "envelopefs/kmsclient.h"

typedef struct efs_envelope efs_envelope;

/* kms is borrowed (it must outlive the envelope); key_id (an id, ARN or alias) is copied. cache: the
 * data-key cache's limits, NULL for the default (4,096 keys, 10 minutes each). */
int efs_envelope_new(kmsc *kms, const char *key_id, const kmsc_cache_opts *cache, efs_envelope **out)
    __attribute__((warn_unused_result));
void efs_envelope_free(efs_envelope *e); /* wipes the cache; NULL: no-op */

/* A new data key of n bytes bound to ctx: *out has the plaintext (locked) and the wrapped blob; free it
 * with kmsc_data_key_free. On failure a log line names `what` and the service's error. */
int efs_envelope_generate(efs_envelope *e, const kms_ectx *ctx, size_t n, kmsc_data_key **out, const char *what)
    __attribute__((warn_unused_result));
/* The same without the plaintext (GenerateDataKeyWithoutPlaintext): only (*out)->ciphertext is set. */
int efs_envelope_generate_wrapped(efs_envelope *e, const kms_ectx *ctx, size_t n, kmsc_data_key **out,
                                  const char *what) __attribute__((warn_unused_result));

/* Unwrap the blob wrapped[0, wrapped_len) bound to ctx into *out (kmsc_secret_free), which must be n
 * bytes long (-EIO otherwise). With a cache id (id_len > 0), a cached key is used without a call and a
 * key the service unwrapped is cached under it. */
int efs_envelope_unwrap(efs_envelope *e, const kms_ectx *ctx, const uint8_t *wrapped, size_t wrapped_len, size_t n,
                        const uint8_t *id, size_t id_len, kmsc_secret **out, const char *what)
    __attribute__((warn_unused_result));
/* Cache a data key the caller holds (e.g. just generated: its creator opens it right away). */
void efs_envelope_remember(efs_envelope *e, const uint8_t *id, size_t id_len, const kmsc_secret *key);

/* The cache id of a wrapped key: binder (what the key is for: a file id, a volume id; binder_len may be 0)
 * ‖ the wrapped blob, into id (cap bytes). Its length, or 0 when it does not fit. */
#define EFS_ENVELOPE_ID_MAX (64 + 1024)
size_t efs_envelope_cache_id(const uint8_t *binder, size_t binder_len, const uint8_t *wrapped, size_t wrapped_len,
                             uint8_t *id, size_t cap);

/* A batch of generate calls from this thread whose audit records the key service commits together
 * (kmsc_defer_begin/_end): nothing generated inside may be made visible until efs_envelope_batch_end
 * returned 0; on an error (-errno) discard all of it. */
void efs_envelope_batch_begin(efs_envelope *e);
int efs_envelope_batch_end(efs_envelope *e) __attribute__((warn_unused_result));

/* A key-service error as -errno (see above). */
int efs_envelope_errno(kms_err code);

const char *efs_envelope_key_id(const efs_envelope *e);
uint64_t efs_envelope_cache_hits(const efs_envelope *e);
void efs_envelope_clear_cache(efs_envelope *e); /* every cached key wiped */

#endif
