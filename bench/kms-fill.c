/*
 * kms-fill.c — fill a key store with many keys and audit records, fast, for scripts/bench-kms's "busy
 * store" row: NKEYS CreateKey calls, then GenerateDataKey calls round-robin over those keys until the
 * trail holds NRECORDS records. Every record is a real call's (kms_core_call, as the embedded client
 * makes it): the core writes it, hash-chained and sealed by digests as always; nothing is inserted
 * behind its back. Calls go in batches of BATCH inside kms_core_defer_begin/_end, so each batch's
 * records are one group commit (one transaction) instead of one per call.
 * Usage: kms-fill STOREDIR NKEYS NRECORDS — STOREDIR an existing store (`envelopefs kms init-store
 * --generate-root-key`: unlocked with STOREDIR/root.key). Prints what it made and the wall-clock time
 * of each phase: "fill: K keys (CreateKey) in S s, G GenerateDataKey calls in T s; the trail holds N records".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "envelopefs/kms.h"

#define BATCH 10000 /* calls per group commit: well under the trail's KMS_TRAIL_MAX_PENDING */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One call; its response wiped and freed, or its KeyMetadata.KeyId copied into id (CreateKey). */
static int call(kms_core *c, const char *op, const char *body, char id[64])
{
    char *resp = NULL, *msg = NULL;
    size_t n = 0;
    kms_err e = kms_core_call(c, NULL, op, body, strlen(body), &resp, &n, &msg);
    if (e) {
        fprintf(stderr, "kms-fill: %s: %s %s\n", op, kms_err_name(e), msg ? msg : "");
        free(msg);
        return -1;
    }
    free(msg);
    if (id) {
        json_t *j = json_loads(resp, 0, NULL);
        const char *s = json_string_value(json_object_get(json_object_get(j, "KeyMetadata"), "KeyId"));
        if (!s || strlen(s) >= 64) {
            json_decref(j);
            kms_response_free(resp, n);
            fprintf(stderr, "kms-fill: CreateKey returned no KeyId\n");
            return -1;
        }
        memcpy(id, s, strlen(s) + 1);
        json_decref(j);
    }
    kms_response_free(resp, n);
    return 0;
}

int main(int argc, char **argv)
{
    char keyfile[4096], body[512], (*ids)[64] = NULL, *msg = NULL;
    long nkeys, nrecords, made = 0;
    double t0, t_keys, t_recs;
    kms_core *c = NULL;
    kms_audit_status st;
    int rc = 1;
    if (argc != 4 || sodium_init() < 0) {
        fprintf(stderr, "usage: kms-fill STOREDIR NKEYS NRECORDS\n");
        return 2;
    }
    nkeys = atol(argv[2]);
    nrecords = atol(argv[3]);
    if (nkeys < 1 || nrecords < nkeys) {
        fprintf(stderr, "kms-fill: NKEYS must be at least 1 and NRECORDS at least NKEYS\n");
        return 2;
    }
    snprintf(keyfile, sizeof keyfile, "%s/root.key", argv[1]);
    kms_store_opts so = {.store_dir = argv[1], .root_key_file = keyfile};
    if (kms_core_open(&so, &c, &msg)) {
        fprintf(stderr, "kms-fill: store: %s\n", msg ? msg : "?");
        free(msg);
        return 1;
    }
    if (!(ids = calloc((size_t)nkeys, sizeof *ids)))
        goto out;
    /* The keys: each CreateKey commits its key in its own transaction (the store's), its record in the
     * batch's group commit. */
    t0 = now();
    for (long i = 0; i < nkeys; i += BATCH) {
        kms_core_defer_begin(c);
        for (long j = i; j < nkeys && j < i + BATCH; j++) {
            snprintf(body, sizeof body, "{\"Description\":\"fill %ld\"}", j);
            if (call(c, "CreateKey", body, ids[j]))
                goto fail_batch;
        }
        if (kms_core_defer_end(c)) {
            fprintf(stderr, "kms-fill: the audit batch did not commit\n");
            goto out;
        }
    }
    t_keys = now() - t0;
    /* The rest of the records: GenerateDataKey, round-robin over the keys, each with its own context. */
    t0 = now();
    while (nkeys + made < nrecords) {
        kms_core_defer_begin(c);
        for (long j = 0; j < BATCH && nkeys + made < nrecords; j++, made++) {
            snprintf(body, sizeof body,
                     "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\",\"EncryptionContext\":{\"fill\":\"%ld\"}}",
                     ids[made % nkeys], made);
            if (call(c, "GenerateDataKey", body, NULL))
                goto fail_batch;
        }
        if (kms_core_defer_end(c)) {
            fprintf(stderr, "kms-fill: the audit batch did not commit\n");
            goto out;
        }
    }
    t_recs = now() - t0;
    if (kms_core_audit_retention(c, NULL, &st)) {
        fprintf(stderr, "kms-fill: cannot read the trail's status\n");
        goto out;
    }
    printf("fill: %ld keys (CreateKey) in %.1f s, %ld GenerateDataKey calls in %.1f s; the trail holds %lld records\n",
           nkeys, t_keys, made, t_recs, (long long)st.records);
    rc = 0;
    goto out;
fail_batch:
    if (kms_core_defer_end(c)) /* the batch so far is still committed (or reported) before the store closes */
        fprintf(stderr, "kms-fill: the audit batch did not commit\n");
out:
    free(ids);
    kms_core_free(c);
    return rc;
}
