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
    bool dry_run;   /* DryRun: stop with KMS_ERR_DRY_RUN once the call is authorised (model.c checked it) */
};

typedef kms_err (*kms_op_fn)(struct op_ctx *ctx, json_t *in, json_t **out);

/* Apply deletions whose waiting period is over (dispatch.c, before every operation). */
void kms_sweep_deletions(kms_core *c);

#define X(name, fn, verb, flags) kms_err fn(struct op_ctx *ctx, json_t *in, json_t **out);
KMS_OPERATIONS(X)
#undef X

#endif
