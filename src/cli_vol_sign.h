/*
 * cli_vol_sign.h — signed snapshots on the command line (src/cli_vol_sign.c): the hook create-snapshot
 * and copy-snapshot call after recording a snapshot, and the `volume` verbs sign, set-signing-key and
 * fsck --verify-signature.
 */
#ifndef ENVELOPEFS_CLI_VOL_SIGN_H
#define ENVELOPEFS_CLI_VOL_SIGN_H

#include <jansson.h>

#include "cli_vol.h"

/* After snap_id was recorded: sign it with key_flag, else (a copy of a signed snapshot) the source's
 * key, else the store's default signing key; nothing when none applies. source_id: the copy's source
 * (NULL for create-snapshot), whose signature record is read from src_store (NULL: st; another region's
 * store for a copy between regions). o (may be NULL) gains SigningKeyId, SigningAlgorithm and ManifestDigest.
 * 0, or an exit status with the error printed — the snapshot is then deleted (a requested signature
 * is part of the snapshot). st may have no key service (one is opened). */
int cli_vol_sign_new(const cli_vol *g, vol_store *st, const char *snap_id, const char *key_flag, const char *source_id,
                     vol_store *src_store, const char *op, json_t *o);

/* `volume sign SNAP [--signing-key-id K]`, `volume set-signing-key KEY|none`,
 * `volume fsck SNAP --verify-signature [--public-key F] [--source-public-key F] [--signing-key-id K]
 * [--no-authenticate]`. Exit status. */
int cli_volume_sign(cli_vol *g);
int cli_volume_set_signing_key(cli_vol *g);
int cli_volume_verify(cli_vol *g);

#endif
