/*
 * cli_vol.h — what `envelopefs ec2` and `envelopefs volume` share: their global options (the key store
 * and key service as for `kms`, the volume store, --query/--output), opening the volume store, and the
 * EC2 JSON shapes of volumes and snapshots.
 */
#ifndef ENVELOPEFS_CLI_VOL_H
#define ENVELOPEFS_CLI_VOL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

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

/* A verb's arguments: each --flag with the values up to the next --flag (a bare --flag has none). */
struct cli_args {
    const char *name[32];
    char **val[32];
    int nval[32];
    int n;
};
/* allowed: space-separated flag names without "--". 0 or an exit status (message printed). */
int cli_args_parse(const char *who, char **rest, int n, const char *verb, const char *allowed, struct cli_args *a);
/* The first value of --name ("" for a bare flag), NULL when absent. */
const char *cli_arg1(const struct cli_args *a, const char *name);
/* All values of --name (*v borrowed); 0 when absent. */
int cli_argv_of(const struct cli_args *a, const char *name, char ***v);
/* --name with exactly one value into *out (NULL when absent and not required); prints usage errors. */
int cli_need1(const char *who, const struct cli_args *a, const char *name, const char **out, bool required);
int cli_vol_usage_verr(const char *who, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Print o (consumed; NULL: 1) through --query/--output as the AWS CLI does; the exit status. */
int cli_vol_print(const cli_vol *g, const char *who, json_t *o);
/* A decimal unsigned integer, whole string, no sign: false when s is not one or overflows. */
bool cli_parse_u64(const char *s, uint64_t *v);

/* The last response cli_vol_print printed (owned here; NULL if none). */
extern json_t *cli_vol_last_response;
/* With cli_vol_defer_print set (`envelopefs ec2` sets it), cli_vol_print keeps the response and prints
 * nothing: cli_vol_print_deferred prints it once the call's audit record is durable (its exit status; 0
 * when nothing is pending), cli_vol_drop_deferred forgets it when the record could not be written. */
extern bool cli_vol_defer_print;
int cli_vol_print_deferred(const cli_vol *g, const char *who);
void cli_vol_drop_deferred(void);

/* cli_ec2_audit.c: record the verb's call (event name e.g. "CreateVolume" or a verb, "create-volume"; rc
 * its exit status; a, when non-NULL, its flags as requestParameters) in the account's trail with
 * eventSource ec2.amazonaws.com: the key store's when the keys are embedded (and the store opens without a
 * prompt), else the volume store's own (cli_ec2_trail_open). Durable when it returns 0; -1 (message
 * printed) when the record could not be written. Nothing is recorded for a usage error (returns 0). */
int cli_ec2_audit(const cli_vol *g, const char *event_name, const struct cli_args *a, const char *resource, int rc);
/* The same for an `ebs` verb ("put-snapshot-block"): eventSource ebs.amazonaws.com, the block calls as
 * data events, requestParameters without --block-data. */
int cli_ebs_audit(const cli_vol *g, const char *verb, const struct cli_args *a, int rc);
/* One EBS direct-API call made by another command (`snapshot upload` / `download`, command "snapshot.upload"):
 * event_name (StartSnapshot, PutSnapshotBlock, CompleteSnapshot, ListSnapshotBlocks, GetSnapshotBlock; the block
 * calls data events), its requestParameters and responseElements (JSON objects, or NULL), the snapshot, and the
 * error the command met (NULL: it succeeded). Durable when it returns 0; -1 (message printed) otherwise. Between
 * cli_audit_run_begin and cli_audit_run_end the trail stays open for every record (one open, not one per block). */
int cli_ebs_audit_call(const cli_vol *g, const char *command, const char *event_name, json_t *request,
                       json_t *response, const char *resource, const char *error_code, const char *error_message);
void cli_audit_run_begin(void);
void cli_audit_run_end(void);
/* An `ec2` verb's EC2 action: "create-volume" → "CreateVolume" (an action stays as it is). */
void cli_ec2_action(const char *verb, char *buf, size_t cap);
/* Whether the EC2 records go to the key store's trail (embedded keys) rather than the volume store's. */
bool cli_ec2_trail_is_keystore(const cli_vol *g);
/* The key store directory whose trail holds the EC2 records (malloc'd): the key store's, or
 * VOLUME_STORE/trail (its root key VOLUME_STORE/trail/root.key). */
char *cli_ec2_trail_dir(const cli_vol *g);
/* Open the volume store's trail (a trail-only key store), creating it on first use (region: its
 * awsRegion; NULL: --region, AWS_REGION, AWS_DEFAULT_REGION, us-east-1). NULL with the error printed. */
kms_core *cli_ec2_trail_open(const cli_vol *g, const char *region);

/* EC2's shapes. */
json_t *cli_volume_json(vol_store *st, const vol_volume *v);
json_t *cli_snapshot_json(vol_store *st, const vol_snapshot *s);

#endif
