/*
 * grant.h — the grant an attachment holds on its volume's key, as EBS does it: at attach EC2 calls
 * CreateGrant on the key (operations Decrypt only, constraint EncryptionContextSubset
 * {"aws:ebs:id": the lineage's context}, retiring principal ec2.REGION.amazonaws.com), decrypts the data
 * key under that grant's token, and retires the grant at detach. Every call goes through the store's
 * key-service client, which the CLI opens "via ec2" (kms:ViaService, kms:GrantIsForAWSResource).
 * The grants in force are recorded in the catalog (setting "grant:VOL", a JSON array of
 * {"KeyId","GrantId"}) from CreateGrant until RetireGrant succeeds, so a daemon killed with -9 leaves a
 * record the next attach retires: no grant outlives its attachment for longer than that.
 */
#ifndef ENVELOPEFS_VOL_GRANT_H
#define ENVELOPEFS_VOL_GRANT_H

#include "envelopefs/kmsclient.h"
#include "store.h"
#include "vol.h"

typedef struct vol_grant {
    char key_arn[256];
    char id[80];       /* "" while there is none */
    char *token;       /* malloc'd; used for the Decrypt right after CreateGrant */
} vol_grant;

/* Retire every grant recorded for the volume (a previous attachment that ended without retiring its
 * own); a grant the key service no longer knows counts as retired. Call only while no daemon holds the
 * volume. */
int vol_grant_retire_stale(vol_store *st, const char *volume_id, vol_err *e) __attribute__((warn_unused_result));
/* CreateGrant for the lineage's key and record it. */
int vol_grant_create(vol_store *st, const char *volume_id, const vol_lineage *l, vol_grant *g, vol_err *e)
    __attribute__((warn_unused_result));
/* Decrypt the lineage's data key under the grant (context {"aws:ebs:id": l->ctx_id}, the constraint's). */
int vol_grant_key(vol_store *st, const vol_lineage *l, const vol_grant *g, kmsc_secret **dk, vol_err *e)
    __attribute__((warn_unused_result));
/* RetireGrant and drop its record (also when already gone); g is cleared on success. */
int vol_grant_retire(vol_store *st, const char *volume_id, vol_grant *g, vol_err *e) __attribute__((warn_unused_result));
void vol_grant_clear(vol_grant *g);
/* Whether grants are recorded for the volume (a killed daemon's, not yet retired). */
bool vol_grant_recorded(vol_store *st, const char *volume_id);

#endif
