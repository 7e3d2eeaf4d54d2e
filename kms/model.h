/*
 * model.h — request checks of AWS's service model, made before an operation runs (model.c).
 */
#ifndef ENVELOPEFS_KMS_MODEL_H
#define ENVELOPEFS_KMS_MODEL_H

#include <jansson.h>
#include <stdbool.h>

#include "envelopefs/kms.h"

/* Check in (the request of operation op) against the model: enum members, GrantTokens, DryRun.
 * KMS_OK with *dry_run set from DryRun, or KMS_ERR_VALIDATION / KMS_ERR_SERIALIZATION with *msg. */
kms_err kms_model_check(const char *op, json_t *in, bool *dry_run, char **msg) __attribute__((warn_unused_result));

#endif
