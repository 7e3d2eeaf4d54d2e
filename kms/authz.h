/*
 * authz.h — who may do what with which key (authz.c): the one place key policies and grants will be
 * evaluated. Called by the operations (ops.c) once they know the key a request acts on, with
 * core->lock held.
 */
#ifndef ENVELOPEFS_KMS_AUTHZ_H
#define ENVELOPEFS_KMS_AUTHZ_H

#include "internal.h"

/* KMS_OK if caller may run `operation` on key_id (NULL: an operation on no one key, e.g. CreateKey,
 * ListKeys); KMS_ERR_ACCESS_DENIED otherwise. caller NULL is the embedded principal (the store's owner). */
kms_err kms_authorize(kms_core *c, const kms_principal *caller, const char *operation, const char *key_id)
    KMS_WUR;

#endif
