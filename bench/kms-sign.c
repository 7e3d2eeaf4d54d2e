/*
 * kms-sign.c — Sign and Verify per second through kms_core_call (the embedded key service, one thread),
 * for scripts/bench-kms: a throwaway store with one key of the given spec, then as many calls as fit in
 * the given seconds of this process's CPU time (as `openssl speed` counts its user time, so a busy machine
 * skews neither), each a full call (JSON request parsed, key resolved, audit record, JSON response).
 * Usage: kms-sign STOREDIR KEYSPEC ALGORITHM SECONDS; prints "sign N/s verify M/s".
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "envelopefs/kms.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time, as `openssl speed` counts (its user time) */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *call(kms_core *c, const char *op, const char *body)
{
    char *resp = NULL, *msg = NULL;
    size_t n = 0;
    kms_err e = kms_core_call(c, NULL, op, body, strlen(body), &resp, &n, &msg);
    if (e) {
        fprintf(stderr, "%s: %s %s\n", op, kms_err_name(e), msg ? msg : "");
        exit(1);
    }
    free(msg);
    return resp;
}

int main(int argc, char **argv)
{
    char keyfile[4096], body[8192], *resp, *msg = NULL;
    const char *alg;
    double secs, t0, t;
    long ns = 0, nv = 0;
    kms_core *c;
    json_t *j;
    uint8_t key[32];
    if (argc != 5 || sodium_init() < 0)
        return 2;
    alg = argv[3];
    secs = atof(argv[4]);
    snprintf(keyfile, sizeof keyfile, "%s/root.key", argv[1]);
    randombytes_buf(key, sizeof key);
    {
        int fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || write(fd, key, 32) != 32 || close(fd))
            return 1;
    }
    kms_store_opts so = {.store_dir = argv[1], .root_key_file = keyfile};
    if (kms_store_init(&so, &msg) || kms_core_open(&so, &c, &msg)) {
        fprintf(stderr, "store: %s\n", msg ? msg : "?");
        return 1;
    }
    snprintf(body, sizeof body, "{\"KeySpec\":\"%s\",\"KeyUsage\":\"SIGN_VERIFY\"}", argv[2]);
    resp = call(c, "CreateKey", body);
    j = json_loads(resp, 0, NULL);
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(json_object_get(j, "KeyMetadata"), "KeyId")));
    json_decref(j);
    kms_response_free(resp, strlen(resp));
    /* a 32-byte message, as a digest-sized payload (RAW: hashed by the call, as openssl speed signs a digest) */
    snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"Message\":\"ZW52ZWxvcGVmcyBiZW5jaG1hcmsgbWVzc2FnZSAzMmI=\","
                                "\"SigningAlgorithm\":\"%s\"}", id, alg);
    t0 = now();
    do {
        kms_response_free(resp = call(c, "Sign", body), 0);
        ns++;
    } while ((t = now()) - t0 < secs);
    ns = (long)(ns / (t - t0));
    resp = call(c, "Sign", body);
    j = json_loads(resp, 0, NULL);
    snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"Message\":\"ZW52ZWxvcGVmcyBiZW5jaG1hcmsgbWVzc2FnZSAzMmI=\","
                                "\"Signature\":\"%s\",\"SigningAlgorithm\":\"%s\"}", id,
             json_string_value(json_object_get(j, "Signature")), alg);
    json_decref(j);
    kms_response_free(resp, 0);
    t0 = now();
    do {
        kms_response_free(resp = call(c, "Verify", body), 0);
        nv++;
    } while ((t = now()) - t0 < secs);
    nv = (long)(nv / (t - t0));
    printf("sign %ld verify %ld\n", ns, nv);
    kms_core_free(c);
    return 0;
}
