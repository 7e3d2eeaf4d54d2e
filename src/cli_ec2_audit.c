/*
 * cli_ec2_audit.c — the EC2 side's audit records (cli_vol.h): every `envelopefs ec2` verb and `volume
 * attach`/`detach` leaves one CloudTrail-shaped record with eventSource ec2.amazonaws.com, eventName the
 * EC2 action (CreateVolume, AttachVolume, ...), requestParameters from its flags, responseElements from
 * its answer (mutating calls; nothing an EC2 answer holds is secret), errorCode/errorMessage on failure.
 * They go into the account's one trail, as CloudTrail keeps all services' events together: the key
 * store's (kms_core_audit_service_event), so `kms lookup-audit` shows them (EventSource filters) and
 * `kms validate-audit` checks them in the same hash chain. Only with embedded keys: over --kms URL the
 * trail belongs to the server, which has no operation to append another service's event.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_aws.h"
#include "cli_common.h"
#include "cli_vol.h"

/* "kms-key-id" / "KmsKeyId" → "kmsKeyId" (CloudTrail's camelCase) into buf. */
static void camel(const char *in, char *buf, size_t cap)
{
    size_t o = 0;
    bool up = false;
    for (const char *p = in; *p && o + 1 < cap; p++) {
        if (*p == '-') {
            up = true;
            continue;
        }
        buf[o] = (char)(o == 0 ? tolower((unsigned char)*p) : up ? toupper((unsigned char)*p) : *p);
        o++;
        up = false;
    }
    buf[o] = 0;
}

/* Whether the embedded key store opens without asking for a passphrase (and exists at all). */
static bool opens_quietly(const cli_kms_opts *k)
{
    char *dir, *path = NULL;
    bool ok = false;
    struct stat sb;
    if (k->url && strncmp(k->url, "local:", 6))
        return false;
    if (!(dir = k->url ? strdup(k->url + 6) : cli_store_dir(k)))
        return false;
    if (asprintf(&path, "%s/keystore.db", dir) >= 0 && stat(path, &sb) == 0) {
        const char *rk = k->root_key_file ? k->root_key_file : getenv("ENVELOPEFS_ROOT_KEY_FILE");
        const char *pf = k->passphrase_file ? k->passphrase_file : getenv("ENVELOPEFS_PASSPHRASE_FILE");
        free(path);
        path = NULL;
        ok = (rk && *rk) || (pf && *pf) || (asprintf(&path, "%s/root.key", dir) >= 0 && access(path, R_OK) == 0);
    }
    free(path);
    free(dir);
    return ok;
}

static json_t *request_parameters(const struct cli_args *a, const char *resource)
{
    json_t *o = json_object();
    char key[64];
    for (int i = 0; o && a && i < a->n; i++) {
        json_t *v;
        camel(a->name[i], key, sizeof key);
        if (a->nval[i] == 0) {
            v = json_true();
        } else if (a->nval[i] == 1) {
            v = json_string(a->val[i][0]);
        } else {
            v = json_array();
            for (int j = 0; v && j < a->nval[i]; j++)
                json_array_append_new(v, json_string(a->val[i][j]));
        }
        json_object_set_new(o, key, v);
    }
    if (o && !a && resource) /* attach / detach: the volume */
        json_object_set_new(o, "volumeId", json_string(resource));
    return o;
}

static json_t *response_elements(json_t *resp)
{
    json_t *o, *v;
    const char *k;
    char key[64];
    if (!json_is_object(resp))
        return NULL;
    o = json_object();
    json_object_foreach(resp, k, v) {
        camel(k, key, sizeof key);
        json_object_set(o, key, v);
    }
    return o;
}

void cli_ec2_audit(const cli_vol *g, const char *event_name, const struct cli_args *a, const char *resource, int rc)
{
    kms_service_event ev = {.event_source = "ec2.amazonaws.com"};
    const char *code = NULL, *message = NULL;
    char name[64];
    char *req = NULL, *resp = NULL;
    json_t *rq, *rs = NULL;
    kmsc *kms;
    kms_err e;
    if (rc == CLI_EXIT_USAGE || !opens_quietly(&g->k))
        return; /* (a usage error is the CLI's, not a call; over --kms URL: see above) */
    camel(event_name, name, sizeof name); /* a verb (create-volume) or an action: CreateVolume */
    name[0] = (char)toupper((unsigned char)name[0]);
    ev.event_name = event_name = name;
    ev.read_only = !strncmp(event_name, "Describe", 8) || !strncmp(event_name, "Get", 3);
    if (rc) {
        cli_last_service_error(&code, &message);
        ev.error_code = code ? code : "InternalError";
        ev.error_message = message;
    }
    if (!resource && a) {
        const char *const ids[] = {"volume-id", "snapshot-id", "source-snapshot-id"};
        for (size_t i = 0; i < sizeof ids / sizeof ids[0] && !resource; i++)
            resource = cli_arg1(a, ids[i]);
    }
    if (!rc && json_is_object(cli_vol_last_response)) {
        const char *made = json_string_value(json_object_get(cli_vol_last_response, "SnapshotId"));
        if (!made || strncmp(made, "snap-", 5) || !strcmp(event_name, "CreateVolume")) /* (a volume names its source) */
            made = json_string_value(json_object_get(cli_vol_last_response, "VolumeId"));
        if (made && *made)
            resource = made;
    }
    if (resource && (!strncmp(resource, "vol-", 4) || !strncmp(resource, "snap-", 5))) {
        ev.resource_name = resource;
        ev.resource_type = resource[0] == 'v' ? "AWS::EC2::Volume" : "AWS::EC2::Snapshot";
    }
    rq = request_parameters(a, resource);
    if (!rc && !ev.read_only)
        rs = response_elements(cli_vol_last_response);
    req = rq ? json_dumps(rq, JSON_COMPACT) : NULL;
    resp = rs ? json_dumps(rs, JSON_COMPACT) : NULL;
    json_decref(rq);
    json_decref(rs);
    ev.request_parameters = req;
    ev.response_elements = resp;
    {
        cli_kms_opts k = g->k;
        k.via_service = NULL; /* EC2's own record: the caller, not a call through EC2 */
        kms = cli_open_kms(&k, NULL);
    }
    e = kms ? kmsc_audit_service_event(kms, &ev) : KMS_ERR_IO;
    if (e)
        fprintf(stderr, "envelopefs: warning: the %s call was not recorded in the audit trail: %s\n", event_name,
                kms_err_name(e));
    kmsc_free(kms);
    free(req);
    free(resp);
}
