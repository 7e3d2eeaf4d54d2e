/*
 * store.c — the volume store's control plane (store.h): volumes, snapshots, lineage keys, the default
 * key, attachment locks and the orphan sweep, over the catalog and chunk-store interfaces.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "ctl.h"
#include "grant.h"
#include "common/log.h"
#include "rekey.h"
#include "store.h"

struct vol_store {
    char *dir;
    vol_catalog *cat;
    vol_chunkstore *cs;
    kmsc *kms;
    char account[16];  /* the caller's account, learned once (vol_store_account) */
    bool account_known;
};

vol_catalog *vol_store_catalog(vol_store *st) { return st->cat; }
vol_chunkstore *vol_store_chunks(vol_store *st) { return st->cs; }
const char *vol_store_dir(vol_store *st) { return st->dir; }
kmsc *vol_store_kms(vol_store *st) { return st->kms; }

const char *vol_store_account(vol_store *st)
{
    if (!st->account_known && st->kms) {
        kmsc_error ke;
        memset(&ke, 0, sizeof ke);
        if (kmsc_caller_account(st->kms, st->account, &ke)) {
            /* fail closed: a caller we cannot name owns nothing and is shown nothing */
            EFS_WARN("volume store: the key service did not tell the caller's account: %s", ke.message);
            snprintf(st->account, sizeof st->account, "%s", VOL_ACCOUNT_UNKNOWN);
        }
        st->account_known = true;
    }
    return st->account;
}

const char *vol_store_owner(vol_store *st)
{
    const char *a = vol_store_account(st);
    return strcmp(a, VOL_ACCOUNT_UNKNOWN) ? a : "";
}

int vol_kms_fail(vol_err *e, kms_err code, const kmsc_error *ke)
{
    const char *name = ke && ke->name[0] ? ke->name : kms_err_name(code);
    int rc = code == KMS_ERR_NOT_FOUND ? -ENOENT : code == KMS_ERR_TRANSPORT ? -EHOSTUNREACH : -EACCES;
    /* EC2 reports the key service's refusal as KMS.<exception> (KMS.DisabledException, ...) */
    vol_fail(e, rc, "KMS", "%s", ke && ke->message[0] ? ke->message : kms_strerror(code));
    if (e)
        snprintf(e->code, sizeof e->code, "KMS.%s", name);
    return rc;
}

/* Both opens: read-write creates the store's directories and the catalog's schema; read-only (a source
 * region's store for copy-snapshot) creates and changes nothing. */
static int store_open(const char *dir, kmsc *kms, bool ro, vol_store **out, vol_err *e)
{
    vol_store *st = calloc(1, sizeof *st);
    char *p = NULL;
    int rc;
    *out = NULL;
    if (!st)
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    st->kms = kms;
    if (!(st->dir = strdup(dir)))
        goto nomem;
    if (!ro && mkdir(dir, 0700) && errno != EEXIST) {
        rc = vol_fail(e, -errno, "InternalError", "cannot create the volume store %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (!ro) {
        if (asprintf(&p, "%s/run", dir) < 0)
            goto nomem;
        if (mkdir(p, 0700) && errno != EEXIST) {
            rc = vol_fail(e, -errno, "InternalError", "cannot create %s: %s", p, strerror(errno));
            goto fail;
        }
        free(p);
    }
    if (asprintf(&p, "%s/catalog.db", dir) < 0)
        goto nomem;
    if ((rc = ro ? vol_catalog_sqlite_open_ro(p, &st->cat) : vol_catalog_sqlite_open(p, &st->cat))) {
        int fmt = rc == -EPROTO ? vol_catalog_sqlite_format(p) : 0;
        if (fmt > VOL_CATALOG_FORMAT)
            vol_fail(e, rc, "InternalError",
                     "the volume catalog %s is format %d, written by a newer envelopefs: this one reads up to format %d",
                     p, fmt, VOL_CATALOG_FORMAT);
        else if (rc == -EPROTO)
            vol_fail(e, rc, "InternalError", "the volume catalog %s was written by a newer envelopefs", p);
        else
            vol_fail(e, rc, "InternalError", "cannot open the volume catalog %s: %s", p, strerror(-rc));
        goto fail;
    }
    free(p);
    if (asprintf(&p, "%s/chunks", dir) < 0)
        goto nomem;
    if ((rc = ro ? vol_chunkstore_file_open_ro(p, &st->cs) : vol_chunkstore_file_open(p, &st->cs))) {
        vol_fail(e, rc, "InternalError", "cannot open the chunk store %s: %s", p, strerror(-rc));
        goto fail;
    }
    free(p);
    *out = st;
    return 0;
nomem:
    p = NULL; /* asprintf leaves it undefined */
    rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
fail:
    free(p);
    vol_store_free(st);
    return rc;
}

int vol_store_open(const char *dir, kmsc *kms, vol_store **out, vol_err *e)
{
    return store_open(dir, kms, false, out, e);
}

int vol_store_open_ro(const char *dir, kmsc *kms, vol_store **out, vol_err *e)
{
    return store_open(dir, kms, true, out, e);
}

void vol_store_free(vol_store *st)
{
    if (!st)
        return;
    vol_catalog_close(st->cat);
    vol_chunkstore_close(st->cs);
    free(st->dir);
    free(st);
}

char *vol_run_path(vol_store *st, const char *volume_id, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s/run/%s%s", st->dir, volume_id, suffix) < 0)
        return NULL;
    return p;
}

int vol_lock_volume(vol_store *st, const char *volume_id)
{
    char *p = vol_run_path(st, volume_id, ".lock");
    int fd;
    if (!p)
        return -ENOMEM;
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int vol_store_lock_shared(vol_store *st)
{
    char *p = NULL;
    int fd;
    if (asprintf(&p, "%s/run/store.lock", st->dir) < 0)
        return -ENOMEM;
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_SH)) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

bool vol_is_attached(vol_store *st, const char *volume_id)
{
    int fd = vol_lock_volume(st, volume_id);
    if (fd >= 0) {
        close(fd);
        return false;
    }
    return fd == -EBUSY;
}

char *vol_attachment_info(vol_store *st, const char *volume_id)
{
    char *p, *buf = NULL;
    FILE *f;
    long n;
    if (!vol_is_attached(st, volume_id) || !(p = vol_run_path(st, volume_id, ".json")))
        return NULL;
    f = fopen(p, "re");
    free(p);
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < 65536 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1))) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = 0;
        }
    }
    fclose(f);
    return buf;
}

/* ---- keys ---- */

#define MANAGED_ALIAS "alias/aws/ebs"
#define MANAGED_DESC "Default key that protects my EBS volumes when no other key is defined"

static bool is_managed_alias(const char *k)
{
    const char *p = strstr(k, ":" MANAGED_ALIAS);
    return !strcmp(k, MANAGED_ALIAS) || (p && !strncmp(k, "arn:", 4) && !strcmp(p, ":" MANAGED_ALIAS));
}

/* The caller's own setting NAME: stored as "NAME:ACCOUNT", since the encryption defaults are per account
 * and a store serves several. A catalog from before accounts has plain NAME, which holds an ARN (or the
 * alias itself): it is the setting of the account that ARN names (or, for the alias, of everyone). */
static int account_setting_get(vol_store *st, const char *name, char **value)
{
    const char *me = vol_store_owner(st);
    char key[64];
    int rc;
    *value = NULL;
    snprintf(key, sizeof key, "%s:%s", name, me);
    if (*me && (rc = st->cat->ops->setting_get(st->cat, key, value)) != -ENOENT)
        return rc;
    if ((rc = st->cat->ops->setting_get(st->cat, name, value)))
        return rc;
    if (*me && !strncmp(*value, "arn:", 4)) {
        const char *p = *value;
        for (int i = 0; i < 4 && p; i++)
            p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL;
        if (!p || strncmp(p, me, strlen(me)) || p[strlen(me)] != ':') {
            free(*value); /* another account's */
            *value = NULL;
            return -ENOENT;
        }
    }
    return 0;
}
static int account_setting_set(vol_store *st, const char *name, const char *value)
{
    const char *me = vol_store_owner(st);
    char key[64];
    snprintf(key, sizeof key, *me ? "%s:%s" : "%s", name, me);
    return st->cat->ops->setting_set(st->cat, key, value);
}

int vol_managed_key_arn(vol_store *st, char **arn) { return account_setting_get(st, "managed_key_arn", arn); }

/* The key behind alias/aws/ebs: the key service's own alias if it has one (AWS creates it on first
 * use), else a key this store created for it (key services that reserve alias/aws/ refuse the alias). */
static int managed_key(vol_store *st, bool create, char **arn, vol_err *e)
{
    kmsc_error ke;
    char *saved = NULL, *resp = NULL;
    size_t resp_len = 0;
    kms_err k;
    bool enabled;
    if (!st->kms)
        return vol_fail(e, -EINVAL, "InternalError", "no key service");
    if (account_setting_get(st, "managed_key_arn", &saved) == 0) {
        memset(&ke, 0, sizeof ke);
        k = kmsc_describe_key(st->kms, saved, arn, &enabled, &ke);
        free(saved);
        return k ? vol_kms_fail(e, k, &ke) : 0;
    }
    memset(&ke, 0, sizeof ke);
    k = kmsc_describe_key(st->kms, MANAGED_ALIAS, arn, &enabled, &ke);
    if (!k)
        return 0;
    if (k != KMS_ERR_NOT_FOUND)
        return vol_kms_fail(e, k, &ke);
    if (!create)
        return -ENOENT;
    {
        static const char req[] = "{\"Description\":\"" MANAGED_DESC "\",\"Tags\":[{\"TagKey\":\"envelopefs:managed\","
                                  "\"TagValue\":\"" MANAGED_ALIAS "\"}]}";
        json_t *r, *a;
        memset(&ke, 0, sizeof ke);
        if ((k = kmsc_call(st->kms, "CreateKey", req, sizeof req - 1, &resp, &resp_len, &ke)))
            return vol_kms_fail(e, k, &ke);
        r = json_loadb(resp, resp_len, 0, NULL);
        kmsc_response_free(resp, resp_len);
        a = json_object_get(json_object_get(r, "KeyMetadata"), "Arn");
        if (!json_is_string(a)) {
            json_decref(r);
            return vol_fail(e, -EIO, "InternalError", "CreateKey returned no key ARN");
        }
        *arn = strdup(json_string_value(a));
        json_decref(r);
        if (!*arn)
            return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        if (account_setting_set(st, "managed_key_arn", *arn)) {
            free(*arn);
            *arn = NULL;
            return vol_fail(e, -EIO, "InternalError", "cannot record the default key");
        }
    }
    return 0;
}

/* Resolve a --kms-key-id (id, alias, key ARN, alias ARN) to its key ARN. */
int vol_resolve_key(vol_store *st, const char *key_id, char **arn, vol_err *e)
{
    kmsc_error ke;
    kms_err k;
    bool enabled;
    if (is_managed_alias(key_id))
        return managed_key(st, true, arn, e);
    memset(&ke, 0, sizeof ke);
    k = kmsc_describe_key(st->kms, key_id, arn, &enabled, &ke);
    if (k == KMS_ERR_NOT_FOUND || k == KMS_ERR_INVALID_ARN || k == KMS_ERR_VALIDATION)
        return vol_fail(e, -ENOENT, "InvalidKmsKey.NotFound", "The KMS key %s does not exist%s%s", key_id,
                        ke.message[0] ? ": " : "", ke.message);
    return k ? vol_kms_fail(e, k, &ke) : 0;
}

int vol_default_key(vol_store *st, bool create, char **arn, vol_err *e)
{
    char *set = NULL;
    int rc;
    if (account_setting_get(st, "default_kms_key_id", &set) == 0 && !is_managed_alias(set)) {
        rc = vol_resolve_key(st, set, arn, e);
        free(set);
        return rc;
    }
    free(set);
    return managed_key(st, create, arn, e);
}

int vol_default_key_id(vol_store *st, char **out, vol_err *e)
{
    char *set = NULL, *arn = NULL;
    if (account_setting_get(st, "default_kms_key_id", &set) == 0) {
        if (!is_managed_alias(set)) {
            *out = set;
            return 0;
        }
        free(set);
    }
    /* unchanged: the alias's ARN, in the key service's region and account */
    if (managed_key(st, false, &arn, NULL) == 0 && arn) {
        char *colon = strstr(arn, ":key/");
        if (colon) {
            *colon = 0;
            if (asprintf(out, "%s:%s", arn, MANAGED_ALIAS) < 0)
                *out = NULL;
            free(arn);
            return *out ? 0 : vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        }
        free(arn);
    }
    {
        kms_core *core = st->kms ? kmsc_embedded_core(st->kms) : NULL;
        if (core) {
            if (asprintf(out, "arn:aws:kms:%s:%s:%s", kms_core_region(core), kms_core_account(core), MANAGED_ALIAS) < 0)
                *out = NULL;
        } else {
            *out = strdup(MANAGED_ALIAS);
        }
    }
    return *out ? 0 : vol_fail(e, -ENOMEM, "InternalError", "out of memory");
}

int vol_modify_default_key(vol_store *st, const char *key_id, char **arn, vol_err *e)
{
    int rc = vol_resolve_key(st, key_id, arn, e);
    if (rc)
        return rc;
    if (is_managed_alias(key_id)) { /* back to the managed key: record the alias itself */
        free(*arn);
        if (!(*arn = strdup(MANAGED_ALIAS)))
            return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    }
    if (account_setting_set(st, "default_kms_key_id", *arn)) {
        free(*arn);
        *arn = NULL;
        return vol_fail(e, -EIO, "InternalError", "cannot record the default key");
    }
    return 0;
}

int vol_lineage_of(vol_store *st, const char *lineage_id, vol_lineage *out, vol_err *e)
{
    int rc = st->cat->ops->lineage_get(st->cat, lineage_id, out);
    if (rc)
        return vol_fail(e, rc, "InternalError", "the catalog has no data key %s: %s", lineage_id, strerror(-rc));
    return 0;
}

int vol_lineage_key(vol_store *st, const vol_lineage *l, kmsc_secret **dk, vol_err *e)
{
    kms_ectx_pair pair = {"aws:ebs:id", l->ctx_id};
    kms_ectx ctx = {&pair, 1};
    kmsc_error ke;
    kms_err k;
    memset(&ke, 0, sizeof ke);
    k = kmsc_decrypt(st->kms, l->key_arn, l->wrapped, l->wrapped_len, &ctx, dk, &ke);
    if (k)
        return vol_kms_fail(e, k, &ke);
    if ((*dk)->len != 32) {
        kmsc_secret_free(*dk);
        *dk = NULL;
        return vol_fail(e, -EIO, "InternalError", "the data key of lineage %s has the wrong length", l->id);
    }
    return 0;
}

/* ---- volumes ---- */

int vol_new_lineage(vol_store *st, const char *key_arn, const char *ctx_id, vol_lineage *l, vol_err *e)
{
    kms_ectx_pair pair = {"aws:ebs:id", ctx_id};
    kms_ectx ctx = {&pair, 1};
    kmsc_data_key *dk = NULL;
    kmsc_error ke;
    uint8_t raw[VOL_LINEAGE_LEN];
    kms_err k;
    memset(l, 0, sizeof *l);
    memset(&ke, 0, sizeof ke);
    k = kmsc_generate_data_key_without_plaintext(st->kms, key_arn, &ctx, 32, &dk, &ke);
    if (k)
        return vol_kms_fail(e, k, &ke);
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(l->id, sizeof l->id, raw, sizeof raw);
    memcpy(l->binding, l->id, sizeof l->binding);
    snprintf(l->key_arn, sizeof l->key_arn, "%s", dk->key_arn ? dk->key_arn : key_arn);
    snprintf(l->ctx_id, sizeof l->ctx_id, "%s", ctx_id);
    l->wrapped = dk->ciphertext;
    l->wrapped_len = dk->ciphertext_len;
    dk->ciphertext = NULL;
    l->created = time(NULL);
    kmsc_data_key_free(dk);
    return 0;
}

int vol_create_volume(vol_store *st, const vol_create_args *a, vol_volume *out, vol_err *e)
{
    vol_catalog *cat = st->cat;
    vol_snapshot snap;
    vol_lineage lin;
    char *arn = NULL;
    int rc;
    bool from_snap = a->snapshot_id && *a->snapshot_id, rekey = false;

    memset(out, 0, sizeof *out);
    memset(&snap, 0, sizeof snap);
    memset(&lin, 0, sizeof lin);
    if (!from_snap && a->size_gib == 0)
        return vol_fail(e, -EINVAL, "MissingParameter", "The request must contain the parameter size or snapshotId");
    if (a->size_gib > VOL_MAX_GIB)
        return vol_fail(e, -EINVAL, "InvalidParameterValue",
                        "Volume of %" PRIu64 "GiB is too large; maximum is %uGiB", a->size_gib, VOL_MAX_GIB);
    if (from_snap) {
        if (!vol_id_valid("snap-", a->snapshot_id))
            return vol_fail(e, -EINVAL, "InvalidSnapshotID.Malformed", "Invalid id: \"%s\"", a->snapshot_id);
        if ((rc = cat->ops->snapshot_get(cat, a->snapshot_id, &snap)))
            return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", a->snapshot_id);
        if (strcmp(snap.state, "completed")) {
            vol_snapshot_clear(&snap);
            return vol_fail(e, -EBUSY, "IncorrectState", "Snapshot is in invalid state - %s", snap.state);
        }
        if (a->size_gib && a->size_gib < snap.volume_size) {
            rc = vol_fail(e, -EINVAL, "InvalidParameterValue",
                          "Volume of %" PRIu64 "GiB is smaller than snapshot '%s', expect size >= %" PRIu64 "GiB",
                          a->size_gib, snap.id, snap.volume_size);
            vol_snapshot_clear(&snap);
            return rc;
        }
    }
    if (vol_new_id("vol-", out->id, sizeof out->id)) {
        vol_snapshot_clear(&snap);
        return vol_fail(e, -EIO, "InternalError", "cannot make an id");
    }
    out->size_gib = a->size_gib ? a->size_gib : snap.volume_size;
    out->created = time(NULL);
    snprintf(out->owner, sizeof out->owner, "%s", vol_store_owner(st)); /* the caller's, even from a shared snapshot */
    if (from_snap) {
        vol_keyring ring = {NULL, 0};
        if ((rc = vol_lineage_of(st, snap.lineage, &lin, e)))
            goto out;
        if (a->kms_key_id && (rc = vol_resolve_key(st, a->kms_key_id, &arn, e)))
            goto out;
        /* Every key the snapshot's chunks need must be usable (restore refuses a disabled key). */
        if ((rc = vol_owner_keys(st, snap.id, snap.lineage, &ring, e)))
            goto out;
        vol_keyring_clear(&ring);
        snprintf(out->snapshot_id, sizeof out->snapshot_id, "%s", snap.id);
        if (arn && strcmp(arn, lin.key_arn)) {
            /* Another key: a lineage of the volume's own (lazy rekey); the snapshot's lineage is recorded as
             * its source, whose key opens the blocks not yet written or rekeyed. */
            vol_lineage_clear(&lin);
            if ((rc = vol_new_lineage(st, arn, out->id, &lin, e)))
                goto out;
            rekey = true;
        }
        snprintf(out->lineage, sizeof out->lineage, "%s", lin.id);
    } else {
        if (a->kms_key_id)
            rc = vol_resolve_key(st, a->kms_key_id, &arn, e);
        else
            rc = vol_default_key(st, true, &arn, e);
        if (rc)
            goto out;
        if ((rc = vol_new_lineage(st, arn, out->id, &lin, e)))
            goto out;
        snprintf(out->lineage, sizeof out->lineage, "%s", lin.id);
    }
    if (a->tags && !(out->tags = strdup(a->tags))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    if ((rc = cat->ops->begin(cat)))
        goto dberr;
    if ((!from_snap || rekey) && (rc = cat->ops->lineage_put(cat, &lin)))
        goto dberr;
    if ((rc = cat->ops->volume_put(cat, out)))
        goto dberr;
    if (from_snap && (rc = cat->ops->map_copy(cat, snap.id, out->id)))
        goto dberr;
    if (rekey && (rc = cat->ops->source_add(cat, out->id, snap.lineage)))
        goto dberr;
    if ((rc = cat->ops->commit(cat)))
        goto dberr;
    goto out;
dberr:
    cat->ops->rollback(cat);
    vol_fail(e, rc, "InternalError", "the volume catalog refused the change: %s", strerror(-rc));
out:
    if (rc)
        vol_volume_clear(out);
    free(arn);
    vol_lineage_clear(&lin);
    vol_snapshot_clear(&snap);
    return rc;
}

struct freed {
    uint64_t *gens;
    size_t n, cap;
};
static int collect(void *arg, uint64_t gen)
{
    struct freed *f = arg;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        uint64_t *g = realloc(f->gens, cap * sizeof *g);
        if (!g)
            return -ENOMEM;
        f->gens = g;
        f->cap = cap;
    }
    f->gens[f->n++] = gen;
    return 0;
}

/* Drop owner's block map in one transaction (del deletes the owner's own row; check, if not NULL, may
 * refuse first, in the same transaction, filling e), then the freed chunks. */
static int drop_owner(vol_store *st, const char *owner, int (*del)(vol_catalog *, const char *),
                      int (*check)(vol_catalog *, const char *, vol_err *), vol_err *e)
{
    vol_catalog *cat = st->cat;
    struct freed f = {0};
    int rc;
    if ((rc = cat->ops->begin(cat)))
        goto fail;
    if (check && (rc = check(cat, owner, e))) {
        cat->ops->rollback(cat);
        return rc;
    }
    if ((rc = del(cat, owner)) || (rc = cat->ops->map_drop(cat, owner, collect, &f)))
        goto fail;
    for (size_t i = 0; i < f.n; i++)
        if ((rc = cat->ops->chunk_delete(cat, f.gens[i])))
            goto fail;
    if ((rc = cat->ops->commit(cat)))
        goto fail;
    /* after the commit: a crash here leaves files the sweep reclaims */
    for (size_t i = 0; i < f.n; i++)
        (void)st->cs->ops->remove(st->cs, f.gens[i]);
    free(f.gens);
    if (vol_sweep(st, NULL))
        EFS_WARN("volume store: the orphan sweep failed");
    return 0;
fail:
    cat->ops->rollback(cat);
    free(f.gens);
    return vol_fail(e, rc, "InternalError", "the volume catalog refused the change: %s", strerror(-rc));
}

int vol_delete_volume(vol_store *st, const char *id, vol_err *e)
{
    vol_volume v;
    int rc, lock;
    if (!vol_id_valid("vol-", id))
        return vol_fail(e, -EINVAL, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", id);
    if ((rc = st->cat->ops->volume_get(st->cat, id, &v)))
        return vol_fail(e, rc, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id);
    vol_volume_clear(&v);
    if ((lock = vol_lock_volume(st, id)) < 0)
        return vol_fail(e, -EBUSY, "VolumeInUse", "Volume %s is currently attached", id);
    if (vol_grant_recorded(st, id)) { /* a killed daemon's grant: retired with the volume (grant.h) */
        vol_err ge = {"", ""};
        if (!st->kms || vol_grant_retire_stale(st, id, &ge))
            EFS_WARN("volume %s: a grant of its last attachment stays on its key (%s)", id,
                     st->kms ? ge.message : "no key service");
    }
    rc = drop_owner(st, id, st->cat->ops->volume_delete, NULL, e);
    close(lock);
    if (!rc) {
        char key[64];
        snprintf(key, sizeof key, "clean:%s", id);
        if (st->cat->ops->setting_delete(st->cat, key))
            EFS_WARN("volume %s: its attach record stays in the catalog", id);
        char *p = vol_run_path(st, id, ".lock");
        if (p)
            unlink(p);
        free(p);
    }
    return rc;
}

int vol_snapshot_record(vol_catalog *cat, const vol_volume *v, const char *description, const char *tags,
                        vol_snapshot *s, vol_err *e)
{
    int rc, pending = 0;
    memset(s, 0, sizeof *s);
    if (vol_new_id("snap-", s->id, sizeof s->id))
        return vol_fail(e, -EIO, "InternalError", "cannot make an id");
    snprintf(s->volume_id, sizeof s->volume_id, "%s", v->id);
    snprintf(s->lineage, sizeof s->lineage, "%s", v->lineage);
    snprintf(s->owner, sizeof s->owner, "%s", v->owner); /* a snapshot belongs to its volume's owner */
    snprintf(s->state, sizeof s->state, "pending");
    s->volume_size = v->size_gib;
    s->started = time(NULL);
    if ((description && !(s->description = strdup(description))) || (tags && !(s->tags = strdup(tags)))) {
        vol_snapshot_clear(s);
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    }
    if ((rc = cat->ops->begin(cat)))
        goto fail;
    if ((rc = cat->ops->snapshot_pending(cat, v->id, &pending)))
        goto fail;
    if (pending >= VOL_MAX_PENDING) {
        cat->ops->rollback(cat);
        vol_snapshot_clear(s);
        return vol_fail(e, -EAGAIN, "ConcurrentSnapshotLimitExceeded",
                        "Maximum allowed in-progress snapshots for a single volume exceeded (%d)", VOL_MAX_PENDING);
    }
    if ((rc = cat->ops->snapshot_put(cat, s)) || (rc = cat->ops->map_copy(cat, v->id, s->id)) ||
        (rc = cat->ops->commit(cat)))
        goto fail;
    {
        /* Every block is shared by reference: the snapshot is complete once recorded. */
        vol_snapshot done = *s;
        snprintf(done.state, sizeof done.state, "completed");
        done.completed = time(NULL);
        if (cat->ops->snapshot_put(cat, &done) == 0) {
            snprintf(s->state, sizeof s->state, "completed");
            s->completed = done.completed;
        }
    }
    return 0;
fail:
    cat->ops->rollback(cat);
    vol_snapshot_clear(s);
    return vol_fail(e, rc, "InternalError", "the volume catalog refused the snapshot: %s", strerror(-rc));
}

int vol_create_snapshot(vol_store *st, const char *volume_id, const char *description, const char *tags,
                        vol_snapshot *out, vol_err *e)
{
    vol_volume v;
    int rc, lock;
    memset(out, 0, sizeof *out);
    if (!vol_id_valid("vol-", volume_id))
        return vol_fail(e, -EINVAL, "InvalidVolumeID.Malformed", "Invalid id: \"%s\" (expecting \"vol-...\")", volume_id);
    if ((rc = st->cat->ops->volume_get(st->cat, volume_id, &v)))
        return vol_fail(e, rc, "InvalidVolume.NotFound", "The volume '%s' does not exist.", volume_id);
    lock = vol_lock_volume(st, volume_id);
    if (lock == -EBUSY) { /* attached: its daemon takes the snapshot at a point in time */
        char *sock = vol_run_path(st, volume_id, ".sock");
        rc = sock ? vol_ctl_snapshot(sock, description, tags, out, e) : vol_fail(e, -ENOMEM, "InternalError", "oom");
        free(sock);
        if (!rc) { /* the daemon recorded it: the whole record from the catalog */
            vol_snapshot full;
            if (st->cat->ops->snapshot_get(st->cat, out->id, &full) == 0) {
                vol_snapshot_clear(out);
                *out = full;
            }
        }
    } else if (lock < 0) {
        rc = vol_fail(e, lock, "InternalError", "cannot lock volume %s: %s", volume_id, strerror(-lock));
    } else {
        rc = vol_snapshot_record(st->cat, &v, description, tags, out, e);
        close(lock);
    }
    vol_volume_clear(&v);
    return rc;
}

/* The copies in progress (copy_progress) of a snapshot of this store: its deletion waits for them. */
struct copying {
    vol_catalog *cat;
    char copy[32];
};
static int copying_one(void *arg, const vol_copy_progress *p)
{
    struct copying *c = arg;
    vol_snapshot s;
    if (!p->local)
        return 0;
    if (c->cat->ops->snapshot_get(c->cat, p->rec.snapshot, &s) == 0) {
        bool pending = !strcmp(s.state, "pending");
        vol_snapshot_clear(&s);
        if (pending) {
            snprintf(c->copy, sizeof c->copy, "%s", p->rec.snapshot);
            return 1;
        }
    } /* else its snapshot was deleted by a program that predates copy_progress: no copy runs */
    return 0;
}
static int not_copied(vol_catalog *cat, const char *id, vol_err *e)
{
    struct copying c = {cat, ""};
    int rc = cat->ops->progress_list(cat, id, copying_one, &c);
    if (rc == 1)
        return vol_fail(e, -EBUSY, "InvalidSnapshot.InUse", "The snapshot %s is the source of the copy %s, which is "
                        "pending: delete it after that copy completes, or after delete-snapshot of the copy", id, c.copy);
    return rc ? vol_fail(e, rc, "InternalError", "the volume catalog refused the change: %s", strerror(-rc)) : 0;
}

int vol_delete_snapshot(vol_store *st, const char *id, vol_err *e)
{
    vol_snapshot s;
    vol_copy_progress p;
    long holder = 0;
    int rc, lock = -1;
    if (!vol_id_valid("snap-", id))
        return vol_fail(e, -EINVAL, "InvalidSnapshotID.Malformed", "Invalid id: \"%s\" (expecting \"snap-...\")", id);
    if ((rc = st->cat->ops->snapshot_get(st->cat, id, &s)))
        return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id);
    vol_snapshot_clear(&s);
    /* a copy in progress: only once its copier is gone (its lock free); held while deleting, so that no
     * rerun resumes it meanwhile */
    if (st->cat->ops->progress_get(st->cat, id, &p) == 0 && (lock = vol_copy_lock(st, id, &holder)) < 0) {
        if (lock == -EBUSY)
            return vol_fail(e, -EBUSY, "IncorrectState", "The snapshot %s is a copy in progress (copy-snapshot pid %ld): "
                            "delete it once that copy-snapshot has ended", id, holder);
        return vol_fail(e, lock, "InternalError", "cannot lock the copy %s: %s", id, strerror(-lock));
    }
    if (st->cat->ops->put_drop(st->cat, id)) { /* a direct-API snapshot deleted while pending */
        vol_copy_unlock(st, id, lock, false);
        return vol_fail(e, -EIO, "InternalError", "the volume catalog refused the change");
    }
    rc = drop_owner(st, id, st->cat->ops->snapshot_delete, not_copied, e);
    vol_copy_unlock(st, id, lock, rc == 0);
    return rc;
}

/* ---- sweep ---- */

struct sweep {
    vol_store *st;
    int freed;
};
static int sweep_file(void *arg, uint64_t gen)
{
    struct sweep *w = arg;
    vol_chunk k;
    if (w->st->cat->ops->chunk_get(w->st->cat, gen, &k) == -ENOENT && w->st->cs->ops->remove(w->st->cs, gen) == 0)
        w->freed++;
    return 0;
}

int vol_sweep(vol_store *st, int *freed)
{
    struct sweep w = {st, 0};
    char *p = NULL;
    int fd, rc;
    if (freed)
        *freed = 0;
    if (asprintf(&p, "%s/run/store.lock", st->dir) < 0)
        return -ENOMEM;
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(p);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB)) { /* an attach daemon may hold chunks it has not recorded yet */
        close(fd);
        return 0;
    }
    rc = st->cs->ops->list(st->cs, sweep_file, &w);
    close(fd);
    if (freed)
        *freed = w.freed;
    return rc;
}
