/*
 * grant.c — an attachment's grant on its volume's key (grant.h): CreateGrant / Decrypt with the grant
 * token / RetireGrant through kmsclient, and the catalog record ("grant:VOL") that lets the next attach
 * retire what a killed daemon left.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "grant.h"

static void setting_key(char *buf, size_t cap, const char *volume_id)
{
    snprintf(buf, cap, "grant:%s", volume_id);
}

/* The recorded grants: a JSON array (never NULL on success; empty when none). */
static int load(vol_store *st, const char *volume_id, json_t **out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    char key[64], *text = NULL;
    int rc;
    setting_key(key, sizeof key, volume_id);
    rc = cat->ops->setting_get(cat, key, &text);
    if (rc == -ENOENT) {
        *out = json_array();
        return *out ? 0 : vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    }
    if (rc)
        return vol_fail(e, rc, "InternalError", "cannot read the grants of %s from the catalog", volume_id);
    *out = json_loads(text, 0, NULL);
    free(text);
    if (!json_is_array(*out)) {
        json_decref(*out);
        *out = NULL;
        return vol_fail(e, -EIO, "InternalError", "the catalog's grant record of %s is damaged", volume_id);
    }
    return 0;
}

static int save(vol_store *st, const char *volume_id, json_t *arr, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    char key[64], *text;
    int rc;
    setting_key(key, sizeof key, volume_id);
    if (!json_array_size(arr))
        rc = cat->ops->setting_delete(cat, key);
    else if (!(text = json_dumps(arr, JSON_COMPACT)))
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    else {
        rc = cat->ops->setting_set(cat, key, text);
        free(text);
    }
    return rc ? vol_fail(e, rc, "InternalError", "cannot record the grants of %s in the catalog", volume_id) : 0;
}

/* RetireGrant (as EC2, the retiring principal); refused (a key service whose EC2 is real: AWS), the
 * caller's own RevokeGrant. Gone already (NotFound, an unknown grant id) counts as retired. */
static int retire_one(vol_store *st, const char *key_arn, const char *grant_id, vol_err *e)
{
    kmsc_error ke;
    kms_err k;
    memset(&ke, 0, sizeof ke);
    k = kmsc_retire_grant(vol_store_kms(st), key_arn, grant_id, &ke);
    if (k == KMS_ERR_ACCESS_DENIED) {
        memset(&ke, 0, sizeof ke);
        k = kmsc_revoke_grant(vol_store_kms(st), key_arn, grant_id, &ke);
    }
    if (k == KMS_OK || k == KMS_ERR_NOT_FOUND || k == KMS_ERR_INVALID_GRANT_ID)
        return 0;
    return vol_kms_fail(e, k, &ke);
}

int vol_grant_retire_stale(vol_store *st, const char *volume_id, vol_err *e)
{
    json_t *arr = NULL, *left;
    size_t i;
    json_t *g;
    int rc = load(st, volume_id, &arr, e), first = 0;
    if (rc)
        return rc;
    if (!json_array_size(arr)) {
        json_decref(arr);
        return 0;
    }
    if (!(left = json_array())) {
        json_decref(arr);
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    }
    json_array_foreach(arr, i, g) {
        const char *k = json_string_value(json_object_get(g, "KeyId")), *id = json_string_value(json_object_get(g, "GrantId"));
        if (!k || !id)
            continue; /* (a damaged entry names nothing to retire) */
        if ((rc = retire_one(st, k, id, e))) {
            if (!first)
                first = rc;
            json_array_append(left, g);
        }
    }
    rc = save(st, volume_id, left, first ? NULL : e);
    json_decref(left);
    json_decref(arr);
    return first ? first : rc;
}

int vol_grant_create(vol_store *st, const char *volume_id, const vol_lineage *l, vol_grant *g, vol_err *e)
{
    static const char *const OPS[] = {"Decrypt"};
    kms_ectx_pair pair = {"aws:ebs:id", l->ctx_id};
    kms_ectx ctx = {&pair, 1};
    char grantee[192], retiring[160], region[64] = "", account[13] = "";
    char *id = NULL, *token = NULL;
    json_t *arr = NULL;
    kmsc_error ke;
    kms_err k;
    int rc;
    memset(g, 0, sizeof *g);
    memset(&ke, 0, sizeof ke);
    /* arn:aws:kms:REGION:ACCOUNT:key/ID: EC2 of the key's region retires; the grantee is the caller when
     * the client knows who that is (embedded), else the key's account (over http the server decides who
     * the caller is; any principal of the key's account, as EBS's grantee is EC2's role, not the user) */
    if (sscanf(l->key_arn, "arn:aws:kms:%63[^:]:%12[0-9]:key/", region, account) != 2 || strlen(account) != 12)
        return vol_fail(e, -EINVAL, "InternalError", "the lineage's key is not a key ARN: %s", l->key_arn);
    snprintf(retiring, sizeof retiring, "ec2.%s.amazonaws.com", region);
    if (kmsc_caller_arn(vol_store_kms(st), grantee, sizeof grantee) != KMS_OK)
        snprintf(grantee, sizeof grantee, "arn:aws:iam::%s:root", account);
    k = kmsc_create_grant(vol_store_kms(st), l->key_arn, grantee, retiring, OPS, 1, &ctx, NULL, &id, &token, &ke);
    if (k)
        return vol_kms_fail(e, k, &ke);
    snprintf(g->key_arn, sizeof g->key_arn, "%s", l->key_arn);
    snprintf(g->id, sizeof g->id, "%s", id);
    g->token = token;
    free(id);
    if ((rc = load(st, volume_id, &arr, e)))
        goto undo;
    if (json_array_append_new(arr, json_pack("{s:s, s:s}", "KeyId", g->key_arn, "GrantId", g->id))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto undo;
    }
    if ((rc = save(st, volume_id, arr, e)))
        goto undo;
    json_decref(arr);
    return 0;
undo: /* not recorded: retire it now rather than leave it behind */
    json_decref(arr);
    (void)retire_one(st, g->key_arn, g->id, NULL);
    vol_grant_clear(g);
    return rc;
}

int vol_grant_key(vol_store *st, const vol_lineage *l, const vol_grant *g, kmsc_secret **dk, vol_err *e)
{
    kms_ectx_pair pair = {"aws:ebs:id", l->ctx_id};
    kms_ectx ctx = {&pair, 1};
    kmsc_error ke;
    kms_err k;
    memset(&ke, 0, sizeof ke);
    *dk = NULL;
    k = kmsc_decrypt_with_grant(vol_store_kms(st), l->key_arn, l->wrapped, l->wrapped_len, &ctx, g->token, dk, &ke);
    if (k)
        return vol_kms_fail(e, k, &ke);
    if ((*dk)->len != 32) {
        kmsc_secret_free(*dk);
        *dk = NULL;
        return vol_fail(e, -EIO, "InternalError", "the data key of lineage %s has the wrong length", l->id);
    }
    return 0;
}

int vol_grant_retire(vol_store *st, const char *volume_id, vol_grant *g, vol_err *e)
{
    json_t *arr = NULL, *it;
    size_t i;
    int rc;
    if (!g->id[0])
        return 0;
    if ((rc = retire_one(st, g->key_arn, g->id, e)))
        return rc; /* the record stays: the next attach retires it */
    if ((rc = load(st, volume_id, &arr, e)))
        return rc;
    json_array_foreach(arr, i, it) {
        const char *id = json_string_value(json_object_get(it, "GrantId"));
        if (id && !strcmp(id, g->id)) {
            json_array_remove(arr, i);
            break;
        }
    }
    rc = save(st, volume_id, arr, e);
    json_decref(arr);
    if (!rc)
        vol_grant_clear(g);
    return rc;
}

bool vol_grant_recorded(vol_store *st, const char *volume_id)
{
    json_t *arr = NULL;
    bool any = load(st, volume_id, &arr, NULL) == 0 && json_array_size(arr) > 0;
    json_decref(arr);
    return any;
}

void vol_grant_clear(vol_grant *g)
{
    free(g->token);
    memset(g, 0, sizeof *g);
}
