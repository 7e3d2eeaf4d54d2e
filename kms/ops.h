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
};

typedef kms_err (*kms_op_fn)(struct op_ctx *ctx, json_t *in, json_t **out);

kms_err kms_authorize(kms_core *c, const kms_principal *caller, const char *operation, const char *key_id);
void kms_sweep_deletions(kms_core *c);

#define X(name) kms_err name(struct op_ctx *ctx, json_t *in, json_t **out);
X(op_cancel_key_deletion) X(op_create_alias) X(op_create_key) X(op_decrypt) X(op_delete_alias)
X(op_describe_key) X(op_disable_key) X(op_disable_key_rotation) X(op_enable_key)
X(op_enable_key_rotation) X(op_encrypt) X(op_generate_data_key) X(op_generate_data_key_without_plaintext)
X(op_generate_random) X(op_get_key_rotation_status) X(op_list_aliases) X(op_list_key_rotations)
X(op_list_keys) X(op_list_resource_tags) X(op_re_encrypt) X(op_rotate_key_on_demand)
X(op_schedule_key_deletion) X(op_tag_resource) X(op_untag_resource) X(op_update_alias)
X(op_update_key_description)
/* asym.c, mac.c, datakeypair.c */
X(kms_op_generate_data_key_pair) X(kms_op_generate_data_key_pair_without_plaintext) X(kms_op_generate_mac)
X(kms_op_get_public_key) X(kms_op_sign) X(kms_op_verify) X(kms_op_verify_mac)
/* import.c */
X(kms_op_delete_imported_key_material) X(kms_op_get_parameters_for_import) X(kms_op_import_key_material)
#undef X

#endif
