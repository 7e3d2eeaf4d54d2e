/*
 * fuzz_kms_call.c — kms_core_call (kms/dispatch.c), the key service's single entry point and its
 * network-facing parser: every request body the server accepts reaches it as (operation, JSON). The
 * input is "Operation\nJSON body" (no newline: an operation with an empty body). In the body, @KEY@
 * stands for the id of a key made at start-up (also reachable as alias/fuzz) and @BLOB@ for a
 * ciphertext of "hello" under it with EncryptionContext {"purpose":"fuzz"}, so that seeds can reach
 * past key lookup and blob authentication.
 *
 * Not pure: one throwaway store per process, in a temporary directory (under $TMPDIR) removed at exit —
 * or, when the process died of a crash and never reached exit, by the next run (the directory's name
 * carries its owner's pid) — with a frozen clock, so nothing is ever rotated or deleted by time. Calls
 * change it (keys, aliases, states, policies): after any that is not read-only (KMS_OPERATIONS' flags),
 * which may have disabled, scheduled for deletion, re-pointed or re-policied the fixed key or its alias,
 * both are put back (the policy too, unless the input locked it with BypassPolicyLockoutSafetyCheck: the
 * key then stays locked, which costs coverage only). Invariants: a response is a NUL-terminated JSON
 * object exactly resp_len long; an error has no response and a wire error code; no request makes the
 * store fail (internal, I/O, corrupt-store errors); a body the core accepted is a JSON object to jansson
 * (json_loadb, JSON_REJECT_DUPLICATES) too; what Encrypt and GenerateDataKey return decrypts to their
 * plaintext, and GenerateDataKeyPair's wrapped private key to its PrivateKeyPlaintext, unless a key
 * policy the input set denies the caller Decrypt (AccessDenied is then the only other answer allowed).
 * An operation named KMS_REPLICATION_TARGET + NAME ("EnvelopefsReplication.PutReplica") goes to
 * kms_core_replication_call instead (the server-to-server replication protocol's parser, same invariants),
 * as a signed caller of the store's account.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "envelopefs/kms.h"
#include "fuzz.h"

static kms_core *core;
static char dir[4096];
static char key_id[64], blob_b64[256];
static bool verbose; /* FUZZ_VERBOSE=1: each call's operation and result on stderr (checking seeds) */
static const kms_principal caller = {.account = "111122223333", .user = "fuzz", .source = "fuzz"};
static const kms_principal signed_caller = {.account = "111122223333", .user = "fuzz", .source = "fuzz",
                                            .access_key = "AKIAFUZZFUZZFUZZFUZZ"};

static int64_t frozen_clock(void *arg)
{
    (void)arg;
    return 1700000000;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    kms_core_free(core);
    core = NULL;
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Remove the stores of earlier runs under tmp that crashed (their pid is gone): a crash skips atexit. */
static void sweep_stale(const char *tmp)
{
    DIR *d = opendir(tmp);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[4200];
        long pid;
        if (sscanf(e->d_name, "efs-fuzz-kms-%ld-", &pid) != 1 || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive (or not ours to ask about) */
        snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    closedir(d);
}

/* One call on the fixed setup path; aborts unless it succeeds when must_succeed. *out: parsed response. */
static kms_err call(const char *op, const char *body, json_t **out, bool must_succeed)
{
    char *resp = NULL, *msg = NULL;
    size_t len = 0;
    kms_err e = kms_core_call(core, &caller, op, body, strlen(body), &resp, &len, &msg);
    if (e && must_succeed)
        fprintf(stderr, "fuzz_kms_call setup: %s: %s %s\n", op, kms_err_name(e), msg ? msg : "");
    FUZZ_CHECK(!e || !must_succeed);
    if (out)
        *out = e ? NULL : json_loadb(resp, len, 0, NULL);
    kms_response_free(resp, len);
    free(msg);
    return e;
}

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    char keyfile[4200], store[4200], body[512], *msg = NULL;
    uint8_t root[32];
    json_t *r;
    int fd;

    if (core)
        return;
    FUZZ_CHECK(sodium_init() >= 0);
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    tmp = tmp && *tmp ? tmp : "/tmp";
    sweep_stale(tmp);
    snprintf(dir, sizeof dir, "%s/efs-fuzz-kms-%ld-XXXXXX", tmp, (long)getpid());
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    snprintf(keyfile, sizeof keyfile, "%s/root.key", dir);
    snprintf(store, sizeof store, "%s/store", dir);
    fd = open(keyfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    randombytes_buf(root, sizeof root);
    FUZZ_CHECK(fd >= 0 && write(fd, root, sizeof root) == (ssize_t)sizeof root);
    close(fd);
    kms_store_opts so = {.store_dir = store, .root_key_file = keyfile};
    FUZZ_CHECK(kms_store_init(&so, &msg) == KMS_OK);
    FUZZ_CHECK(kms_core_open(&so, &core, &msg) == KMS_OK);
    atexit(teardown);
    kms_core_set_clock(core, frozen_clock, NULL);

    call("CreateKey", "{\"Description\":\"fuzz\"}", &r, true);
    snprintf(key_id, sizeof key_id, "%s", json_string_value(json_object_get(json_object_get(r, "KeyMetadata"), "KeyId")));
    json_decref(r);
    snprintf(body, sizeof body, "{\"AliasName\":\"alias/fuzz\",\"TargetKeyId\":\"%s\"}", key_id);
    call("CreateAlias", body, NULL, true);
    call("Encrypt", "{\"KeyId\":\"alias/fuzz\",\"Plaintext\":\"aGVsbG8=\",\"EncryptionContext\":{\"purpose\":\"fuzz\"}}",
         &r, true);
    snprintf(blob_b64, sizeof blob_b64, "%s", json_string_value(json_object_get(r, "CiphertextBlob")));
    json_decref(r);
}

/* Put the fixed key and its alias back as setup left them (errors ignored: most are "already so"). */
static void restore(void)
{
    char body[512];
    snprintf(body, sizeof body, "{\"KeyId\":\"%s\"}", key_id);
    (void)call("CancelKeyDeletion", body, NULL, false);
    (void)call("EnableKey", body, NULL, false);
    snprintf(body, sizeof body, "{\"AliasName\":\"alias/fuzz\",\"TargetKeyId\":\"%s\"}", key_id);
    if (call("UpdateAlias", body, NULL, false))
        (void)call("CreateAlias", body, NULL, false);
    snprintf(body, sizeof body,
             "{\"KeyId\":\"%s\",\"Policy\":\"{\\\"Statement\\\":{\\\"Effect\\\":\\\"Allow\\\",\\\"Principal\\\":"
             "{\\\"AWS\\\":\\\"111122223333\\\"},\\\"Action\\\":\\\"kms:*\\\",\\\"Resource\\\":\\\"*\\\"}}\"}", key_id);
    (void)call("PutKeyPolicy", body, NULL, false);
}

/* body with every @KEY@ and @BLOB@ replaced (malloc'd, NUL-terminated; *len its length). */
static char *substitute(const char *in, size_t in_len, size_t *len)
{
    size_t longest = strlen(blob_b64) > strlen(key_id) ? strlen(blob_b64) : strlen(key_id);
    size_t n = 0;
    char *out = malloc(in_len + in_len / 5 * longest + 1); /* each token is at least 5 bytes */
    if (!out)
        return NULL;
    for (size_t i = 0; i < in_len;) {
        if (in_len - i >= 5 && !memcmp(in + i, "@KEY@", 5)) {
            memcpy(out + n, key_id, strlen(key_id));
            n += strlen(key_id);
            i += 5;
        } else if (in_len - i >= 6 && !memcmp(in + i, "@BLOB@", 6)) {
            memcpy(out + n, blob_b64, strlen(blob_b64));
            n += strlen(blob_b64);
            i += 6;
        } else {
            out[n++] = in[i++];
        }
    }
    out[n] = 0;
    *len = n;
    return out;
}

/* Bytes of a base64 string (standard alphabet, "\r\n" ignored as the core does); malloc'd. */
static uint8_t *unb64(const char *s, size_t *n)
{
    uint8_t *b = malloc(strlen(s) + 1);
    if (b && sodium_base642bin(b, strlen(s) + 1, s, strlen(s), "\r\n", n, NULL, sodium_base64_VARIANT_ORIGINAL)) {
        free(b);
        b = NULL;
    }
    return b;
}

/* A blob just returned (in resp) for request req decrypts, with req's context, to the plaintext pt (base64);
 * an RSA ciphertext names no key, so its key and algorithm (from resp) go with it. */
static void check_decrypts(json_t *req, json_t *resp, const char *blob, const char *pt)
{
    json_t *d = json_pack("{s:s}", "CiphertextBlob", blob), *ctx = json_object_get(req, "EncryptionContext"), *r;
    const char *alg = json_string_value(json_object_get(resp, "EncryptionAlgorithm"));
    char *body;
    uint8_t *want, *got;
    size_t want_n = 0, got_n = 0;

    FUZZ_CHECK(d && blob && pt);
    if (ctx)
        json_object_set(d, "EncryptionContext", ctx);
    if (alg && strcmp(alg, "SYMMETRIC_DEFAULT")) {
        json_object_set(d, "KeyId", json_object_get(resp, "KeyId"));
        json_object_set(d, "EncryptionAlgorithm", json_object_get(resp, "EncryptionAlgorithm"));
    }
    body = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    FUZZ_CHECK(body != NULL);
    if (call("Decrypt", body, &r, false) == KMS_ERR_ACCESS_DENIED) { /* a policy the input set */
        free(body);
        return;
    }
    free(body);
    FUZZ_CHECK(r != NULL);
    want = unb64(pt, &want_n);
    got = unb64(json_string_value(json_object_get(r, "Plaintext")), &got_n);
    FUZZ_CHECK(want && got && want_n == got_n && !memcmp(want, got, got_n));
    sodium_memzero(got, got_n);
    free(want);
    free(got);
    json_decref(r);
}

/* Whether op is an operation that changes nothing (KMS_OP_READ_ONLY in the one list of operations):
 * after any other, the fixed key and its alias are put back. Unknown names change nothing either. */
static bool read_only(const char *op)
{
    static const struct {
        const char *name;
        unsigned flags;
    } OPS[] = {
#define X(name, fn, verb, flags) {#name, flags},
        KMS_OPERATIONS(X)
#undef X
    };
    for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].name, op))
            return OPS[i].flags & KMS_OP_READ_ONLY;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t op_len = nl ? (size_t)(nl - data) : size, body_len = 0;
    char *op = malloc(op_len + 1), *body = NULL, *resp = NULL, *msg = NULL;
    size_t resp_len = 0;
    json_t *r = NULL, *req = NULL;
    kms_err e;

    setup();
    if (!op)
        return 0;
    memcpy(op, data, op_len);
    op[op_len] = 0;
    body = nl ? substitute((const char *)nl + 1, size - op_len - 1, &body_len) : NULL;
    if (nl && !body)
        goto out;
    if (!strncmp(op, KMS_REPLICATION_TARGET, strlen(KMS_REPLICATION_TARGET)))
        e = kms_core_replication_call(core, &signed_caller, op + strlen(KMS_REPLICATION_TARGET), body, body_len, &resp,
                                      &resp_len, &msg);
    else
        e = kms_core_call(core, &caller, op, body, body_len, &resp, &resp_len, &msg);
    FUZZ_CHECK((int)e >= 0 && e < KMS_ERR__COUNT);
    if (verbose)
        fprintf(stderr, "%s -> %s %s\n", op, e ? kms_err_name(e) : "OK", e ? (msg ? msg : "") : resp);
    if (e) {
        FUZZ_CHECK(resp == NULL && resp_len == 0);
        if (e == KMS_ERR_INTERNAL || e == KMS_ERR_IO || e == KMS_ERR_CORRUPT_STORE)
            fprintf(stderr, "fuzz_kms_call: %s -> %s: %s\n", op, kms_err_name(e), msg ? msg : "");
        FUZZ_CHECK(e != KMS_ERR_INTERNAL && e != KMS_ERR_IO && e != KMS_ERR_CORRUPT_STORE);
        FUZZ_CHECK(e != KMS_ERR_BAD_PASSPHRASE && e != KMS_ERR_TRANSPORT && e != KMS_ERR_REMOTE);
        FUZZ_CHECK(e < KMS_ERR_MISSING_AUTH || e > KMS_ERR_CLOCK_SKEW); /* the server's, not the core's */
        goto out;
    }
    FUZZ_CHECK(resp != NULL && resp[resp_len] == 0 && strlen(resp) == resp_len);
    r = json_loadb(resp, resp_len, JSON_REJECT_DUPLICATES, NULL);
    FUZZ_CHECK(json_is_object(r));
    if (body_len) { /* what the core took for a JSON object is one to jansson (RFC 8259) too */
        req = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(req))
            fprintf(stderr, "fuzz_kms_call: %s accepted a body that is not a JSON object to jansson\n", op);
        FUZZ_CHECK(json_is_object(req));
    }
    if (req && (!strcmp(op, "Encrypt") || !strcmp(op, "GenerateDataKey"))) {
        check_decrypts(req, r, json_string_value(json_object_get(r, "CiphertextBlob")),
                       json_string_value(json_object_get(!strcmp(op, "Encrypt") ? req : r, "Plaintext")));
    }
    if (req && !strcmp(op, "GenerateDataKeyPair")) /* the wrapped private key is the plaintext one */
        check_decrypts(req, r, json_string_value(json_object_get(r, "PrivateKeyCiphertextBlob")),
                       json_string_value(json_object_get(r, "PrivateKeyPlaintext")));
out:
    if (!read_only(op))
        restore();
    json_decref(req);
    json_decref(r);
    kms_response_free(resp, resp_len);
    free(msg);
    free(body);
    free(op);
    return 0;
}
