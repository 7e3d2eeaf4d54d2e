/*
 * ops.h — the key-service operations (ops.c), each a function of (context, JSON request) →
 * (JSON response | typed error). Called only by dispatch.c with core->lock held.
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
};

typedef kms_err (*kms_op_fn)(struct op_ctx *ctx, json_t *in, json_t **out);

kms_err kms_authorize(kms_core *c, const kms_principal *caller, const char *operation, const char *key_id);
/* ops_access.c: the authorization of one use of key k (its policy, then its grants), named by alias
 * (NULL if by id or ARN), with the request's encryption context and grant operations as conditions. */
kms_err kms_authorize_key(struct op_ctx *x, kms_key *k, const char *alias);
/* CreateKey's Policy and BypassPolicyLockoutSafetyCheck: validate, check the lockout, set k->policy_text
 * (NULL: the default) and k->policy. k's id and owner are set. */
kms_err kms_new_key_policy(struct op_ctx *x, json_t *in, kms_key *k);
/* GrantTokens of a request: at most 10, each a token of a grant this store holds. */
kms_err kms_check_grant_tokens(struct op_ctx *x, json_t *in);
void kms_sweep_deletions(kms_core *c);

#define X(name) kms_err name(struct op_ctx *ctx, json_t *in, json_t **out);
X(op_cancel_key_deletion) X(op_create_alias) X(op_create_key) X(op_decrypt) X(op_delete_alias)
X(op_describe_key) X(op_disable_key) X(op_disable_key_rotation) X(op_enable_key)
X(op_enable_key_rotation) X(op_encrypt) X(op_generate_data_key) X(op_generate_data_key_without_plaintext)
X(op_generate_random) X(op_get_key_rotation_status) X(op_list_aliases) X(op_list_key_rotations)
X(op_list_keys) X(op_list_resource_tags) X(op_re_encrypt) X(op_rotate_key_on_demand)
X(op_schedule_key_deletion) X(op_tag_resource) X(op_untag_resource) X(op_update_alias)
X(op_update_key_description)
X(op_put_key_policy) X(op_get_key_policy) X(op_list_key_policies) X(op_create_grant) X(op_list_grants)
X(op_list_retirable_grants) X(op_retire_grant) X(op_revoke_grant)
#undef X

/* ops.c's request helpers, for the operations in ops_access.c */
kms_err kms_op_fail(struct op_ctx *x, kms_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
kms_err kms_op_str(struct op_ctx *x, json_t *in, const char *field, bool required, const char **out);
kms_err kms_op_resolve(struct op_ctx *x, json_t *in, const char *field, kms_key **k);
kms_err kms_op_paging(struct op_ctx *x, json_t *in, long long def, long long max, size_t total, size_t *start,
                      size_t *limit);
void kms_op_page_end(json_t *o, size_t next, size_t total);

#endif
