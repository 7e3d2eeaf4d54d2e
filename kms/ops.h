/*
 * ops.h — the key-service operations (ops.c), each a function of (context, JSON request) →
 * (JSON response | typed error), declared from the one list of operations (KMS_OPERATIONS in
 * envelopefs/kms.h). Called only by dispatch.c with core->lock held.
 */
#ifndef ENVELOPEFS_KMS_OPS_H
#define ENVELOPEFS_KMS_OPS_H

#include <jansson.h>
#include "internal.h"

struct op_ctx {
    kms_core *core;
    const kms_principal *caller;
    const char *operation;
    char *key_id;   /* out: the key the operation acted on (for the audit trail), KMS_KEY_ID_LEN+1 */
    char **msg;     /* out: error message (malloc'd) */
    json_t *in;     /* the request (conditions and grants read its encryption context, GrantTokens) */
    const char *action;         /* the action being authorized when it is not the operation's name
                                 * (ReEncrypt: ReEncryptFrom, then ReEncryptTo); NULL: operation */
    const kms_grant *new_grant; /* CreateGrant: the grant asked for */
    bool dry_run;   /* DryRun: stop with KMS_ERR_DRY_RUN once the call is authorised (model.c checked it) */
    char *grant_used; /* out: the id of the grant that authorised the call ("" if none; the audit record's
                       * additionalEventData.grantId, as CloudTrail's), KMS_GRANT_ID_BUF bytes, or NULL */
};

typedef kms_err (*kms_op_fn)(struct op_ctx *ctx, json_t *in, json_t **out);

/* Apply deletions whose waiting period is over (dispatch.c, before every operation). */
void kms_sweep_deletions(kms_core *c);

/* ops_access.c: the authorization of one use of key k (its policy, then its grants), named by alias
 * (NULL if by id or ARN), with the request's encryption context and grant operations as conditions. */
kms_err kms_authorize_key(struct op_ctx *x, kms_key *k, const char *alias) KMS_WUR;
/* CreateKey's Policy and BypassPolicyLockoutSafetyCheck: validate, check the lockout, set k->policy_text
 * (NULL: the default) and k->policy. k's id and owner are set. */
kms_err kms_new_key_policy(struct op_ctx *x, json_t *in, kms_key *k) KMS_WUR;
/* The fields every operation that has them shares, checked before it runs: GrantTokens (at most 10, each
 * a token of a grant this store holds) and DryRun (a boolean). */
kms_err kms_check_grant_tokens(struct op_ctx *x, json_t *in) KMS_WUR;
/* A DryRun request, once authorized: DryRunOperationException (ReEncrypt: after both of its keys). */
kms_err kms_dry_run(struct op_ctx *x, const char *action) KMS_WUR;

#define X(name, fn, verb, flags) kms_err fn(struct op_ctx *ctx, json_t *in, json_t **out);
KMS_OPERATIONS(X)
#undef X

#endif
