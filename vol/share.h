/*
 * share.h — owner accounts and cross-account snapshot sharing (share.c): which account owns a volume or
 * snapshot, which accounts a snapshot is shared with (its createVolumePermission), and the checks the
 * EC2 operations make before they touch one. The catalog only says who may *see* a snapshot; using its
 * data still takes the key service's Decrypt of the lineage's data key under the owner's key, evaluated
 * by the key policy and grants as for any other caller (docs/DESIGN.md "Owner accounts and sharing").
 */
#ifndef ENVELOPEFS_VOL_SHARE_H
#define ENVELOPEFS_VOL_SHARE_H

#include <stdbool.h>

#include "store.h"

/* Is s an AWS account id (12 decimal digits)? */
bool vol_account_valid(const char *s);
/* The owner of a row: its recorded owner, else (a row from before owners were recorded) the account
 * of its lineage's key. out[16]; "" when neither is known. */
void vol_owner_of(vol_store *st, const char *owner, const char *lineage, char out[16]);

/* May account see and restore snapshot s (its owner, or an account it is shared with)? *is_owner (may
 * be NULL): account owns it. An account of "" (unknown caller) sees everything, as before owners. */
int vol_snapshot_visible(vol_store *st, const vol_snapshot *s, const char *account, bool *visible, bool *is_owner)
    __attribute__((warn_unused_result));

/* The snapshot id as the caller may use it: malformed → InvalidSnapshotID.Malformed, absent or not
 * visible → InvalidSnapshot.NotFound (EC2 does not tell others' snapshots from missing ones), visible
 * but not owned while owner is required → UnauthorizedOperation. out (may be NULL) gets the row. */
int vol_snapshot_for_caller(vol_store *st, const char *id, bool owner, vol_snapshot *out, vol_err *e)
    __attribute__((warn_unused_result));
/* The volume id as the caller may use it: only its owner (else InvalidVolume.NotFound). */
int vol_volume_for_caller(vol_store *st, const char *id, vol_volume *out, vol_err *e) __attribute__((warn_unused_result));

/* modify-snapshot-attribute createVolumePermission: add or remove accounts (owner only). Refused as
 * EC2 refuses: group "all" (an encrypted snapshot cannot be public: OperationNotPermitted), a snapshot
 * under the default key alias/aws/ebs (OperationNotPermitted), an account id that is not 12 digits
 * (InvalidUserID.Malformed). All or nothing (one transaction). */
int vol_snapshot_share(vol_store *st, const char *id, bool add, const char *const *accounts, int n, bool group_all,
                       vol_err *e) __attribute__((warn_unused_result));
/* reset-snapshot-attribute: shared with no one (owner only). */
int vol_snapshot_unshare_all(vol_store *st, const char *id, vol_err *e) __attribute__((warn_unused_result));
/* describe-snapshot-attribute: fn gets each account it is shared with, ascending (owner only). */
int vol_snapshot_shares(vol_store *st, const char *id, vol_account_fn fn, void *arg, vol_err *e)
    __attribute__((warn_unused_result));

#endif
