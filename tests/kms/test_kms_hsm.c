/*
 * test_kms_hsm.c — custom key stores (AWS_CLOUDHSM) over a SoftHSM2 token through the embedded core: a token
 * initialised in a temporary directory (SOFTHSM2_CONF, softhsm2-util), a clusters file naming it,
 * CreateCustomKeyStore and its errors, Connect with a wrong PIN (FAILED, INVALID_CREDENTIALS) and the right one,
 * CreateKey in the store, Encrypt/Decrypt/GenerateDataKey/ReEncrypt round trips, the key in the token (AES,
 * 32 bytes, sensitive, not extractable, its value unreadable) and not in the keystore, a second core on the
 * same store, Disconnect (keys Unavailable, KMSInvalidStateException, CustomKeyStoreInvalidStateException),
 * UpdateCustomKeyStore rules, rotation refused, DeleteCustomKeyStore refused while keys exist, key deletion
 * destroying the token object, and the PIN in neither the keystore file nor the audit trail.
 * Exit 77 (skipped) when SoftHSM2 is not installed.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "envelopefs/kms.h"
#include "hsm.h"
#include "internal.h"
#include "testutil.h"
#include "kmstest.h"

#define PIN "envtest-1234"
#define LABEL "envelopefs-test"
#define CLUSTER "cluster-abcdefghijk"
#define RELATED "cluster-bcdefghijkl"   /* the same token */
#define UNRELATED "cluster-cdefghijklm" /* another token (not initialised) */

static char g_dir[256], g_store[300], g_key[320];
static const char *g_module;
static int64_t g_now = 1767225600; /* 2026-01-01 */

static int64_t test_clock(void *arg)
{
    (void)arg;
    return g_now;
}

static kms_err callf(kms_core *c, json_t **out, const char *op, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
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
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "%s -> %s: %s\n", op, kms_err_name(e), e ? (msg ? msg : "") : resp);
    if (msg && strstr(msg, PIN)) {
        fprintf(stderr, "the PIN is in a message: %s\n", msg);
        exit(1);
    }
    kms_response_free(resp, len);
    free(msg);
    return e;
}

static kms_core *open_core(void)
{
    kms_store_opts so = {.store_dir = g_store, .root_key_file = g_key};
    kms_core *c = NULL;
    char *msg = NULL;
    CHECK(kms_core_open(&so, &c, &msg) == KMS_OK);
    kms_core_set_clock(c, test_clock, NULL);
    return c;
}

static const char *get_s(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    return json_string_value(v) ? json_string_value(v) : "";
}

/* The one store's ConnectionState (and ConnectionErrorCode into code). */
static void store_state(kms_core *c, const char *id, char *state, char *code)
{
    json_t *r, *s;
    CHECK(callf(c, &r, "DescribeCustomKeyStores", "{\"CustomKeyStoreId\":\"%s\"}", id) == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "CustomKeyStores")) == 1);
    s = json_array_get(json_object_get(r, "CustomKeyStores"), 0);
    strcpy(state, get_s(s, "ConnectionState", NULL));
    strcpy(code, get_s(s, "ConnectionErrorCode", NULL));
    CHECK(!strcmp(get_s(s, "CustomKeyStoreType", NULL), "AWS_CLOUDHSM"));
    CHECK(!strcmp(get_s(s, "CustomKeyStoreId", NULL), id));
    CHECK(json_is_integer(json_object_get(s, "CreationDate")));
    json_decref(r);
}

static void setup_token(void)
{
    char path[400], cmd[1200];
    FILE *f;
    snprintf(path, sizeof path, "%s/tokens", g_dir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof path, "%s/softhsm2.conf", g_dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", g_dir);
    CHECK(fclose(f) == 0);
    CHECK(setenv("SOFTHSM2_CONF", path, 1) == 0);
    snprintf(cmd, sizeof cmd, "softhsm2-util --init-token --free --label %s --pin %s --so-pin so-%s >/dev/null", LABEL,
             PIN, PIN);
    CHECK(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/hsm-clusters", g_dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "# cluster id, PKCS#11 module, token label\n%s %s %s\n%s\t%s\t%s  \n%s %s other-token\n", CLUSTER,
            g_module, LABEL, RELATED, g_module, LABEL, UNRELATED, g_module);
    CHECK(fclose(f) == 0);
    CHECK(setenv("ENVELOPEFS_HSM_CLUSTERS", path, 1) == 0);
}

static void make_store(void)
{
    uint8_t k[32];
    int fd;
    char *msg = NULL;
    kms_store_opts so = {.store_dir = g_store, .root_key_file = g_key};
    snprintf(g_store, sizeof g_store, "%s/store", g_dir);
    snprintf(g_key, sizeof g_key, "%s/root.key", g_dir);
    CHECK(mkdir(g_store, 0700) == 0);
    fd = open(g_key, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    randombytes_buf(k, sizeof k);
    CHECK(write(fd, k, sizeof k) == 32);
    close(fd);
    CHECK(kms_store_init(&so, &msg) == KMS_OK);
}

/* Whether a file's bytes contain s. */
static bool file_has(const char *path, const char *s)
{
    FILE *f = fopen(path, "rb");
    static char buf[1 << 22];
    size_t n;
    bool has;
    if (!f)
        return false;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    has = memmem(buf, n, s, strlen(s)) != NULL;
    return has;
}

static int64_t sql_count(const char *sql, const char *arg)
{
    return kmstest_sql_count(g_store, sql, arg);
}

static void decrypts_to(kms_core *c, const char *blob, const char *ctx, const char *pt)
{
    json_t *r;
    CHECK(callf(c, &r, "Decrypt", "{\"CiphertextBlob\":\"%s\"%s}", blob, ctx) == KMS_OK);
    CHECK(!strcmp(get_s(r, "Plaintext", NULL), pt));
    json_decref(r);
}

/* Threads on two cores of the same store share one token login and its session pool. */
struct worker {
    kms_core *c;
    const char *key;
    int ok;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 40; i++) {
        json_t *r;
        char *b;
        if (callf(w->c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"dGhyZWFk\"}", w->key) != KMS_OK)
            return NULL;
        b = strdup(get_s(r, "CiphertextBlob", NULL));
        json_decref(r);
        if (callf(w->c, &r, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", b) != KMS_OK) {
            free(b);
            return NULL;
        }
        w->ok += !strcmp(get_s(r, "Plaintext", NULL), "dGhyZWFk");
        json_decref(r);
        free(b);
    }
    return NULL;
}

static void concurrent(kms_core *c, const char *key)
{
    kms_core *c2 = open_core();
    struct worker w[4] = {{c, key, 0}, {c, key, 0}, {c2, key, 0}, {c2, key, 0}};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, work, &w[i]) == 0);
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_EQ_INT(w[i].ok, 40);
    }
    kms_core_free(c2);
}

int main(void)
{
    kms_core *c, *c2;
    json_t *r;
    char cks[64], key[64], plain_key[64], state[32], code[32], *blob, *dk_blob, dk_pt[128], path[400];
    const char *ctx = ",\"EncryptionContext\":{\"purpose\":\"hsm-test\"}";

    g_module = getenv("SOFTHSM2_MODULE") ? getenv("SOFTHSM2_MODULE") : "/usr/lib/softhsm/libsofthsm2.so";
    if (access(g_module, R_OK) || system("command -v softhsm2-util >/dev/null 2>&1")) {
        printf("SKIP: SoftHSM2 is not installed (%s, softhsm2-util)\n", g_module);
        return 77;
    }
    CHECK(sodium_init() >= 0);
    snprintf(g_dir, sizeof g_dir, "/tmp/efs-hsm-XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    setup_token();
    make_store();
    c = open_core();

    /* CreateCustomKeyStore: AWS's validation and errors */
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CloudHsmClusterId\":\"%s\","
                "\"TrustAnchorCertificate\":\"cert\"}", CLUSTER) == KMS_ERR_VALIDATION); /* no password */
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CloudHsmClusterId\":\"cluster-1\","
                "\"TrustAnchorCertificate\":\"cert\",\"KeyStorePassword\":\"%s\"}", PIN) == KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CloudHsmClusterId\":\"cluster-zzzzzzzzzzz\","
                "\"TrustAnchorCertificate\":\"cert\",\"KeyStorePassword\":\"%s\"}", PIN) == KMS_ERR_HSM_NOT_FOUND);
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CustomKeyStoreType\":\"EXTERNAL_KEY_STORE\"}") ==
          KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CustomKeyStoreType\":\"NOPE\"}") ==
          KMS_ERR_VALIDATION);
    CHECK(callf(c, &r, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CloudHsmClusterId\":\"%s\","
                "\"TrustAnchorCertificate\":\"cert\",\"KeyStorePassword\":\"%s\",\"CustomKeyStoreType\":\"AWS_CLOUDHSM\"}",
                CLUSTER, PIN) == KMS_OK);
    snprintf(cks, sizeof cks, "%s", get_s(r, "CustomKeyStoreId", NULL));
    json_decref(r);
    CHECK(strlen(cks) == 21 && !strncmp(cks, "cks-", 4));
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s1\",\"CloudHsmClusterId\":\"%s\","
                "\"TrustAnchorCertificate\":\"cert\",\"KeyStorePassword\":\"%s\"}", RELATED, PIN) == KMS_ERR_CKS_NAME_IN_USE);
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s2\",\"CloudHsmClusterId\":\"%s\","
                "\"TrustAnchorCertificate\":\"cert\",\"KeyStorePassword\":\"%s\"}", CLUSTER, PIN) == KMS_ERR_HSM_IN_USE);
    store_state(c, cks, state, code);
    CHECK(!strcmp(state, "DISCONNECTED") && !*code);
    CHECK(callf(c, NULL, "DescribeCustomKeyStores", "{\"CustomKeyStoreId\":\"cks-00000000000000000\"}") == KMS_ERR_CKS_NOT_FOUND);
    CHECK(callf(c, NULL, "DescribeCustomKeyStores", "{\"CustomKeyStoreName\":\"nope\"}") == KMS_ERR_CKS_NOT_FOUND);
    CHECK(callf(c, &r, "DescribeCustomKeyStores", "{\"CustomKeyStoreName\":\"s1\"}") == KMS_OK);
    CHECK(!strcmp(get_s(json_array_get(json_object_get(r, "CustomKeyStores"), 0), "CloudHsmClusterId", NULL), CLUSTER));
    CHECK(json_is_false(json_object_get(r, "Truncated")));
    json_decref(r);
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"cks-00000000000000000\"}") == KMS_ERR_CKS_NOT_FOUND);

    /* keys need a connected store */
    CHECK(callf(c, NULL, "CreateKey", "{\"CustomKeyStoreId\":\"%s\",\"Origin\":\"AWS_CLOUDHSM\"}", cks) == KMS_ERR_CKS_INVALID_STATE);
    CHECK(callf(c, NULL, "CreateKey", "{\"CustomKeyStoreId\":\"cks-00000000000000000\",\"Origin\":\"AWS_CLOUDHSM\"}") ==
          KMS_ERR_CKS_NOT_FOUND);
    CHECK(callf(c, NULL, "CreateKey", "{\"Origin\":\"AWS_CLOUDHSM\"}") == KMS_ERR_UNSUPPORTED_OPERATION);

    /* a wrong PIN: Connect answers, the store is FAILED with INVALID_CREDENTIALS; it must be disconnected first */
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"KeyStorePassword\":\"short\"}", cks) ==
          KMS_ERR_VALIDATION);
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"KeyStorePassword\":\"wrong-pin-0\"}", cks) ==
          KMS_OK);
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    store_state(c, cks, state, code);
    CHECK(!strcmp(state, "FAILED") && !strcmp(code, "INVALID_CREDENTIALS"));
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_ERR_CKS_INVALID_STATE);
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"KeyStorePassword\":\"%s\"}", cks, PIN) ==
          KMS_ERR_CKS_INVALID_STATE);
    CHECK(callf(c, NULL, "DisconnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"KeyStorePassword\":\"%s\"}", cks, PIN) ==
          KMS_OK);
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    store_state(c, cks, state, code);
    CHECK(!strcmp(state, "CONNECTED") && !*code);
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK); /* already */
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"NewCustomKeyStoreName\":\"s9\"}", cks) ==
          KMS_ERR_CKS_INVALID_STATE);
    CHECK(callf(c, NULL, "DeleteCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_ERR_CKS_INVALID_STATE);

    /* a key in the token */
    CHECK(callf(c, NULL, "CreateKey", "{\"CustomKeyStoreId\":\"%s\",\"KeySpec\":\"RSA_2048\",\"KeyUsage\":\"SIGN_VERIFY\"}",
                cks) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"CustomKeyStoreId\":\"%s\",\"Origin\":\"EXTERNAL\"}", cks) ==
          KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "CreateKey", "{\"CustomKeyStoreId\":\"%s\",\"MultiRegion\":true}", cks) ==
          KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, &r, "CreateKey", "{\"CustomKeyStoreId\":\"%s\",\"Origin\":\"AWS_CLOUDHSM\",\"Description\":\"in the HSM\"}",
                cks) == KMS_OK);
    snprintf(key, sizeof key, "%s", get_s(r, "KeyMetadata", "KeyId"));
    CHECK(!strcmp(get_s(r, "KeyMetadata", "Origin"), "AWS_CLOUDHSM"));
    CHECK(!strcmp(get_s(r, "KeyMetadata", "CustomKeyStoreId"), cks));
    CHECK(!strcmp(get_s(r, "KeyMetadata", "CloudHsmClusterId"), CLUSTER));
    CHECK(!strcmp(get_s(r, "KeyMetadata", "KeyState"), "Enabled"));
    json_decref(r);
    CHECK(callf(c, &r, "CreateKey", "{}") == KMS_OK);
    snprintf(plain_key, sizeof plain_key, "%s", get_s(r, "KeyMetadata", "KeyId"));
    json_decref(r);

    /* Encrypt / Decrypt / GenerateDataKey / ReEncrypt */
    CHECK(callf(c, &r, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8gSFNN\"%s}", key, ctx) == KMS_OK);
    blob = strdup(get_s(r, "CiphertextBlob", NULL));
    CHECK(strstr(get_s(r, "KeyId", NULL), key) != NULL);
    json_decref(r);
    decrypts_to(c, blob, ctx, "aGVsbG8gSFNN");
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", blob) == KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"purpose\":\"other\"}}", blob) ==
          KMS_ERR_INVALID_CIPHERTEXT);
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\",\"KeyId\":\"%s\"%s}", blob, plain_key, ctx) ==
          KMS_ERR_INCORRECT_KEY);
    CHECK(callf(c, &r, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_256\"%s}", key, ctx) == KMS_OK);
    dk_blob = strdup(get_s(r, "CiphertextBlob", NULL));
    snprintf(dk_pt, sizeof dk_pt, "%s", get_s(r, "Plaintext", NULL));
    CHECK(strlen(dk_pt) == 44);
    json_decref(r);
    decrypts_to(c, dk_blob, ctx, dk_pt);
    CHECK(callf(c, &r, "GenerateDataKeyWithoutPlaintext", "{\"KeyId\":\"%s\",\"NumberOfBytes\":64}", key) == KMS_OK);
    CHECK(!json_object_get(r, "Plaintext"));
    {
        char *b = strdup(get_s(r, "CiphertextBlob", NULL));
        json_t *d;
        json_decref(r);
        CHECK(callf(c, &d, "Decrypt", "{\"CiphertextBlob\":\"%s\"}", b) == KMS_OK);
        CHECK(strlen(get_s(d, "Plaintext", NULL)) == 88);
        json_decref(d);
        free(b);
    }
    CHECK(callf(c, &r, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"SourceEncryptionContext\":{\"purpose\":\"hsm-test\"},"
                "\"DestinationKeyId\":\"%s\"}", blob, plain_key) == KMS_OK);
    {
        char *b = strdup(get_s(r, "CiphertextBlob", NULL));
        json_t *d;
        json_decref(r);
        decrypts_to(c, b, "", "aGVsbG8gSFNN");
        CHECK(callf(c, &d, "ReEncrypt", "{\"CiphertextBlob\":\"%s\",\"DestinationKeyId\":\"%s\"}", b, key) == KMS_OK);
        free(b);
        b = strdup(get_s(d, "CiphertextBlob", NULL));
        json_decref(d);
        decrypts_to(c, b, "", "aGVsbG8gSFNN");
        free(b);
    }

    /* the key material is a token object, sensitive and not extractable; the keystore has none of it */
    {
        hsm_key_info info;
        char *msg = NULL;
        kms_key *k = kms_find_key(c, key);
        CHECK(k != NULL && k->hsm);
        CHECK(kms_cks_token_key_info(c, k, &info, &msg) == KMS_OK);
        CHECK(info.found && info.aes && info.token && info.sensitive && !info.extractable && !info.value_readable);
        CHECK(info.value_len == 32 && !strcmp(info.label, key));
        free(msg);
    }
    CHECK(sql_count("SELECT count(*) FROM key_versions WHERE key_id=?", key) == 0);
    CHECK(sql_count("SELECT count(*) FROM keys WHERE id=? AND origin='AWS_CLOUDHSM'", key) == 1);
    CHECK(sql_count("SELECT count(*) FROM custom_key_store_keys WHERE key_id=?", key) == 1);
    CHECK(sql_count("SELECT count(*) FROM key_versions WHERE key_id=?", plain_key) == 1);
    CHECK(sql_count("SELECT count(*) FROM meta WHERE k='feature.custom_key_stores' AND v=?", "1") == 1);

    /* no rotation for keys in a custom key store (AWS: UnsupportedOperationException) */
    CHECK(callf(c, NULL, "EnableKeyRotation", "{\"KeyId\":\"%s\"}", key) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "RotateKeyOnDemand", "{\"KeyId\":\"%s\"}", key) == KMS_ERR_UNSUPPORTED_OPERATION);
    CHECK(callf(c, NULL, "GetKeyRotationStatus", "{\"KeyId\":\"%s\"}", key) == KMS_ERR_UNSUPPORTED_OPERATION);

    /* a second core on the store (as another process would): logs in lazily, shares the token's login */
    c2 = open_core();
    decrypts_to(c2, blob, ctx, "aGVsbG8gSFNN");
    kms_core_free(c2);
    decrypts_to(c, dk_blob, ctx, dk_pt);
    concurrent(c, key);

    /* a forked child logs in afresh with a core of its own; the parent's core goes on working (not under
     * ThreadSanitizer, which cannot follow a child that starts threads after a multi-threaded fork) */
#ifndef __SANITIZE_THREAD__
    {
        pid_t pid = fork();
        int st = 0;
        CHECK(pid >= 0);
        if (pid == 0) {
            kms_core *cc = open_core();
            decrypts_to(cc, blob, ctx, "aGVsbG8gSFNN");
            kms_core_free(cc);
            _exit(0);
        }
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        decrypts_to(c, blob, ctx, "aGVsbG8gSFNN");
    }
#endif

    /* disconnected: keys Unavailable */
    CHECK(callf(c, NULL, "DisconnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    store_state(c, cks, state, code);
    CHECK(!strcmp(state, "DISCONNECTED"));
    CHECK(callf(c, &r, "DescribeKey", "{\"KeyId\":\"%s\"}", key) == KMS_OK);
    CHECK(!strcmp(get_s(r, "KeyMetadata", "KeyState"), "Unavailable"));
    CHECK(!strcmp(get_s(r, "KeyMetadata", "CloudHsmClusterId"), CLUSTER));
    json_decref(r);
    CHECK(callf(c, NULL, "Encrypt", "{\"KeyId\":\"%s\",\"Plaintext\":\"eA==\"}", key) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "Decrypt", "{\"CiphertextBlob\":\"%s\"%s}", blob, ctx) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "GenerateDataKey", "{\"KeyId\":\"%s\",\"KeySpec\":\"AES_128\"}", key) == KMS_ERR_INVALID_STATE);
    CHECK(callf(c, NULL, "CreateKey", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_ERR_CKS_INVALID_STATE);
    CHECK(callf(c, NULL, "DeleteCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_ERR_CKS_HAS_CMKS);

    /* UpdateCustomKeyStore while disconnected: name, related and unrelated clusters */
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"CloudHsmClusterId\":\"%s\"}", cks,
                UNRELATED) == KMS_ERR_HSM_NOT_RELATED);
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"CloudHsmClusterId\":\"cluster-yyyyyyyyyyy\"}",
                cks) == KMS_ERR_HSM_NOT_FOUND);
    CHECK(callf(c, NULL, "UpdateCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\",\"CloudHsmClusterId\":\"%s\","
                "\"NewCustomKeyStoreName\":\"renamed\"}", cks, RELATED) == KMS_OK);
    CHECK(callf(c, &r, "DescribeCustomKeyStores", "{\"CustomKeyStoreName\":\"renamed\"}") == KMS_OK);
    CHECK(!strcmp(get_s(json_array_get(json_object_get(r, "CustomKeyStores"), 0), "CloudHsmClusterId", NULL), RELATED));
    json_decref(r);

    /* paging over two stores */
    CHECK(callf(c, NULL, "CreateCustomKeyStore", "{\"CustomKeyStoreName\":\"s2\",\"CloudHsmClusterId\":\"%s\","
                "\"TrustAnchorCertificate\":\"cert\",\"KeyStorePassword\":\"%s\"}", UNRELATED, PIN) == KMS_OK);
    CHECK(callf(c, &r, "DescribeCustomKeyStores", "{\"Limit\":1}") == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "CustomKeyStores")) == 1 && json_is_true(json_object_get(r, "Truncated")));
    {
        char marker[64];
        json_t *p2;
        snprintf(marker, sizeof marker, "%s", get_s(r, "NextMarker", NULL));
        CHECK(callf(c, &p2, "DescribeCustomKeyStores", "{\"Limit\":1,\"Marker\":\"%s\"}", marker) == KMS_OK);
        CHECK(json_array_size(json_object_get(p2, "CustomKeyStores")) == 1 && json_is_false(json_object_get(p2, "Truncated")));
        CHECK(!strcmp(get_s(json_array_get(json_object_get(p2, "CustomKeyStores"), 0), "CustomKeyStoreName", NULL), "s2"));
        json_decref(p2);
    }
    json_decref(r);
    CHECK(callf(c, NULL, "DescribeCustomKeyStores", "{\"Marker\":\"99\"}") == KMS_ERR_INVALID_MARKER);
    /* the other token does not exist: FAILED with CLUSTER_NOT_FOUND */
    CHECK(callf(c, &r, "DescribeCustomKeyStores", "{\"CustomKeyStoreName\":\"s2\"}") == KMS_OK);
    {
        char s2[64];
        snprintf(s2, sizeof s2, "%s", get_s(json_array_get(json_object_get(r, "CustomKeyStores"), 0), "CustomKeyStoreId", NULL));
        json_decref(r);
        CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", s2) == KMS_OK);
        store_state(c, s2, state, code);
        CHECK(!strcmp(state, "FAILED") && !strcmp(code, "CLUSTER_NOT_FOUND"));
        CHECK(callf(c, NULL, "DisconnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", s2) == KMS_OK);
        CHECK(callf(c, NULL, "DeleteCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", s2) == KMS_OK);
    }

    /* reconnected (the related cluster: the same token), the old ciphertext opens; deleting the key
     * destroys its token object, then the store can go */
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    store_state(c, cks, state, code);
    CHECK(!strcmp(state, "CONNECTED"));
    decrypts_to(c, blob, ctx, "aGVsbG8gSFNN");
    CHECK(callf(c, NULL, "ScheduleKeyDeletion", "{\"KeyId\":\"%s\",\"PendingWindowInDays\":7}", key) == KMS_OK);
    CHECK(callf(c, NULL, "DisconnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    CHECK(callf(c, NULL, "DeleteCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_ERR_CKS_HAS_CMKS);
    CHECK(callf(c, NULL, "ConnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    {
        uint8_t raw[16];
        kms_key *k = kms_find_key(c, key);
        hsm_token *t;
        hsm_key_info info;
        const char *why;
        char *msg = NULL;
        CHECK(k != NULL);
        memcpy(raw, k->raw_id, 16);
        g_now += 8 * 86400;
        CHECK(callf(c, NULL, "DescribeKey", "{\"KeyId\":\"%s\"}", key) == KMS_ERR_NOT_FOUND);
        CHECK(hsm_open(g_module, LABEL, PIN, strlen(PIN), &t, &why, &msg) == KMS_OK);
        CHECK(hsm_describe_key(t, raw, &info, &msg) == KMS_OK);
        CHECK(!info.found);
        hsm_close(t);
        free(msg);
    }
    CHECK(callf(c, NULL, "DisconnectCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    CHECK(callf(c, NULL, "DeleteCustomKeyStore", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_OK);
    CHECK(callf(c, NULL, "DescribeCustomKeyStores", "{\"CustomKeyStoreId\":\"%s\"}", cks) == KMS_ERR_CKS_NOT_FOUND);
    CHECK(callf(c, &r, "DescribeCustomKeyStores", "{}") == KMS_OK);
    CHECK(json_array_size(json_object_get(r, "CustomKeyStores")) == 0);
    json_decref(r);

    /* the PIN is in no record of the trail and nowhere in the keystore's files */
    {
        kms_audit_query q = {.operation = "CreateCustomKeyStore", .max_results = 100};
        kms_audit_event *ev = NULL;
        size_t n = 0;
        int64_t next = 0;
        CHECK(kms_core_lookup_audit(c, &q, &ev, &n, &next) == KMS_OK);
        CHECK(n >= 3);
        for (size_t i = 0; i < n; i++) {
            json_t *j = json_loads(ev[i].event, 0, NULL);
            CHECK(j && !strstr(ev[i].event, PIN));
            CHECK(json_object_get(json_object_get(j, "requestParameters"), "customKeyStoreName"));
            CHECK(!json_object_get(json_object_get(j, "requestParameters"), "keyStorePassword"));
            json_decref(j);
        }
        kms_audit_events_free(ev, n);
    }
    kms_core_free(c);
    snprintf(path, sizeof path, "%s/keystore.db", g_store);
    CHECK(!file_has(path, PIN));
    snprintf(path, sizeof path, "%s/keystore.db-wal", g_store);
    CHECK(!file_has(path, PIN));
    free(blob);
    free(dk_blob);
    kmstest_rmdir(g_dir);
    TEST_DONE();
}
