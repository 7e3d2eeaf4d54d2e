/*
 * test_kms_mrk.c — multi-Region keys through the embedded core: two key stores in one process as two regions
 * (a regions file names both), CreateKey MultiRegion, ReplicateKey and its errors, ciphertext from one region
 * opened in the other, rotation pushed to a reachable replica and pulled by one that was unreachable at
 * rotation, UpdatePrimaryRegion, deletion of a primary with replicas (PendingReplicaDeletion until the last
 * replica is deleted, then PendingDeletion), both audit trails, and the hook
 * copies between regions use (kms_core_mrk_replica_in).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "envelopefs/kms.h"
#include <sys/stat.h>

#include "testutil.h"

static char g_dir[256];

static kms_err callf(kms_core *c, json_t **out, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kms_err callf(kms_core *c, json_t **out, const char *op, const char *fmt, ...)
{
    char body[8192], *resp = NULL, *msg = NULL;
    size_t len = 0;
    va_list ap;
    kms_principal p = {.account = "111122223333", .user = "test", .source = "test"};
    kms_err e;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    e = kms_core_call(c, &p, op, body, strlen(body), &resp, &len, &msg);
    if (out)
        *out = e ? NULL : json_loadb(resp, len, 0, NULL);
    if (e && getenv("TEST_VERBOSE"))
        fprintf(stderr, "%s -> %s: %s\n", op, kms_err_name(e), msg ? msg : "");
    kms_response_free(resp, len);
    free(msg);
    return e;
}

static kms_core *make_store(const char *name, const char *region)
{
    char dir[400], key[450];
    uint8_t k[32];
    int fd;
    char *msg = NULL;
    kms_core *c = NULL;
    snprintf(dir, sizeof dir, "%s/%s", g_dir, name);
    snprintf(key, sizeof key, "%s/root.key", dir);
    kms_store_opts so = {.store_dir = dir, .root_key_file = key, .region = region};
    CHECK(mkdir(dir, 0700) == 0);
    fd = open(key, O_WRONLY | O_CREAT | O_EXCL, 0600);
    randombytes_buf(k, sizeof k);
    CHECK(write(fd, k, sizeof k) == 32);
    close(fd);
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
    CHECK(kms_core_open(&so, &c, &msg) == KMS_OK);
    return c;
}

static int64_t clock_in_8_days(void *arg)
{
    (void)arg;
    return (int64_t)time(NULL) + 8 * 86400;
}

static void write_regions(const char *b_store)
{
    char path[400];
    FILE *f;
    snprintf(path, sizeof path, "%s/regions.json", g_dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"regions\": {\"us-east-1\": {\"store\": \"%s/a\"}, \"eu-west-1\": {\"store\": \"%s\"}}}\n", g_dir,
            b_store);
    CHECK(fclose(f) == 0);
    CHECK(setenv("ENVELOPEFS_REGIONS", path, 1) == 0);
}

static const char *mr_type(kms_core *c, const char *id)
{
    static char buf[16];
    json_t *r;
    buf[0] = 0;
    if (callf(c, &r, "DescribeKey", "{\"KeyId\":\"%s\"}", id) == KMS_OK) {
        snprintf(buf, sizeof buf, "%s",
                 json_string_value(json_object_get(json_object_get(json_object_get(r, "KeyMetadata"),
                                                                   "MultiRegionConfiguration"), "MultiRegionKeyType")) ?: "");
        json_decref(r);
    }
    return buf;
}

static char *encrypt(kms_core *c, const char *id, const char *pt_b64)
{
    json_t *r;
    char *b;
    CHECK(callf(c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"%s\"}", id, pt_b64) == KMS_OK);
    b = strdup(json_string_value(json_object_get(r, "CiphertextBlob")));
    json_decref(r);
    return b;
}

static void check_decrypts(kms_core *c, const char *blob, const char *pt_b64)
{
    json_t *r;
    CHECK(callf(c, &r, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob) == KMS_OK);
    CHECK(!strcmp(json_string_value(json_object_get(r, "Plaintext")), pt_b64));
    json_decref(r);
}

/* Encrypt in one region, decrypt in the other. */
static void round_trip(kms_core *from, kms_core *to, const char *id, const char *pt_b64)
{
    char *b = encrypt(from, id, pt_b64);
    check_decrypts(to, b, pt_b64);
    free(b);
}

static int64_t clock_in_16_days(void *arg)
{
    (void)arg;
    return (int64_t)time(NULL) + 16 * 86400;
}

/* DescribeKey's KeyMetadata (a new reference) */
static json_t *metadata(kms_core *c, const char *id)
{
    json_t *r, *m;
    CHECK_EQ_INT(callf(c, &r, "DescribeKey", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    m = json_incref(json_object_get(r, "KeyMetadata"));
    json_decref(r);
    CHECK(m != NULL);
    return m;
}

static const char *str_of(json_t *o, const char *f)
{
    return json_string_value(json_object_get(o, f)) ?: "";
}

/* A primary scheduled while its replica exists: PendingReplicaDeletion (botocore's ScheduleKeyDeletion and
 * KeyMetadata): no DeletionDate, the window in PendingDeletionWindowInDays, refused like a key pending deletion
 * (no cryptographic use, no replication), CancelKeyDeletion leaves it Disabled. */
static void pending_replica_deletion(kms_core *p, const char *pname, const char *id, kms_core *replica)
{
    json_t *r, *m;
    char *blob = encrypt(p, id, "cHJk");
    CHECK_EQ_INT(callf(p, &r, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":9}", id), KMS_OK);
    CHECK(!strcmp(str_of(r, "KeyState"), "PendingReplicaDeletion"));
    CHECK(!json_object_get(r, "DeletionDate") && json_integer_value(json_object_get(r, "PendingWindowInDays")) == 9);
    json_decref(r);
    m = metadata(p, id);
    CHECK(!strcmp(str_of(m, "KeyState"), "PendingReplicaDeletion") && json_is_false(json_object_get(m, "Enabled")));
    CHECK(json_integer_value(json_object_get(m, "PendingDeletionWindowInDays")) == 9);
    CHECK(!json_object_get(m, "DeletionDate"));
    json_decref(m);
    CHECK_EQ_INT(callf(p, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"eA==\"}", id), KMS_ERR_INVALID_STATE);
    CHECK_EQ_INT(callf(p, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob), KMS_ERR_INVALID_STATE);
    CHECK_EQ_INT(callf(p, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu-west-1\"}", id),
                 KMS_ERR_INVALID_STATE);
    CHECK_EQ_INT(callf(p, NULL, "EnableKey", "{\"KeyId\":\"%s\"}", id), KMS_ERR_INVALID_STATE);
    CHECK_EQ_INT(callf(p, NULL, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\"}", id), KMS_ERR_INVALID_STATE);
    CHECK_EQ_INT(callf(p, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id), KMS_ERR_INVALID_STATE);
    check_decrypts(replica, blob, "cHJk"); /* the replica is its own key, still Enabled */
    /* it survives a reload (stored as its own state) */
    {
        kms_store_opts so = {0};
        char dir[400], key[450], *msg = NULL;
        kms_core *again = NULL;
        snprintf(dir, sizeof dir, "%s/%s", g_dir, pname);
        snprintf(key, sizeof key, "%s/root.key", dir);
        so.store_dir = dir;
        so.root_key_file = key;
        CHECK_EQ_INT(kms_core_open(&so, &again, &msg), KMS_OK);
        m = metadata(again, id);
        CHECK(!strcmp(str_of(m, "KeyState"), "PendingReplicaDeletion"));
        json_decref(m);
        kms_core_free(again);
        free(msg);
    }
    CHECK_EQ_INT(callf(p, &r, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    json_decref(r);
    m = metadata(p, id);
    CHECK(!strcmp(str_of(m, "KeyState"), "Disabled") && !json_object_get(m, "PendingDeletionWindowInDays"));
    json_decref(m);
    CHECK_EQ_INT(callf(p, NULL, "EnableKey", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    check_decrypts(p, blob, "cHJk");
    free(blob);
}

static size_t audit_count(kms_core *c, const char *op)
{
    kms_audit_query q = {.operation = op, .max_results = 100};
    kms_audit_event *ev = NULL;
    size_t n = 0;
    int64_t next = 0;
    CHECK(kms_core_lookup_audit(c, &q, &ev, &n, &next) == KMS_OK);
    for (size_t i = 0; i < n; i++)
        CHECK(!strstr(ev[i].event, "Plaintext"));
    kms_audit_events_free(ev, n);
    return n;
}

int main(void)
{
    kms_core *a, *b;
    json_t *r;
    char id[64], single[64], *ct1, *ct2, *ct3, bstore[400], hidden[400];

    snprintf(g_dir, sizeof g_dir, "/tmp/efs-mrk.XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    a = make_store("a", "us-east-1");
    b = make_store("b", "eu-west-1");
    snprintf(bstore, sizeof bstore, "%s/b", g_dir);
    snprintf(hidden, sizeof hidden, "%s/b-away", g_dir);
    write_regions(bstore);

    CHECK(callf(a, &r, "CreateKey", "{\"MultiRegion\":true}") == KMS_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    CHECK(json_is_true(json_object_get(json_object_get(r, "KeyMetadata"), "MultiRegion")));
    json_decref(r);
    CHECK(!strncmp(id, "mrk-", 4) && strlen(id) == 36 && strspn(id + 4, "0123456789abcdef") == 32);
    CHECK(!strcmp(mr_type(a, id), "PRIMARY"));
    CHECK(callf(a, &r, "CreateKey", "{}") == KMS_OK);
    snprintf(single, sizeof single, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    json_decref(r);
    CHECK_EQ_INT(callf(a, NULL, "CreateKey", "{\"MultiRegion\":\"yes\"}"), KMS_ERR_SERIALIZATION);

    /* errors */
    CHECK_EQ_INT(callf(a, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu-west-1\"}", single),
                 KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK_EQ_INT(callf(a, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"nowhere-1\"}", id),
                 KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK_EQ_INT(callf(a, NULL, "ReplicateKey", "{\"KeyId\":\"%s\"}", id), KMS_ERR_VALIDATION);
    CHECK_EQ_INT(callf(a, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"us-east-1\"}", id),
                 KMS_ERR_VALIDATION);
    CHECK_EQ_INT(callf(a, NULL, "DisableKey", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    CHECK_EQ_INT(callf(a, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu-west-1\"}", id),
                 KMS_ERR_DISABLED);
    CHECK_EQ_INT(callf(a, NULL, "EnableKey", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    CHECK(!kms_core_mrk_replica_in(a, id, "eu-west-1"));

    ct1 = encrypt(a, id, "djE="); /* made before the replica exists */
    CHECK_EQ_INT(callf(a, &r, "ReplicateKey",
                       "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu-west-1\",\"Description\":\"eu\"}", id), KMS_OK);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(r, "ReplicaKeyMetadata"), "Description")), "eu"));
    json_decref(r);
    CHECK_EQ_INT(callf(a, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"eu-west-1\"}", id),
                 KMS_ERR_ALREADY_EXISTS);
    CHECK(kms_core_mrk_replica_in(a, id, "eu-west-1") && kms_core_mrk_replica_in(b, id, "us-east-1"));
    CHECK(!kms_core_mrk_replica_in(a, single, "eu-west-1") && !kms_core_mrk_replica_in(a, id, "nowhere-1"));
    CHECK(!strcmp(mr_type(b, id), "REPLICA"));
    CHECK_EQ_INT(callf(b, NULL, "ReplicateKey", "{\"KeyId\":\"%s\",\"ReplicaRegion\":\"us-east-1\"}", id),
                 KMS_ERR_UNSUPPORTED_OPERATION);
    check_decrypts(b, ct1, "djE=");

    /* rotation reaches a reachable replica at once */
    CHECK_EQ_INT(callf(b, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id), KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK_EQ_INT(callf(a, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    ct2 = encrypt(a, id, "djI=");
    check_decrypts(b, ct2, "djI=");

    /* ... and one unreachable at rotation catches up at first use */
    CHECK(rename(bstore, hidden) == 0);
    CHECK_EQ_INT(callf(a, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id), KMS_OK); /* push fails, quietly */
    CHECK(rename(hidden, bstore) == 0);
    ct3 = encrypt(a, id, "djM=");
    check_decrypts(b, ct3, "djM=");
    round_trip(b, a, id, "Yg==");

    /* deletion and the primary role */
    pending_replica_deletion(a, "a", id, b);
    CHECK_EQ_INT(callf(a, NULL, "UpdatePrimaryRegion", "{\"KeyId\":\"%s\",\"PrimaryRegion\":\"nowhere-1\"}", id),
                 KMS_ERR_NOT_FOUND);
    CHECK_EQ_INT(callf(a, NULL, "UpdatePrimaryRegion", "{\"KeyId\":\"%s\",\"PrimaryRegion\":\"eu-west-1\"}", single),
                 KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK_EQ_INT(callf(a, NULL, "UpdatePrimaryRegion", "{\"KeyId\":\"%s\",\"PrimaryRegion\":\"eu-west-1\"}", id), KMS_OK);
    CHECK(!strcmp(mr_type(a, id), "REPLICA") && !strcmp(mr_type(b, id), "PRIMARY"));
    CHECK_EQ_INT(callf(b, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", id), KMS_OK);
    round_trip(b, a, id, "djQ=");
    /* the new primary (b) scheduled while its replica (a) exists waits for it; then the replica is scheduled */
    CHECK_EQ_INT(callf(b, &r, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id), KMS_OK);
    CHECK(!strcmp(str_of(r, "KeyState"), "PendingReplicaDeletion"));
    json_decref(r);
    CHECK_EQ_INT(callf(a, NULL, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id), KMS_OK);
    {
        json_t *m = metadata(a, id); /* a replica's deletion has its date at once */
        CHECK(!strcmp(str_of(m, "KeyState"), "PendingDeletion") && json_integer_value(json_object_get(m, "DeletionDate")) > 0);
        json_decref(m);
    }
    CHECK_EQ_INT(callf(b, NULL, "ListKeys", "{}"), KMS_OK); /* its replica still exists: nothing changes */
    {
        json_t *m = metadata(b, id);
        CHECK(!strcmp(str_of(m, "KeyState"), "PendingReplicaDeletion"));
        json_decref(m);
    }
    /* once the waiting period is over the replica is destroyed, and its multi_region row with it (a store
       keeps no row of a key it no longer has) */
    CHECK(kms_core_mrk_replica_in(a, id, "eu-west-1"));
    kms_core_set_clock(a, clock_in_8_days, NULL);
    CHECK_EQ_INT(callf(a, NULL, "ListKeys", "{}"), KMS_OK); /* (a call sweeps what is due) */
    CHECK_EQ_INT(callf(a, NULL, "DescribeKey", "{\"KeyId\":\"%s\"}", id), KMS_ERR_NOT_FOUND);
    CHECK(!kms_core_mrk_replica_in(a, id, "eu-west-1") && !kms_core_mrk_replica_in(a, id, "us-east-1"));
    CHECK(kms_core_mrk_replica_in(b, id, "eu-west-1")); /* the primary's own row stays */
    kms_core_set_clock(a, NULL, NULL);
    /* the primary's next look at its replicas (at most hourly: its clock is 8 days on) finds none: PendingDeletion,
       its 7 days counted from then */
    kms_core_set_clock(b, clock_in_8_days, NULL);
    {
        json_t *m = metadata(b, id);
        int64_t when = json_integer_value(json_object_get(m, "DeletionDate"));
        CHECK(!strcmp(str_of(m, "KeyState"), "PendingDeletion") && !json_object_get(m, "PendingDeletionWindowInDays"));
        CHECK(when >= (int64_t)time(NULL) + 15 * 86400 - 60 && when <= (int64_t)time(NULL) + 15 * 86400 + 60);
        json_decref(m);
    }
    CHECK_EQ_INT(callf(b, &r, "CancelKeyDeletion", "{\"KeyId\":\"%s\"}", id), KMS_OK); /* still cancellable */
    json_decref(r);
    CHECK_EQ_INT(callf(b, NULL, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", id), KMS_OK);
    kms_core_set_clock(b, clock_in_16_days, NULL);
    CHECK_EQ_INT(callf(b, NULL, "ListKeys", "{}"), KMS_OK);
    CHECK_EQ_INT(callf(b, NULL, "DescribeKey", "{\"KeyId\":\"%s\"}", id), KMS_ERR_NOT_FOUND);
    kms_core_set_clock(b, NULL, NULL);

    /* both trails hold the calls */
    CHECK(audit_count(a, "ReplicateKey") >= 1 && audit_count(b, "ReplicateKey") >= 1);
    CHECK(audit_count(a, "UpdatePrimaryRegion") >= 1 && audit_count(b, "UpdatePrimaryRegion") >= 1);
    CHECK(audit_count(b, "SynchronizeMultiRegionKey") >= 1); /* the rotation pushed to the replica */
    {
        kms_audit_validation va, vb;
        CHECK(kms_core_validate_audit(a, 0, NULL, &va) == KMS_OK && va.valid);
        CHECK(kms_core_validate_audit(b, 0, NULL, &vb) == KMS_OK && vb.valid);
    }

    free(ct1);
    free(ct2);
    free(ct3);
    kms_core_free(a);
    kms_core_free(b);
    {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        CHECK(system(cmd) == 0);
    }
    TEST_DONE();
}
