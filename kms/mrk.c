/*
 * mrk.c — multi-Region keys: CreateKey MultiRegion (ids "mrk-" + 32 hex), ReplicateKey, UpdatePrimaryRegion,
 * DescribeKey's MultiRegionConfiguration, and the copies of key material between regions.
 *
 * A region is one key store (common/regions.h: the regions file, $ENVELOPEFS_REGIONS or --regions, maps
 * its name to a store directory). Every store holding a multi-Region key has a row for it in table
 * multi_region (docs/FORMAT.md): the primary's region and the list of every region holding the key. The
 * primary's row is the authority; a replica's list is refreshed whenever the primary writes to it.
 *
 * Replication opens the other region's store directly (its own kms_core, unlocked with that region's root
 * key) and writes the replica there: the same id, spec, usage, origin and every key-material version,
 * each unsealed from this store's root key and sealed again under the other store's (material is in the
 * clear only in locked memory, between the two seals; never logged, never in a trail record). Both stores'
 * trails record the call. Ciphertext blobs name the key by its 16 raw id bytes, the same in every region,
 * so a replica decrypts what the primary sealed with no call across regions; a version it lacks (a
 * rotation it missed) is pulled from the primary at that use (kms_mrk_pull).
 *
 * A region given by a key-service endpoint ("kms" in the regions file, with "credentials": this service's
 * access key there) is another `envelopefs kms serve`: ReplicateKey, UpdatePrimaryRegion, version pushes and
 * the replica check of ScheduleKeyDeletion go to it over the replication protocol (mrk_remote.c). A replica
 * whose primary is such an endpoint does not pull a version it lacks: it gets it at the primary's next push.
 *
 * Called with the calling core's lock held; the other region's core is opened for the call and freed
 * before it returns, so its lock is never contended and no two core locks are taken in opposite orders.
 * Calls to another server are made with the lock released (mrk_remote.c; ScheduleKeyDeletion's status
 * questions in kms_mrk_may_delete), one multi-Region operation per key at a time (kms_mrk_busy_enter).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authz.h"
#include "common/log.h"
#include "common/regions.h"
#include "internal.h"
#include "mrk_remote.h"
#include "oputil.h"

#define fail kms_op_fail

static const char MRK_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS multi_region(key_id TEXT PRIMARY KEY, primary_region TEXT NOT NULL,"
    " regions TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(k, v) VALUES('feature.multi_region', '1');";

kms_err kms_mrk_migrate(sqlite3 *db, char **msg)
{
    return kms_schema_add(db, MRK_SCHEMA, "multi_region table", msg);
}

void kms_mrk_id(const uint8_t raw[16], char out[KMS_KEY_ID_LEN + 1])
{
    memcpy(out, KMS_MRK_PREFIX, 4);
    for (int i = 0; i < 16; i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", raw[i]);
}

bool kms_mrk_row_get(sqlite3 *db, const char *id, char primary[32], json_t **regions)
{
    sqlite3_stmt *st;
    bool ok = false;
    *regions = NULL;
    if (sqlite3_prepare_v2(db, "SELECT primary_region, regions FROM multi_region WHERE key_id=?", -1, &st, NULL) !=
        SQLITE_OK)
        return false;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 0), *r = (const char *)sqlite3_column_text(st, 1);
        *regions = r ? json_loads(r, 0, NULL) : NULL;
        if (p && *regions && json_is_array(*regions)) {
            snprintf(primary, 32, "%s", p);
            ok = true;
        } else {
            json_decref(*regions);
            *regions = NULL;
        }
    }
    sqlite3_finalize(st);
    return ok;
}

kms_err kms_mrk_row_put(kms_core *c, const char *id, const char *primary, json_t *regions, char **msg)
{
    sqlite3_stmt *st;
    char *text = json_dumps(regions, JSON_COMPACT);
    int rc;
    if (!text)
        return KMS_ERR_NOMEM;
    if (sqlite3_prepare_v2(c->db, "INSERT OR REPLACE INTO multi_region(key_id, primary_region, regions) VALUES(?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        free(text);
        kms_set_msg(msg, "key store error (multi_region): %s", sqlite3_errmsg(c->db));
        return KMS_ERR_IO;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, primary, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    free(text);
    if (rc != SQLITE_DONE) {
        kms_set_msg(msg, "key store error (multi_region): %s", sqlite3_errmsg(c->db));
        return KMS_ERR_IO;
    }
    return KMS_OK;
}

bool kms_mrk_in_list(json_t *regions, const char *r)
{
    size_t i;
    json_t *v;
    json_array_foreach(regions, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), r)) return true;
    return false;
}

bool kms_mrk_is_replica(kms_core *c, const kms_key *k)
{
    char primary[32];
    json_t *regions;
    bool replica;
    if (!kms_is_mrk(k) || !kms_mrk_row_get(c->db, k->id, primary, &regions))
        return false;
    replica = strcmp(primary, c->region) != 0;
    json_decref(regions);
    return replica;
}

kms_err kms_mrk_created(kms_core *c, const kms_key *k, char **msg)
{
    json_t *regions = json_pack("[s]", c->region);
    kms_err e = regions ? kms_mrk_row_put(c, k->id, c->region, regions, msg) : KMS_ERR_NOMEM;
    json_decref(regions);
    return e;
}

static void arn_in(const char *region, const kms_key *k, char *buf, size_t cap)
{
    snprintf(buf, cap, "arn:aws:kms:%s:%s:key/%s", region, k->owner, k->id);
}

void kms_mrk_describe(kms_core *c, const kms_key *k, json_t *m)
{
    char primary[32], arn[160];
    json_t *regions, *reps, *v;
    size_t i;
    if (!kms_is_mrk(k) || !kms_mrk_row_get(c->db, k->id, primary, &regions))
        return;
    json_object_set_new(m, "MultiRegion", json_true());
    reps = json_array();
    json_array_foreach(regions, i, v) {
        if (!json_is_string(v) || !strcmp(json_string_value(v), primary))
            continue;
        arn_in(json_string_value(v), k, arn, sizeof arn);
        json_array_append_new(reps, json_pack("{s:s, s:s}", "Arn", arn, "Region", json_string_value(v)));
    }
    arn_in(primary, k, arn, sizeof arn);
    json_object_set_new(m, "MultiRegionConfiguration",
                        json_pack("{s:s, s:{s:s, s:s}, s:o}", "MultiRegionKeyType",
                                  strcmp(primary, c->region) ? "REPLICA" : "PRIMARY", "PrimaryKey", "Arn", arn,
                                  "Region", primary, "ReplicaKeys", reps));
    json_decref(regions);
}

kms_err kms_mrk_open_region(kms_core *c, const char *name, kms_core **out, kms_endpoint *ep, char **msg)
{
    efs_region r;
    char err[256] = "", *rk = NULL;
    kms_store_opts o;
    kms_err e;
    int rc;
    if (out)
        *out = NULL;
    if (ep)
        memset(ep, 0, sizeof *ep);
    if (!strcmp(name, c->region)) {
        kms_set_msg(msg, "%s is this key's own region", name);
        return KMS_ERR_VALIDATION;
    }
    rc = efs_region_lookup(NULL, name, &r, err, sizeof err);
    if (rc) {
        kms_set_msg(msg, rc == -ENOENT ? "region %s is not in the regions file (--regions / ENVELOPEFS_REGIONS)"
                                       : "the regions file cannot be used for %s: %s", name, err);
        return rc == -ENOENT ? KMS_ERR_UNSUPPORTED_OPERATION : KMS_ERR_INTERNAL;
    }
    if (!r.store && !ep) {
        kms_set_msg(msg, "region %s is a key-service endpoint (%s): this reaches key stores only", name,
                    r.kms_url ? r.kms_url : "");
        efs_region_clear(&r);
        return KMS_ERR_UNSUPPORTED_OPERATION;
    }
    if (!r.store) { /* another server: its URL and this service's access key there */
        snprintf(ep->region, sizeof ep->region, "%s", name);
        rc = efs_region_credentials(&r, ep->akid, sizeof ep->akid, &ep->secret, err, sizeof err);
        if (!rc && !(ep->url = strdup(r.kms_url)))
            rc = -ENOMEM;
        efs_region_clear(&r);
        if (rc) {
            kms_endpoint_clear(ep);
            kms_set_msg(msg, "region %s is a key-service endpoint, and replication into it needs this service's "
                             "access key there: %s", name, rc == -ENOMEM ? "out of memory" : err);
            return rc == -ENOENT ? KMS_ERR_UNSUPPORTED_OPERATION : KMS_ERR_INTERNAL;
        }
        return KMS_OK;
    }
    if (!out) { /* only endpoints wanted */
        efs_region_clear(&r);
        return KMS_OK;
    }
    memset(&o, 0, sizeof o);
    o.store_dir = r.store;
    if (r.root_key_file)
        o.root_key_file = r.root_key_file;
    else if (asprintf(&rk, "%s/root.key", r.store) >= 0)
        o.root_key_file = rk;
    e = kms_core_open(&o, out, msg);
    free(rk);
    if (!e && strcmp(kms_core_region(*out), name)) {
        kms_set_msg(msg, "the regions file maps %s to %s, a key store of region %s", name, r.store,
                    kms_core_region(*out));
        kms_core_free(*out);
        *out = NULL;
        e = KMS_ERR_INTERNAL;
    }
    efs_region_clear(&r);
    return e;
}

/* Copy the versions src has and dst lacks (dst is the same key in the other store). */
static kms_err copy_versions(kms_core *sc, const kms_key *src, kms_core *dc, kms_key *dst, char **msg)
{
    kms_err e = KMS_OK;
    while (!e && dst->n_versions < src->n_versions) {
        const kms_version *v = &src->versions[dst->n_versions];
        uint8_t *m;
        size_t n;
        e = kms_store_version_plain(sc, src, v->version, &m, &n, msg);
        if (!e)
            e = kms_store_put_version(dc, dst, v->created, v->automatic, m, n, msg);
        sodium_free(m);
    }
    return e;
}

/* Lock the other region's core and bring its view of the store up to date. */
static kms_err other_lock(kms_core *d, char **msg)
{
    pthread_mutex_lock(&d->lock);
    kms_err e = kms_store_reload_if_changed(d, msg);
    if (e)
        pthread_mutex_unlock(&d->lock);
    return e;
}

/* Record op in the other region's trail (its lock held; released here) and close it. */
static kms_err other_done(kms_core *d, const kms_principal *caller, const char *op, json_t *in, const char *key_id,
                          kms_err e, char **msg)
{
    uint64_t t = kms_trail_append(d, caller, op, in, NULL, key_id, e, msg ? *msg : NULL);
    pthread_mutex_unlock(&d->lock);
    if ((!t || kms_trail_commit(d, t)) && !e) {
        kms_set_msg(msg, "the other region's audit trail cannot be written");
        e = KMS_ERR_INTERNAL;
    }
    kms_core_free(d);
    return e;
}

kms_err kms_op_replicate_key(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core, *d = NULL;
    kms_endpoint ep;
    kms_key *k, nk, *rk;
    const char *region, *desc;
    char primary[32], tid[KMS_KEY_ID_LEN + 1] = "", arn[160];
    json_t *regions = NULL, *tags = json_object_get(in, "Tags");
    uint8_t *m = NULL;
    size_t n;
    kms_err e;

    if ((e = kms_op_resolve_any(x, in, &k)) || (e = kms_op_get_str(x, in, "ReplicaRegion", true, &region)) ||
        (e = kms_op_get_str(x, in, "Description", false, &desc)))
        return e;
    kms_op_key_arn(c, k, arn, sizeof arn);
    if (!kms_is_mrk(k) || !kms_mrk_row_get(c->db, k->id, primary, &regions))
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "%s is not a multi-Region key", arn);
    if (strcmp(primary, c->region)) {
        json_decref(regions);
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "%s is a replica key: replicate its primary key (%s)", arn,
                    primary);
    }
    if (k->state == KS_DISABLED || k->state != KS_ENABLED) {
        json_decref(regions);
        return fail(x, k->state == KS_DISABLED ? KMS_ERR_DISABLED : KMS_ERR_INVALID_STATE, "%s is %s.", arn,
                    k->state == KS_DISABLED ? "disabled" : k->state == KS_PENDING_IMPORT ? "pending import"
                                                                                            : "pending deletion");
    }
    if (strlen(region) > 31 || !*region) {
        json_decref(regions);
        return fail(x, KMS_ERR_VALIDATION, "ReplicaRegion must have 1 to 31 characters");
    }
    if (tags && (!json_is_array(tags) || (e = kms_op_check_tags(x, tags)))) {
        json_decref(regions);
        return e ? e : fail(x, KMS_ERR_SERIALIZATION, "Tags must be a list");
    }
    if (x->dry_run || (e = kms_mrk_open_region(c, region, &d, &ep, x->msg))) {
        json_decref(regions);
        return e;
    }
    if (ep.url) { /* another server (mrk_remote.c) */
        e = kms_mrk_remote_replicate(x, k, &ep, in, desc, tags, out);
        kms_endpoint_clear(&ep);
        json_decref(regions);
        return e;
    }
    if ((e = other_lock(d, x->msg))) {
        kms_core_free(d);
        json_decref(regions);
        return e;
    }
    snprintf(tid, sizeof tid, "%s", k->id);
    struct op_ctx tx = {.core = d, .caller = x->caller, .operation = "ReplicateKey", .key_id = tid, .msg = x->msg,
                        .in = in};
    if (kms_find_key(d, k->id)) {
        e = fail(x, KMS_ERR_ALREADY_EXISTS, "Replica key %s already exists in region %s", k->id, region);
        goto done;
    }
    if ((e = kms_authorize(d, x->caller, "CreateKey", NULL)))
        goto done;
    memset(&nk, 0, sizeof nk);
    memcpy(nk.id, k->id, sizeof nk.id);
    memcpy(nk.raw_id, k->raw_id, 16);
    snprintf(nk.owner, sizeof nk.owner, "%s", k->owner);
    nk.spec = k->spec;
    nk.usage = k->usage;
    nk.external = k->external;
    nk.expires = k->expires;
    nk.valid_to = k->valid_to;
    nk.has_digest = k->has_digest;
    memcpy(nk.material_digest, k->material_digest, 32);
    nk.created = kms_now(d);
    nk.description = (char *)(desc ? desc : k->description);
    nk.state = KS_ENABLED;
    nk.rotation_period = k->rotation_period; /* rotation runs at the primary; replicas receive its versions */
    if ((e = kms_new_key_policy(&tx, in, &nk)))
        goto done;
    e = kms_store_version_plain(c, k, 1, &m, &n, x->msg);
    if (!e)
        e = kms_store_insert_key(d, &nk, m, n, x->msg);
    sodium_free(m);
    kms_key_access_free(&nk);
    rk = e ? NULL : kms_find_key(d, k->id);
    if (!e && !rk)
        e = KMS_ERR_INTERNAL;
    if (!e)
        e = copy_versions(c, k, d, rk, x->msg);
    if (!e && tags) {
        size_t i;
        json_t *t;
        json_array_foreach(tags, i, t) if (!e) e = kms_store_set_tag(d, k->id, json_string_value(json_object_get(t, "TagKey")),
                                                                     json_string_value(json_object_get(t, "TagValue")), x->msg);
    }
    if (!e && !kms_mrk_in_list(regions, region))
        json_array_append_new(regions, json_string(region));
    if (!e)
        e = kms_mrk_row_put(d, k->id, primary, regions, x->msg);
    if (!e)
        e = kms_mrk_row_put(c, k->id, primary, regions, x->msg);
    if (!e) {
        json_t *md = json_object();
        char rarn[160];
        arn_in(region, rk, rarn, sizeof rarn);
        json_object_set_new(md, "AWSAccountId", json_string(rk->owner));
        json_object_set_new(md, "KeyId", json_string(rk->id));
        json_object_set_new(md, "Arn", json_string(rarn));
        json_object_set_new(md, "CreationDate", json_integer(rk->created));
        json_object_set_new(md, "Enabled", json_true());
        json_object_set_new(md, "Description", json_string(rk->description ? rk->description : ""));
        json_object_set_new(md, "KeyState", json_string("Enabled"));
        json_object_set_new(md, "KeyManager", json_string("CUSTOMER"));
        json_object_set_new(md, "Origin", json_string(rk->external ? "EXTERNAL" : "AWS_KMS"));
        json_object_set_new(md, "KeySpec", json_string(kms_spec_name(rk->spec)));
        json_object_set_new(md, "KeyUsage", json_string(kms_usage_name(rk->usage)));
        kms_mrk_describe(d, rk, md);
        *out = json_pack("{s:o, s:s*, s:o}", "ReplicaKeyMetadata", md, "ReplicaPolicy", rk->policy_text,
                         "ReplicaTags", tags ? json_incref(tags) : json_array());
        if (!*out)
            e = KMS_ERR_NOMEM;
    }
done:
    json_decref(regions);
    return other_done(d, x->caller, "ReplicateKey", in, tid, e, x->msg);
}

/* Write the primary's row (and versions) to the replica in region r: the replica's list follows. */
static kms_err refresh_replica(kms_core *c, const kms_principal *caller, kms_key *k, const char *r,
                               const char *primary, json_t *regions, const char *op, json_t *in, char **msg)
{
    kms_core *d;
    kms_key *rk;
    kms_endpoint ep;
    kms_err e = kms_mrk_open_region(c, r, &d, &ep, msg);
    if (e)
        return e;
    if (ep.url) { /* another server: sent once this call is done, without the core lock (mrk_remote.c) */
        kms_endpoint_clear(&ep);
        kms_mrk_queue_push(c, k->id);
        return KMS_OK;
    }
    if ((e = other_lock(d, msg))) {
        kms_core_free(d);
        return e;
    }
    rk = kms_find_key(d, k->id);
    if (!rk) {
        kms_set_msg(msg, "region %s no longer holds key %s", r, k->id);
        e = KMS_ERR_NOT_FOUND;
    } else {
        e = copy_versions(c, k, d, rk, msg);
        if (!e)
            e = kms_mrk_row_put(d, k->id, primary, regions, msg);
    }
    return other_done(d, caller, op, in, k->id, e, msg);
}

void kms_mrk_push(kms_core *c, const kms_principal *caller, kms_key *k)
{
    char primary[32];
    json_t *regions, *v;
    size_t i;
    if (!kms_is_mrk(k) || !kms_mrk_row_get(c->db, k->id, primary, &regions))
        return;
    json_array_foreach(regions, i, v) {
        char *msg = NULL;
        if (json_is_string(v) && strcmp(json_string_value(v), c->region))
            (void)refresh_replica(c, caller, k, json_string_value(v), primary, regions, "SynchronizeMultiRegionKey", NULL,
                                  &msg); /* unreachable now: kms_mrk_pull at its next use */
        free(msg);
    }
    json_decref(regions);
}

kms_err kms_mrk_pull(kms_core *c, kms_key *k, char **msg)
{
    char primary[32];
    json_t *regions;
    kms_core *d;
    kms_key *pk;
    kms_err e;
    if (!kms_is_mrk(k) || !kms_mrk_row_get(c->db, k->id, primary, &regions))
        return KMS_ERR_NOT_FOUND;
    json_decref(regions);
    if (!strcmp(primary, c->region))
        return KMS_OK;
    if ((e = kms_mrk_open_region(c, primary, &d, NULL, msg)))
        return e; /* a primary on another server: its next push brings the versions */
    if ((e = other_lock(d, msg))) {
        kms_core_free(d);
        return e;
    }
    pk = kms_find_key(d, k->id);
    e = pk ? copy_versions(d, pk, c, k, msg) : KMS_ERR_NOT_FOUND;
    pthread_mutex_unlock(&d->lock);
    kms_core_free(d);
    return e;
}

/* The regions of a primary's list on other servers, asked by ScheduleKeyDeletion's check (kms_mrk_may_delete). */
struct remote_ask {
    kms_endpoint ep;
    bool gone;
};

/* Whether region r no longer holds key id: a store region is looked at (lock held), one on another server
 * was asked already (ask); a region not asked (listed meanwhile) and an unreachable one count as there. */
static bool replica_gone(kms_core *c, const char *id, const char *r, const struct remote_ask *ask, size_t n_ask)
{
    kms_core *d;
    kms_endpoint ep;
    char *m = NULL;
    bool gone = false;
    for (size_t i = 0; i < n_ask; i++)
        if (!strcmp(ask[i].ep.region, r))
            return ask[i].gone;
    if (kms_mrk_open_region(c, r, &d, &ep, &m) == KMS_OK) {
        if (ep.url) {
            kms_endpoint_clear(&ep);
        } else {
            pthread_mutex_lock(&d->lock);
            gone = kms_store_reload_if_changed(d, &m) == KMS_OK && !kms_find_key(d, id);
            pthread_mutex_unlock(&d->lock);
            kms_core_free(d);
        }
    }
    free(m);
    return gone;
}

kms_err kms_mrk_may_delete(kms_core *c, const char *key_id, size_t *n_left, char **msg)
{
    char id[KMS_KEY_ID_LEN + 1], owner[16], primary[32];
    json_t *regions = NULL, *v, *left = NULL;
    struct remote_ask *ask = NULL;
    size_t i, n_ask = 0;
    kms_key *k;
    kms_err e = KMS_OK;

    *n_left = 0;
    snprintf(id, sizeof id, "%s", key_id);
    kms_mrk_busy_enter(c, id); /* no other multi-Region operation that calls another server on this key meanwhile */
    k = kms_find_key(c, id);
    if (!k || !kms_mrk_row_get(c->db, id, primary, &regions) || strcmp(primary, c->region))
        goto out; /* gone meanwhile (the caller finds out), or a replica: one may be deleted at any time */
    snprintf(owner, sizeof owner, "%s", k->owner);
    if (!(ask = calloc(json_array_size(regions) + 1, sizeof *ask))) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    json_array_foreach(regions, i, v) {
        kms_endpoint ep;
        char *m = NULL;
        if (json_is_string(v) && strcmp(json_string_value(v), c->region) &&
            kms_mrk_open_region(c, json_string_value(v), NULL, &ep, &m) == KMS_OK && ep.url)
            ask[n_ask++].ep = ep; /* (its url and secret move there) */
        free(m);
    }
    if (n_ask) {
        /* The replicas on other servers, asked with the core lock released (as every replication call is: a
         * slow or dead peer stalls only this call and other multi-Region operations on this key, not the
         * server) and a short timeout. k is stale from here, and the list is read again below. */
        pthread_mutex_unlock(&c->lock);
        for (i = 0; i < n_ask; i++) {
            char *m = NULL;
            bool exists = true;
            ask[i].gone = kms_mrk_remote_exists(c, id, owner, &ask[i].ep, &exists, &m) == KMS_OK && !exists;
            free(m);
        }
        pthread_mutex_lock(&c->lock);
        json_decref(regions);
        regions = NULL;
        if (!(k = kms_find_key(c, id)) || !kms_mrk_row_get(c->db, id, primary, &regions) ||
            strcmp(primary, c->region)) {
            kms_set_msg(msg, "%s changed while its replicas were asked; try again", id);
            e = KMS_ERR_INVALID_STATE;
            goto out;
        }
    }
    /* the list as it is now: a store region looked at now, under the lock, a region listed meanwhile kept */
    if (!(left = json_array())) {
        e = KMS_ERR_NOMEM;
        goto out;
    }
    json_array_foreach(regions, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), c->region) &&
            replica_gone(c, id, json_string_value(v), ask, n_ask))
            continue;
        json_array_append(left, v);
    }
    if (json_array_size(left) != json_array_size(regions))
        e = kms_mrk_row_put(c, id, primary, left, msg); /* replicas deleted since */
    if (!e)
        *n_left = json_array_size(left) - 1; /* (the list names the primary's own region too) */
out:
    for (i = 0; i < n_ask; i++)
        kms_endpoint_clear(&ask[i].ep);
    free(ask);
    json_decref(left);
    json_decref(regions);
    kms_mrk_busy_leave(c, id);
    return e;
}

void kms_mrk_check_replicas(kms_core *c)
{
    char ids[KMS_REPLICA_DUE_MAX][KMS_KEY_ID_LEN + 1];
    int n = c->n_replica_due;
    memcpy(ids, c->replica_due, sizeof ids);
    c->n_replica_due = 0;
    for (int i = 0; i < n; i++) {
        char *m = NULL;
        size_t left = 1;
        kms_key *k;
        kms_err e = kms_mrk_may_delete(c, ids[i], &left, &m);
        if (!e && !left && (k = kms_find_key(c, ids[i])) && kms_awaiting_replicas(k)) {
            /* AWS: "When the last of its replicas keys is deleted, the key state of the primary key changes to
             * PendingDeletion and its waiting period (PendingWindowInDays) begins" */
            kms_key saved = *k;
            k->deletion_date = kms_now(c) + (int64_t)k->pending_days * 86400;
            if ((e = kms_store_update_key(c, k, &m)))
                *k = saved; /* due again at the next look */
            else
                EFS_INFO("multi-Region key %s: its last replica is deleted; PendingDeletion until %lld", ids[i],
                         (long long)k->deletion_date);
        }
        if (e)
            EFS_WARN("multi-Region key %s: its replicas could not be looked at (%s: %s)", ids[i], kms_err_name(e),
                     m ? m : "");
        free(m);
    }
}

kms_err kms_op_update_primary_region(struct op_ctx *x, json_t *in, json_t **out)
{
    kms_core *c = x->core, *d;
    kms_endpoint ep;
    kms_key *k, *rk;
    const char *region;
    char primary[32], arn[160];
    json_t *regions;
    kms_err e;

    if ((e = kms_op_resolve_any(x, in, &k)) || (e = kms_op_get_str(x, in, "PrimaryRegion", true, &region)))
        return e;
    kms_op_key_arn(c, k, arn, sizeof arn);
    if (!kms_is_mrk(k) || !kms_mrk_row_get(c->db, k->id, primary, &regions))
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION, "%s is not a multi-Region key", arn);
    if (strcmp(primary, c->region)) {
        json_decref(regions);
        return fail(x, KMS_ERR_UNSUPPORTED_OPERATION,
                    "%s is a replica key: call UpdatePrimaryRegion in its primary region %s", arn, primary);
    }
    if (k->state != KS_ENABLED) {
        json_decref(regions);
        return fail(x, k->state == KS_DISABLED ? KMS_ERR_DISABLED : KMS_ERR_INVALID_STATE, "%s is not enabled.", arn);
    }
    if (!strcmp(region, c->region)) {
        json_decref(regions);
        *out = json_object(); /* already primary here */
        return KMS_OK;
    }
    if (!kms_mrk_in_list(regions, region)) {
        json_decref(regions);
        return fail(x, KMS_ERR_NOT_FOUND, "Key %s has no replica in region %s", k->id, region);
    }
    if (x->dry_run || (e = kms_mrk_open_region(c, region, &d, &ep, x->msg))) {
        json_decref(regions);
        return e;
    }
    if (ep.url) { /* another server (mrk_remote.c) */
        json_decref(regions);
        e = kms_mrk_remote_update_primary(x, k, &ep);
        kms_endpoint_clear(&ep);
        if (!e && !(*out = json_object()))
            e = KMS_ERR_NOMEM;
        return e;
    }
    if ((e = other_lock(d, x->msg))) {
        kms_core_free(d);
        json_decref(regions);
        return e;
    }
    rk = kms_find_key(d, k->id);
    if (!rk)
        e = fail(x, KMS_ERR_NOT_FOUND, "region %s no longer holds key %s", region, k->id);
    else if (rk->state != KS_ENABLED)
        e = fail(x, rk->state == KS_DISABLED ? KMS_ERR_DISABLED : KMS_ERR_INVALID_STATE,
                 "the replica of %s in %s is not enabled", k->id, region);
    if (!e)
        e = copy_versions(c, k, d, rk, x->msg);
    if (!e) { /* the rotation schedule moves with the primary role */
        rk->rotation_enabled = k->rotation_enabled;
        rk->rotation_period = k->rotation_period;
        rk->next_rotation = k->next_rotation;
        e = kms_store_update_key(d, rk, x->msg);
    }
    if (!e)
        e = kms_mrk_row_put(d, k->id, region, regions, x->msg);
    if (!e)
        e = kms_mrk_row_put(c, k->id, region, regions, x->msg);
    if (!e && k->rotation_enabled) {
        k->rotation_enabled = false;
        e = kms_store_update_key(c, k, x->msg);
    }
    json_decref(regions);
    e = other_done(d, x->caller, "UpdatePrimaryRegion", in, k->id, e, x->msg);
    if (!e) {
        *out = json_object();
        if (!*out)
            e = KMS_ERR_NOMEM;
    }
    return e;
}

int kms_core_mrk_replica_in(kms_core *c, const char *key_id, const char *region)
{
    int yes = 0;
    char primary[32];
    json_t *regions;
    if (!key_id || !region || strncmp(key_id, KMS_MRK_PREFIX, 4))
        return 0;
    pthread_mutex_lock(&c->lock);
    if (kms_mrk_row_get(c->db, key_id, primary, &regions)) {
        yes = kms_mrk_in_list(regions, region) && kms_mrk_in_list(regions, c->region);
        json_decref(regions);
    }
    pthread_mutex_unlock(&c->lock);
    return yes;
}
