/*
 * authz.c — kms_authorize (see authz.h): where key policies and grants will live. Today a principal of
 * another account than the store's may not use its keys (AWS's default key policy trusts only the
 * owning account).
 */
#include <string.h>

#include "authz.h"

kms_err kms_authorize(kms_core *c, const kms_principal *caller, const char *operation, const char *key_id)
{
    (void)operation;
    (void)key_id;
    if (caller && caller->account && strcmp(caller->account, c->account))
        return KMS_ERR_ACCESS_DENIED;
    return KMS_OK;
}
