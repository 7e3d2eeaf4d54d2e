/*
 * cli_vol.h — what `envelopefs ec2` and `envelopefs volume` share: their global options (the key store
 * and key service as for `kms`, the volume store, --query/--output), opening the volume store, and the
 * EC2 JSON shapes of volumes and snapshots.
 */
#ifndef ENVELOPEFS_CLI_VOL_H
#define ENVELOPEFS_CLI_VOL_H

#include <stdbool.h>

#include <jansson.h>

#include "cli_common.h"
#include "store.h"

typedef struct cli_vol {
    cli_kms_opts k;
    const char *volume_store;   /* --volume-store / ENVELOPEFS_VOLUME_STORE; default STORE/volumes */
    const char *query, *output;
    char **rest;                /* what is left: the verb and its arguments */
    int nrest;
} cli_vol;

/* Pull the global options out of argv[1..] (anywhere). Returns 0 or an exit status (message printed). */
int cli_vol_parse(int argc, char **argv, const char *who, cli_vol *g);
void cli_vol_done(cli_vol *g);
/* The volume store directory (malloc'd). */
char *cli_vol_store_dir(const cli_vol *g);
/* Open the store; with_kms: also the key service (*kms set, freed by the caller after the store). NULL
 * with the error printed (as op's error). */
vol_store *cli_vol_open(const cli_vol *g, bool with_kms, kmsc **kms, const char *op);
kmsc *cli_vol_open_kms(void *g);

/* EC2's shapes. */
json_t *cli_volume_json(vol_store *st, const vol_volume *v);
json_t *cli_snapshot_json(vol_store *st, const vol_snapshot *s);

#endif
