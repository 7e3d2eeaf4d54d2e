/*
 * authz.h — who may do what with which key (authz.c): the one place key policies and grants are
 * evaluated. The operations (ops.c) call it once they know the key a request acts on (through
 * kms_authorize_key, ops_access.c), with core->lock held. Private to the core.
 */
#ifndef ENVELOPEFS_KMS_AUTHZ_H
#define ENVELOPEFS_KMS_AUTHZ_H

#include "internal.h"

/* Operations on no one key (CreateKey, ListKeys, ListAliases, GenerateRandom): KMS_OK for every
 * authenticated caller — they act on the caller's own account (there is no IAM here to say otherwise).
 * key_id is unused (NULL); every use of a key is decided by kms_access_check. */
kms_err kms_authorize(kms_core *c, const kms_principal *caller, const char *operation, const char *key_id)
    KMS_WUR;

/* The operations a grant may allow (GrantOperation of the AWS model), by bit index. */
#define KMS_N_GRANT_OPS 17
extern const char *const KMS_GRANT_OPS[KMS_N_GRANT_OPS];
int kms_grant_op_index(const char *name); /* -1 if not a grant operation */

/* AWS's default key policy for a key of `account`: its root — here every principal of the account —
 * may do everything. malloc'd. */
char *kms_default_policy_text(const char *account);

/* The caller's account (the store's when the caller names none) and ARN ("arn:aws:iam::A:root" for user
 * NULL or "root", else "arn:aws:iam::A:user/U"), truncated to cap. */
const char *kms_caller_account(const kms_core *c, const kms_principal *p);
void kms_caller_arn(const kms_core *c, const kms_principal *p, char *buf, size_t cap);

/* "arn:aws:kms:REGION:OWNER:key/ID", truncated to cap. */
void kms_key_arn_of(const kms_core *c, const kms_key *k, char *buf, size_t cap);

/* k's compiled policy (its text or the default), compiled at first use and kept until the policy changes
 * (kms_key_set_policy) or the tables are reloaded. NULL only on failure (a damaged stored policy). */
const kms_policy *kms_key_policy(kms_key *k);

/* Replace k's policy text and compiled form (takes ownership of both; NULL text = the default). */
void kms_key_set_policy(kms_key *k, char *text, kms_policy *compiled);

/* One access decision's request. */
typedef struct kms_access_req {
    const char *action;             /* "Decrypt", "ReEncryptFrom", "PutKeyPolicy", ... (no "kms:") */
    const kms_ectx *ectx;           /* the encryption context this key is used with, or NULL */
    const char *alias;              /* the alias the request named the key by, or NULL */
    const char *const *grant_ops;   /* CreateGrant: the operations asked for */
    size_t n_grant_ops;
    const kms_grant *new_grant;     /* CreateGrant: the grant asked for (a grant allowing CreateGrant
                                     * allows only grants within its own operations and constraint) */
    bool policy_only;               /* grants are not consulted (RetireGrant weighs its one grant itself) */
    char *grant_used;               /* out (may be NULL): the id of the grant that allowed it, else "" */
} kms_access_req;


/* Allowed (KMS_OK) or KMS_ERR_ACCESS_DENIED with AWS's message naming principal, action and key ARN in
 * *msg. An explicit Deny of the policy wins over everything; then an Allow; then a grant. */
kms_err kms_access_check(kms_core *c, const kms_principal *p, kms_key *k, const kms_access_req *r, char **msg);

/* Whether `policy` would let the caller call PutKeyPolicy on k (the lockout safety check). */
bool kms_access_policy_allows_put(kms_core *c, const kms_principal *p, const kms_key *k, const kms_policy *policy);

/* Whether a grant's constraint admits this encryption context. */
bool kms_grant_admits(const kms_grant *g, const kms_ectx *ectx);

#endif
