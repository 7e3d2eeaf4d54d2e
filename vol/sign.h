/*
 * sign.h — signed snapshots (docs/DESIGN.md "Signed snapshots"): a snapshot's manifest (manifest.h),
 * recomputed from the store by reading every chunk it maps (and, given its keys, authenticating every
 * sector), signed by a SIGN_VERIFY key through the key service's Sign (MessageType DIGEST; ECDSA_SHA_256
 * for ECC_NIST_P256, RSASSA_PSS_SHA_256 for RSA keys), recorded in the catalog, and verified through the
 * key service's Verify or offline with the key's public key (OpenSSL). A copy of a signed snapshot is
 * signed anew with the source's manifest digest inside its own manifest and the source's record kept.
 * Error convention: 0 / -errno with a vol_err holding EC2's (or the key service's) error code.
 */
#ifndef ENVELOPEFS_VOL_SIGN_H
#define ENVELOPEFS_VOL_SIGN_H

#include <stdbool.h>
#include <stdint.h>

#include "manifest.h"
#include "store.h"

/* The store's default signing key (catalog setting signing_key_id): *key malloc'd, -ENOENT when none. */
int vol_signing_default(vol_store *st, char **key);
/* Set (key_id resolved through DescribeKey, must be a SIGN_VERIFY key this code can sign with; *arn
 * malloc'd) or clear (key_id NULL) the default. */
int vol_set_signing_default(vol_store *st, kmsc *kms, const char *key_id, char **arn, vol_err *e)
    __attribute__((warn_unused_result));

/* A snapshot's manifest as the store has it now. */
typedef struct vol_manifest_scan {
    vol_manifest m;
    uint64_t *block;        /* n mapped blocks, ascending, and the SHA-256 of each one's chunk bytes */
    uint8_t (*sha)[32];
    size_t n;
    bool authenticated;     /* every sector was opened with its key */
    uint64_t damaged;       /* blocks whose chunk is missing, not this block's, or fails authentication */
    uint64_t first_damaged;
} vol_manifest_scan;
/* Read every chunk snap_id maps (ring NULL: hash only, no sector authenticated). source_sha256 may be
 * NULL (zeros); source_id "" or NULL. */
int vol_manifest_scan_run(vol_store *st, const char *snap_id, const vol_keyring *ring, const char *source_id,
                          const uint8_t *source_sha256, vol_manifest_scan *out, vol_err *e) __attribute__((warn_unused_result));
void vol_manifest_scan_clear(vol_manifest_scan *s);

/* Sign snap_id (completed, every sector intact) with key_id through kms. source_id (may be NULL): the
 * snapshot it was copied from; src (may be NULL): that snapshot's signature record (from whichever store
 * holds it), which the copy's manifest names by digest and its record carries along. Replaces an earlier
 * signature of snap_id. out (may be NULL) gets the record. */
int vol_sign_snapshot(vol_store *st, kmsc *kms, const char *snap_id, const char *key_id, const char *source_id,
                      const vol_signature *src, vol_signature *out, vol_err *e) __attribute__((warn_unused_result));

/* Verify a signature over a 32-byte digest: through the key service (kms, key_id) or, pem non-NULL,
 * offline with that public key (PEM or DER SubjectPublicKeyInfo). 1 valid, 0 invalid, -errno could not
 * (e says why). */
int vol_verify_digest(kmsc *kms, const char *key_id, const char *pem, const char *algorithm, const uint8_t digest[32],
                      const uint8_t *sig, size_t sig_len, vol_err *e);

typedef enum vol_verdict {
    VOL_VERIFY_OK = 0,
    VOL_VERIFY_UNSIGNED,          /* no signature record */
    VOL_VERIFY_BAD_RECORD,        /* the recorded manifest does not decode */
    VOL_VERIFY_SIG_INVALID,       /* the signature does not verify (or another key made it) */
    VOL_VERIFY_MISMATCH,          /* the store's manifest is not the signed one */
    VOL_VERIFY_DAMAGED,           /* sectors fail authentication */
    VOL_VERIFY_SOURCE_INVALID,    /* a copy: the source's recorded signature does not verify */
} vol_verdict;

typedef struct vol_verify_opts {
    const char *public_key;       /* PEM/DER file: verify offline; NULL: the key service's Verify */
    const char *source_public_key;/* the same for a copy's source signature (NULL: key service, or unchecked offline) */
    const char *expect_key;       /* the key the verifier trusts (KMS mode: Verify with it); NULL: the recorded one */
    bool authenticate;            /* open every sector (needs the data keys through the store's key service) */
} vol_verify_opts;

typedef struct vol_verify_result {
    vol_verdict verdict;
    char detail[512];             /* what failed, in words */
    vol_signature sig;            /* the record (when signed) */
    vol_manifest recorded;
    uint8_t recorded_digest[32], current_digest[32];
    vol_manifest_scan scan;
    const char *field;            /* first differing manifest field, or NULL */
    bool have_block;              /* the first differing block is known */
    uint64_t block;
    int sig_valid;                /* 1, 0, -1 not checked */
    bool has_source;
    int source_valid;             /* 1, 0, -1 not checked */
    bool same_blocks;             /* a copy: the same block-map digest as its source (chunks shared) */
    char auth_error[512];         /* why sectors were not authenticated, or "" */
    char source_error[512];       /* why the source signature was not checked (its key out of reach), or "" */
} vol_verify_result;
/* 0 with *r filled (r->verdict the outcome), or -errno when the check could not run. */
int vol_verify_snapshot(vol_store *st, kmsc *kms, const char *snap_id, const vol_verify_opts *o, vol_verify_result *r,
                        vol_err *e) __attribute__((warn_unused_result));
void vol_verify_result_clear(vol_verify_result *r);

#endif
