/*
 * cli_ec2_audit.c — the EC2 side's audit records (cli_vol.h): every `envelopefs ec2` verb and `volume
 * attach`/`detach` leaves one CloudTrail-shaped record with eventSource ec2.amazonaws.com, eventName the
 * EC2 action (CreateVolume, AttachVolume, ...), requestParameters from its flags, responseElements from
 * its answer (mutating calls; nothing an EC2 answer holds is secret), errorCode/errorMessage on failure,
 * userAgent "envelopefs/VERSION command/ec2.VERB". Every `envelopefs ebs` verb (the EBS direct API) leaves
 * one the same way with eventSource ebs.amazonaws.com (cli_ebs_audit): StartSnapshot and CompleteSnapshot
 * as management events, the block calls (PutSnapshotBlock, GetSnapshotBlock, ListSnapshotBlocks,
 * ListChangedBlocks) as data events (managementEvent false, eventCategory "Data"), as CloudTrail records
 * them; no block data (nor --block-data's file name) is in a record.
 * They go into the account's one trail, as CloudTrail keeps all services' events together, always through
 * kms_core_audit_service_event (one record builder, hash chain, digests and validation):
 *   - embedded keys: the key store's trail, next to the key service's own records, the caller the store's
 *     root or --as-user;
 *   - any other key service (--kms URL: our server, moto, AWS KMS): the volume store's own trail,
 *     VOLUME_STORE/trail/ — a trail-only key store (no keys) created on first use with a generated 0600
 *     root key beside its keystore.db (trail/root.key), the caller as the EC2 side knows it: the access
 *     key the key service is called with and that key's account (kmsc_caller_account), or the local
 *     user (unixPeer) on an unsigned Unix socket; userIdentity type "Unknown" (no user name or ARN: KMS
 *     has no operation that tells them).
 * `envelopefs volume lookup-events` / `validate-audit` read whichever trail the same options write.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

void cli_ec2_action(const char *verb, char *buf, size_t cap)
{
    camel(verb, buf, cap);
    buf[0] = (char)toupper((unsigned char)buf[0]);
}

bool cli_ec2_trail_is_keystore(const cli_vol *g)
{
    return !g->k.url || !strncmp(g->k.url, "local:", 6);
}

char *cli_ec2_trail_dir(const cli_vol *g)
{
    char *vs, *dir = NULL;
    if (cli_ec2_trail_is_keystore(g))
        return g->k.url ? strdup(g->k.url + 6) : cli_store_dir(&g->k);
    if (!(vs = cli_vol_store_dir(g)))
        return NULL;
    if (asprintf(&dir, "%s/trail", vs) < 0)
        dir = NULL;
    free(vs);
    return dir;
}

/* mkdir -p, new directories 0700. 0 or -1 (errno). */
static int mkdirs(const char *path)
{
    char *p = strdup(path);
    int rc = 0;
    if (!p)
        return -1;
    for (char *s = p + 1; rc == 0 && *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0700) && errno != EEXIST)
                rc = -1;
            *s = '/';
        }
    if (rc == 0 && mkdir(p, 0700) && errno != EEXIST)
        rc = -1;
    free(p);
    return rc;
}

/* The region a remote client calls when none could be opened (as kmsclient/http.c picks it, without the
 * config file). */
static const char *fallback_region(const cli_vol *g)
{
    const char *r = g->k.region ? g->k.region : getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    return r && *r ? r : "us-east-1";
}

kms_core *cli_ec2_trail_open(const cli_vol *g, const char *region)
{
    char *dir = cli_ec2_trail_dir(g), *db = NULL, *rk = NULL, *msg = NULL;
    kms_core *core = NULL;
    kms_err e = KMS_OK;
    struct stat sb;
    int fd = -1;
    if (!dir || asprintf(&db, "%s/keystore.db", dir) < 0 || asprintf(&rk, "%s/root.key", dir) < 0) {
        fprintf(stderr, "envelopefs: out of memory\n");
        goto out;
    }
    if (mkdirs(dir) || (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || flock(fd, LOCK_EX)) {
        fprintf(stderr, "envelopefs: the volume store's audit trail %s: %s\n", dir, strerror(errno));
        goto out;
    }
    /* created on first use, under the directory's lock (two first calls at once make one trail); a root
       key left by a creation that died before its store is used, not replaced */
    if (stat(db, &sb) && errno == ENOENT) {
        kms_store_opts so = {.store_dir = dir, .root_key_file = rk, .region = region ? region : fallback_region(g)};
        char *made = NULL;
        if (access(rk, F_OK) && errno == ENOENT && !(made = cli_generate_root_key(dir)))
            goto out;
        free(made);
        if ((e = kms_store_init(&so, &msg)))
            goto fail;
    }
    close(fd); /* (the lock with it) */
    fd = -1;
    {
        kms_store_opts so = {.store_dir = dir, .root_key_file = rk};
        e = kms_core_open(&so, &core, &msg);
    }
fail:
    if (e) {
        fprintf(stderr, "envelopefs: the volume store's audit trail %s: %s: %s\n", dir, kms_err_name(e),
                msg ? msg : kms_strerror(e));
        core = NULL;
    }
out:
    if (fd >= 0)
        close(fd);
    free(msg);
    free(rk);
    free(db);
    free(dir);
    return core;
}

/* How the EC2 side knows its caller when the key service is remote: the access key it calls the key service
 * with and that key's account (learned once per process: kmsclient keeps it), else the local user. Fills p
 * (pointing into the buffers given) and *identity (a JSON object's text, malloc'd), *region. */
struct remote_caller {
    char account[16], akid[24], region[32];
    kms_unix_peer peer;
    char *identity;
};
static void remote_caller(const cli_vol *g, kms_principal *p, struct remote_caller *rc)
{
    kmsc_opts ko = {.url = g->k.url, .region = g->k.region, .max_retries = 0, .timeout_ms = 3000};
    kmsc *kms = NULL;
    char *msg = NULL;
    json_t *ui;
    memset(rc, 0, sizeof *rc);
    if (kmsc_new(&ko, &kms, &msg) == KMS_OK) { /* (silent: the verb said what was wrong with it) */
        kmsc_error ke;
        const char *ak = kmsc_access_key_id(kms), *region = kmsc_region(kms);
        memset(&ke, 0, sizeof ke);
        if (kmsc_caller_account(kms, rc->account, &ke))
            rc->account[0] = 0;
        snprintf(rc->akid, sizeof rc->akid, "%s", ak ? ak : "");
        snprintf(rc->region, sizeof rc->region, "%s", region ? region : fallback_region(g));
    } else {
        snprintf(rc->region, sizeof rc->region, "%s", fallback_region(g));
    }
    free(msg);
    kmsc_free(kms);
    ui = json_pack("{s:s}", "type", "Unknown");
    if (ui && rc->akid[0]) {
        json_object_set_new(ui, "principalId", json_string(rc->akid));
        json_object_set_new(ui, "accessKeyId", json_string(rc->akid));
    }
    if (ui && rc->account[0])
        json_object_set_new(ui, "accountId", json_string(rc->account));
    if (ui && !rc->akid[0]) { /* unsigned (a Unix socket that knows us by uid): the local user */
        rc->peer = (kms_unix_peer){(uint32_t)getuid(), (uint32_t)getgid(), (int32_t)getpid()};
        json_object_set_new(ui, "unixPeer", json_pack("{s:I, s:I, s:I}", "uid", (json_int_t)rc->peer.uid, "gid",
                                                      (json_int_t)rc->peer.gid, "pid", (json_int_t)rc->peer.pid));
    }
    rc->identity = ui ? json_dumps(ui, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(ui);
    *p = (kms_principal){.account = rc->account, .user = "", .access_key = rc->akid[0] ? rc->akid : NULL,
                         .source = "embedded"};
}

/* A run of records (cli_audit_run_begin .. cli_audit_run_end): the trail (and the remote caller) opened once for
 * them all, as `snapshot upload` / `download` record one EBS call per block. Outside a run, each record opens
 * and closes it. */
static struct {
    bool on;
    kmsc *kms;             /* embedded keys: the key store's client */
    kms_core *core;        /* remote keys: the volume store's trail */
    struct remote_caller who;
    kms_principal p;
    bool have_who;
} run;

void cli_audit_run_begin(void)
{
    run.on = true;
}

void cli_audit_run_end(void)
{
    kmsc_free(run.kms);
    kms_core_free(run.core); /* (seals the chain: a close digest) */
    free(run.who.identity);
    memset(&run, 0, sizeof run);
}

/* Write ev into the account's trail (durable on KMS_OK; the message printed otherwise). */
static kms_err emit(const cli_vol *g, kms_service_event *ev)
{
    kms_err e;
    if (cli_ec2_trail_is_keystore(g)) {
        kmsc *kms = run.kms;
        if (!kms) {
            cli_kms_opts k = g->k;
            k.via_service = NULL; /* the service's own record: the caller, not a call through EC2 */
            kms = cli_open_kms(&k, NULL);
        }
        e = kms ? kmsc_audit_service_event(kms, ev) : KMS_ERR_IO;
        if (run.on && !run.kms)
            run.kms = kms;
        else if (!run.on)
            kmsc_free(kms);
    } else {
        struct remote_caller who;
        kms_principal p;
        kms_core *core = run.core;
        if (run.have_who) {
            who = run.who;
            p = run.p;
            p.account = run.who.account; /* (p points into who's buffers: the run's copy) */
            p.access_key = run.who.akid[0] ? run.who.akid : NULL;
        } else {
            remote_caller(g, &p, &who);
        }
        ev->user_identity = who.identity;
        if (!core)
            core = cli_ec2_trail_open(g, who.region);
        e = !who.identity ? KMS_ERR_NOMEM : core ? kms_core_audit_service_event(core, &p, ev) : KMS_ERR_IO;
        if (run.on) {
            run.core = core;
            if (!run.have_who) {
                run.who = who;
                run.p = p;
                run.have_who = true;
            }
        } else {
            kms_core_free(core); /* (seals the chain: a close digest) */
            free(who.identity);
        }
    }
    if (e)
        fprintf(stderr, "envelopefs: the %s call could not be recorded in the audit trail: %s\n", ev->event_name,
                kms_err_name(e));
    return e;
}

int cli_ebs_audit_call(const cli_vol *g, const char *command, const char *event_name, json_t *request,
                       json_t *response, const char *resource, const char *error_code, const char *error_message)
{
    char agent[128], *req = request ? json_dumps(request, JSON_COMPACT) : NULL;
    char *resp = response && !error_code ? json_dumps(response, JSON_COMPACT) : NULL;
    kms_service_event ev = {.event_source = "ebs.amazonaws.com", .event_name = event_name, .user_agent = agent,
                            .request_parameters = req, .response_elements = resp,
                            .error_code = error_code, .error_message = error_code ? error_message : NULL};
    kms_err e;
    if (cli_ec2_trail_is_keystore(g) && !opens_quietly(&g->k)) {
        free(req);
        free(resp);
        return 0; /* as record(): no key store, or one that would prompt for its passphrase again */
    }
    snprintf(agent, sizeof agent, "envelopefs/%s command/%s", ENVELOPEFS_VERSION, command);
    ev.read_only = !strncmp(event_name, "Get", 3) || !strncmp(event_name, "List", 4);
    ev.data_event = strcmp(event_name, "StartSnapshot") && strcmp(event_name, "CompleteSnapshot");
    if (resource && !strncmp(resource, "snap-", 5)) {
        ev.resource_name = resource;
        ev.resource_type = "AWS::EC2::Snapshot";
    }
    e = emit(g, &ev);
    free(req);
    free(resp);
    return e ? -1 : 0;
}

/* One record of service ("ec2" or "ebs") for the call event_name ("CreateVolume", a verb "create-volume") of
 * the CLI command command ("ec2", "volume", "ebs"). */
static int record(const cli_vol *g, const char *service, const char *command, const char *event_name,
                  const struct cli_args *a, const char *resource, int rc)
{
    char source[32], name[64], agent[128];
    kms_service_event ev = {.event_source = source};
    const char *code = NULL, *message = NULL;
    char *req = NULL, *resp = NULL;
    bool ebs = !strcmp(service, "ebs");
    json_t *rq, *rs = NULL;
    kms_err e;
    if (rc == CLI_EXIT_USAGE)
        return 0; /* (a usage error is the CLI's, not a call) */
    if (cli_ec2_trail_is_keystore(g) && !opens_quietly(&g->k))
        return 0; /* no key store, or one that would prompt for its passphrase again (docs/DESIGN.md) */
    snprintf(source, sizeof source, "%s.amazonaws.com", service);
    if (strchr(event_name, '-')) /* a verb of `envelopefs ec2` / `envelopefs ebs` */
        snprintf(agent, sizeof agent, "envelopefs/%s command/%s.%s", ENVELOPEFS_VERSION, command, event_name);
    else /* AttachVolume, DetachVolume: `envelopefs volume attach|detach` */
        snprintf(agent, sizeof agent, "envelopefs/%s command/volume.%s", ENVELOPEFS_VERSION,
                 !strcmp(event_name, "DetachVolume") ? "detach" : "attach");
    ev.user_agent = agent;
    cli_ec2_action(event_name, name, sizeof name);
    ev.event_name = event_name = name;
    ev.read_only = !strncmp(event_name, "Describe", 8) || !strncmp(event_name, "Get", 3) ||
                   !strncmp(event_name, "List", 4);
    /* EBS's block calls are CloudTrail data events; StartSnapshot and CompleteSnapshot management events */
    ev.data_event = ebs && strcmp(event_name, "StartSnapshot") && strcmp(event_name, "CompleteSnapshot");
    if (rc) {
        cli_last_service_error(&code, &message);
        ev.error_code = code ? code : ebs ? "InternalServerException" : "InternalError";
        ev.error_message = message;
    }
    if (!resource && a) {
        const char *const ids[] = {"volume-id", "snapshot-id", "source-snapshot-id", "second-snapshot-id"};
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
    if (rq && ebs) /* its --block-data names a local file; CloudTrail records no block data either */
        json_object_del(rq, "blockData");
    if (!rc && !ev.read_only)
        rs = response_elements(cli_vol_last_response);
    req = rq ? json_dumps(rq, JSON_COMPACT) : NULL;
    resp = rs ? json_dumps(rs, JSON_COMPACT) : NULL;
    json_decref(rq);
    json_decref(rs);
    ev.request_parameters = req;
    ev.response_elements = resp;
    e = emit(g, &ev);
    free(req);
    free(resp);
    return e ? -1 : 0;
}

int cli_ec2_audit(const cli_vol *g, const char *event_name, const struct cli_args *a, const char *resource, int rc)
{
    return record(g, "ec2", "ec2", event_name, a, resource, rc);
}

int cli_ebs_audit(const cli_vol *g, const char *verb, const struct cli_args *a, int rc)
{
    return record(g, "ebs", "ebs", verb, a, NULL, rc);
}
