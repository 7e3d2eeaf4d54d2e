/*
 * share.c — owner accounts and createVolumePermission (share.h). Owners live in the catalog's owners
 * table (a row from before it has none: its lineage key's account owns it); shares in
 * create_volume_permissions. Every check here is about visibility in the catalog; the data stays
 * behind the owner's key, which the key service guards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "share.h"

bool vol_account_valid(const char *s)
{
    return s && strlen(s) == 12 && strspn(s, "0123456789") == 12;
}

void vol_owner_of(vol_store *st, const char *owner, const char *lineage, char out[16])
{
    vol_lineage l;
    out[0] = 0;
    if (owner && *owner) {
        snprintf(out, 16, "%s", owner);
        return;
    }
    if (vol_lineage_of(st, lineage, &l, NULL) == 0) {
        const char *p = l.key_arn; /* arn:aws:kms:REGION:ACCOUNT:key/ID */
        for (int i = 0; i < 4 && p; i++)
            p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL;
        if (p)
            snprintf(out, 16, "%.*s", (int)strcspn(p, ":"), p);
        vol_lineage_clear(&l);
    }
}

int vol_snapshot_visible(vol_store *st, const vol_snapshot *s, const char *account, bool *visible, bool *is_owner)
{
    vol_catalog *cat = vol_store_catalog(st);
    char owner[16];
    bool has = false;
    int rc;
    if (is_owner)
        *is_owner = false;
    *visible = false;
    if (!account || !*account) {
        *visible = true; /* no caller identity (no key service): the single-account view of old */
        if (is_owner)
            *is_owner = true;
        return 0;
    }
    vol_owner_of(st, s->owner, s->lineage, owner);
    if (!strcmp(owner, account)) {
        *visible = true;
        if (is_owner)
            *is_owner = true;
        return 0;
    }
    if ((rc = cat->ops->perm_has(cat, s->id, account, &has)))
        return rc;
    *visible = has;
    return 0;
}

int vol_snapshot_for_caller(vol_store *st, const char *id, bool owner, vol_snapshot *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_snapshot s;
    bool visible = false, is_owner = false;
    int rc;
    if (out)
        memset(out, 0, sizeof *out);
    if (!vol_id_valid("snap-", id))
        return vol_fail(e, -EINVAL, "InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", id);
    if ((rc = cat->ops->snapshot_get(cat, id, &s)))
        return rc == -ENOENT ? vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
                             : vol_fail(e, rc, "InternalError", "cannot read the volume catalog");
    if ((rc = vol_snapshot_visible(st, &s, vol_store_account(st), &visible, &is_owner))) {
        rc = vol_fail(e, rc, "InternalError", "cannot read the volume catalog");
    } else if (!visible) {
        rc = vol_fail(e, -ENOENT, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id);
    } else if (owner && !is_owner) {
        rc = vol_fail(e, -EPERM, "UnauthorizedOperation",
                      "You are not authorized to perform this operation: snapshot %s belongs to another account", id);
    }
    if (rc || !out)
        vol_snapshot_clear(&s);
    else
        *out = s;
    return rc;
}

int vol_volume_for_caller(vol_store *st, const char *id, vol_volume *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    const char *me = vol_store_account(st);
    vol_volume v;
    char owner[16];
    int rc;
    if (out)
        memset(out, 0, sizeof *out);
    if (!vol_id_valid("vol-", id))
        return vol_fail(e, -EINVAL, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", id);
    if ((rc = cat->ops->volume_get(cat, id, &v)))
        return rc == -ENOENT ? vol_fail(e, rc, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
                             : vol_fail(e, rc, "InternalError", "cannot read the volume catalog");
    vol_owner_of(st, v.owner, v.lineage, owner);
    if (*me && strcmp(owner, me)) {
        vol_volume_clear(&v);
        return vol_fail(e, -ENOENT, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id);
    }
    if (out)
        *out = v;
    else
        vol_volume_clear(&v);
    return 0;
}

/* Is key_arn the default EBS key alias/aws/ebs: the key this store made for it, or a key the service
 * itself manages (KeyManager AWS, as AWS's aws/ebs key is)? */
static int is_default_key(vol_store *st, const char *key_arn, bool *dflt, vol_err *e)
{
    char *saved = NULL, *resp = NULL, *req = NULL;
    size_t resp_len = 0;
    kmsc_error ke;
    json_t *r, *q;
    kms_err k;
    *dflt = false;
    if (vol_managed_key_arn(st, &saved) == 0) {
        *dflt = !strcmp(saved, key_arn);
        free(saved);
        if (*dflt)
            return 0;
    }
    if (!vol_store_kms(st))
        return 0;
    if (!(q = json_pack("{s:s}", "KeyId", key_arn)) || !(req = json_dumps(q, JSON_COMPACT))) {
        json_decref(q);
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    }
    json_decref(q);
    memset(&ke, 0, sizeof ke);
    k = kmsc_call(vol_store_kms(st), "DescribeKey", req, strlen(req), &resp, &resp_len, &ke);
    free(req);
    if (k)
        return vol_kms_fail(e, k, &ke);
    r = json_loadb(resp, resp_len, 0, NULL);
    kmsc_response_free(resp, resp_len);
    {
        const char *mgr = json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyManager"));
        *dflt = mgr && !strcmp(mgr, "AWS");
    }
    json_decref(r);
    return 0;
}

int vol_snapshot_share(vol_store *st, const char *id, bool add, const char *const *accounts, int n, bool group_all,
                       vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_snapshot s;
    vol_lineage l;
    bool dflt = false;
    int rc;
    for (int i = 0; i < n; i++)
        if (!vol_account_valid(accounts[i]))
            return vol_fail(e, -EINVAL, "InvalidUserID.Malformed", "Invalid user id: \"%s\"", accounts[i]);
    if ((rc = vol_snapshot_for_caller(st, id, true, &s, e)))
        return rc;
    if (group_all && add) {
        rc = vol_fail(e, -EPERM, "OperationNotPermitted", "Encrypted snapshots cannot be made public: %s is encrypted", id);
        goto out;
    }
    if (!n) {
        if (!group_all) /* removing group all from an encrypted snapshot changes nothing */
            rc = vol_fail(e, -EINVAL, "MissingParameter", "The request must contain the parameter userId or userGroup");
        goto out;
    }
    if (add) {
        if ((rc = vol_lineage_of(st, s.lineage, &l, e)))
            goto out;
        rc = is_default_key(st, l.key_arn, &dflt, e);
        vol_lineage_clear(&l);
        if (rc)
            goto out;
        if (dflt) {
            rc = vol_fail(e, -EPERM, "OperationNotPermitted", "Encrypted snapshots with EBS default key cannot be shared");
            goto out;
        }
    }
    if ((rc = cat->ops->begin(cat)))
        goto dberr;
    for (int i = 0; i < n; i++)
        if ((rc = add ? cat->ops->perm_add(cat, id, accounts[i]) : cat->ops->perm_remove(cat, id, accounts[i])))
            goto dberr;
    if ((rc = cat->ops->commit(cat)))
        goto dberr;
    goto out;
dberr:
    cat->ops->rollback(cat);
    rc = vol_fail(e, rc, "InternalError", "the volume catalog refused the change: %s", strerror(-rc));
out:
    vol_snapshot_clear(&s);
    return rc;
}

int vol_snapshot_unshare_all(vol_store *st, const char *id, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    int rc = vol_snapshot_for_caller(st, id, true, NULL, e);
    if (rc)
        return rc;
    if ((rc = cat->ops->perm_clear(cat, id)))
        return vol_fail(e, rc, "InternalError", "the volume catalog refused the change: %s", strerror(-rc));
    return 0;
}

int vol_snapshot_shares(vol_store *st, const char *id, vol_account_fn fn, void *arg, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    int rc = vol_snapshot_for_caller(st, id, true, NULL, e);
    if (rc)
        return rc;
    if ((rc = cat->ops->perm_list(cat, id, fn, arg)))
        return vol_fail(e, rc, "InternalError", "cannot read the volume catalog");
    return 0;
}
