/*
 * cmd_kms.c — `envelopefs kms <operation>`: the key-service CLI, shaped like `aws kms`.
 *
 * One table maps each kebab-case verb to its AWS operation and each flag to a JSON field and type;
 * one generic path builds the request, sends it through kmsclient (embedded store or any
 * --endpoint-url) and prints the JSON response. Arguments follow the AWS CLI v2: binary values are
 * base64, `fileb://FILE` (raw bytes) or, with --cli-binary-format raw-in-base64-out, plain text;
 * `file://FILE` reads any value from a file; maps take `k=v,k2=v2` or JSON; lists take several
 * values or JSON. On failure it prints the AWS CLI's message
 * "An error occurred (Name) when calling the Op operation: message" and exits 254, as `aws` does;
 * usage errors exit 252 (also as `aws`). Local-only verbs: init-store, create-, list- and delete-access-key, configure-, lookup- and validate-audit, get-audit-public-key.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cli_aws.h"
#include "cli_common.h"
#include "common/jsonb64.h"
#include "common/readfile.h"
#include "commands.h"
#include "common/jsonwipe.h"

#define EXIT_SERVICE CLI_EXIT_SERVICE
#define EXIT_USAGE CLI_EXIT_USAGE

enum ftype {
    F_STR,   /* JSON string */
    F_INT,   /* JSON integer */
    F_BOOL,  /* flag without value → true */
    F_BLOB,  /* binary: base64 / fileb:// / raw text with --cli-binary-format raw-in-base64-out */
    F_CTX,   /* string map: k=v,k2=v2 or a JSON object */
    F_TAGS,  /* TagKey=k,TagValue=v ... or a JSON array of {"TagKey","TagValue"} */
    F_LIST,  /* list of strings: v1 v2 ... or a JSON array */
    F_TIME,  /* timestamp: seconds since the epoch or UTC 2026-11-30T08:00:00Z → JSON number */
    F_JSON,  /* a JSON object (e.g. --constraints '{"EncryptionContextSubset":{...}}') */
};

struct flag {
    const char *name;   /* without "--" */
    const char *field;  /* JSON field */
    enum ftype type;
};

struct verb {
    const char *verb;
    const char *op;
    struct flag flags[10];
};

#define KEYID {"key-id", "KeyId", F_STR}
#define LIMIT {"limit", "Limit", F_INT}, {"marker", "Marker", F_STR}
#define CTX {"encryption-context", "EncryptionContext", F_CTX}
#define GRANT_TOKENS {"grant-tokens", "GrantTokens", F_LIST}

/* Each operation's flags (CLI_FLAGS_Name); the verbs themselves come from KMS_OPERATIONS. */
#define CLI_FLAGS_CreateKey \
    {{"description", "Description", F_STR}, \
     {"tags", "Tags", F_TAGS}, \
     {"key-spec", "KeySpec", F_STR}, \
     {"key-usage", "KeyUsage", F_STR}, \
     {"origin", "Origin", F_STR}, \
     {"policy", "Policy", F_STR}, \
     {"bypass-policy-lockout-safety-check", "BypassPolicyLockoutSafetyCheck", F_BOOL}, \
     {"multi-region", "MultiRegion", F_BOOL}, \
     {"custom-key-store-id", "CustomKeyStoreId", F_STR}}
#define CLI_FLAGS_ReplicateKey \
    {KEYID, {"replica-region", "ReplicaRegion", F_STR}, {"policy", "Policy", F_STR}, \
     {"description", "Description", F_STR}, {"tags", "Tags", F_TAGS}, \
     {"bypass-policy-lockout-safety-check", "BypassPolicyLockoutSafetyCheck", F_BOOL}}
#define CLI_FLAGS_UpdatePrimaryRegion {KEYID, {"primary-region", "PrimaryRegion", F_STR}}
#define CLI_FLAGS_DescribeKey {KEYID, GRANT_TOKENS}
#define CLI_FLAGS_ListKeys {LIMIT}
#define CLI_FLAGS_UpdateKeyDescription {KEYID, {"description", "Description", F_STR}}
#define CLI_FLAGS_EnableKey {KEYID}
#define CLI_FLAGS_DisableKey {KEYID}
#define CLI_FLAGS_ScheduleKeyDeletion {KEYID, {"pending-window-in-days", "PendingWindowInDays", F_INT}}
#define CLI_FLAGS_CancelKeyDeletion {KEYID}
#define CLI_FLAGS_EnableKeyRotation {KEYID, {"rotation-period-in-days", "RotationPeriodInDays", F_INT}}
#define CLI_FLAGS_DisableKeyRotation {KEYID}
#define CLI_FLAGS_GetKeyRotationStatus {KEYID}
#define CLI_FLAGS_RotateKeyOnDemand {KEYID}
#define CLI_FLAGS_ListKeyRotations {KEYID, LIMIT}
#define CLI_FLAGS_CreateAlias {{"alias-name", "AliasName", F_STR}, {"target-key-id", "TargetKeyId", F_STR}}
#define CLI_FLAGS_UpdateAlias {{"alias-name", "AliasName", F_STR}, {"target-key-id", "TargetKeyId", F_STR}}
#define CLI_FLAGS_DeleteAlias {{"alias-name", "AliasName", F_STR}}
#define CLI_FLAGS_ListAliases {KEYID, LIMIT}
#define CLI_FLAGS_TagResource {KEYID, {"tags", "Tags", F_TAGS}}
#define CLI_FLAGS_UntagResource {KEYID, {"tag-keys", "TagKeys", F_LIST}}
#define CLI_FLAGS_ListResourceTags {KEYID, LIMIT}
#define CLI_FLAGS_GenerateDataKey \
    {KEYID, \
     CTX, \
     {"key-spec", "KeySpec", F_STR}, \
     {"number-of-bytes", "NumberOfBytes", F_INT}, \
     GRANT_TOKENS}
#define CLI_FLAGS_GenerateDataKeyWithoutPlaintext \
    {KEYID, \
     CTX, \
     {"key-spec", "KeySpec", F_STR}, \
     {"number-of-bytes", "NumberOfBytes", F_INT}, \
     GRANT_TOKENS}
#define CLI_FLAGS_Encrypt \
    {KEYID, \
     CTX, \
     {"plaintext", "Plaintext", F_BLOB}, \
     {"encryption-algorithm", "EncryptionAlgorithm", F_STR}, \
     GRANT_TOKENS}
#define CLI_FLAGS_Decrypt \
    {KEYID, \
     CTX, \
     {"ciphertext-blob", "CiphertextBlob", F_BLOB}, \
     {"encryption-algorithm", "EncryptionAlgorithm", F_STR}, \
     GRANT_TOKENS}
#define CLI_FLAGS_ReEncrypt \
    {{"ciphertext-blob", "CiphertextBlob", F_BLOB}, \
     {"source-key-id", "SourceKeyId", F_STR}, \
     {"destination-key-id", "DestinationKeyId", F_STR}, \
     {"source-encryption-context", "SourceEncryptionContext", F_CTX}, \
     {"destination-encryption-context", "DestinationEncryptionContext", F_CTX}, \
     GRANT_TOKENS}
#define CLI_FLAGS_GenerateRandom {{"number-of-bytes", "NumberOfBytes", F_INT}}
/* asymmetric and HMAC keys, data key pairs (issue 17) */
#define CLI_FLAGS_GetPublicKey {KEYID, GRANT_TOKENS}
#define CLI_FLAGS_Sign \
    {KEYID, {"message", "Message", F_BLOB}, {"message-type", "MessageType", F_STR}, \
     {"signing-algorithm", "SigningAlgorithm", F_STR}, GRANT_TOKENS}
#define CLI_FLAGS_Verify \
    {KEYID, {"message", "Message", F_BLOB}, {"message-type", "MessageType", F_STR}, \
     {"signature", "Signature", F_BLOB}, {"signing-algorithm", "SigningAlgorithm", F_STR}, GRANT_TOKENS}
#define CLI_FLAGS_GenerateMac \
    {KEYID, {"message", "Message", F_BLOB}, {"mac-algorithm", "MacAlgorithm", F_STR}, GRANT_TOKENS}
#define CLI_FLAGS_VerifyMac \
    {KEYID, {"message", "Message", F_BLOB}, {"mac", "Mac", F_BLOB}, {"mac-algorithm", "MacAlgorithm", F_STR}, \
     GRANT_TOKENS}
#define CLI_FLAGS_GenerateDataKeyPair {KEYID, CTX, {"key-pair-spec", "KeyPairSpec", F_STR}, GRANT_TOKENS}
#define CLI_FLAGS_GenerateDataKeyPairWithoutPlaintext {KEYID, CTX, {"key-pair-spec", "KeyPairSpec", F_STR}, GRANT_TOKENS}
/* imported key material (create-key --origin EXTERNAL) */
#define CLI_FLAGS_GetParametersForImport \
    {KEYID, {"wrapping-algorithm", "WrappingAlgorithm", F_STR}, {"wrapping-key-spec", "WrappingKeySpec", F_STR}}
#define CLI_FLAGS_ImportKeyMaterial \
    {KEYID, {"import-token", "ImportToken", F_BLOB}, {"encrypted-key-material", "EncryptedKeyMaterial", F_BLOB}, \
     {"valid-to", "ValidTo", F_TIME}, {"expiration-model", "ExpirationModel", F_STR}}
#define CLI_FLAGS_DeleteImportedKeyMaterial {KEYID}
#define CLI_FLAGS_PutKeyPolicy \
    {KEYID, \
     {"policy", "Policy", F_STR}, \
     {"policy-name", "PolicyName", F_STR}, \
     {"bypass-policy-lockout-safety-check", "BypassPolicyLockoutSafetyCheck", F_BOOL}}
#define CLI_FLAGS_GetKeyPolicy {KEYID, {"policy-name", "PolicyName", F_STR}}
#define CLI_FLAGS_ListKeyPolicies {KEYID, LIMIT}
#define CLI_FLAGS_CreateGrant \
    {KEYID, \
     {"grantee-principal", "GranteePrincipal", F_STR}, \
     {"retiring-principal", "RetiringPrincipal", F_STR}, \
     {"operations", "Operations", F_LIST}, \
     {"constraints", "Constraints", F_JSON}, \
     {"name", "Name", F_STR}, \
     GRANT_TOKENS}
#define CLI_FLAGS_ListGrants {KEYID, LIMIT, {"grant-id", "GrantId", F_STR}, {"grantee-principal", "GranteePrincipal", F_STR}}
#define CLI_FLAGS_ListRetirableGrants {{"retiring-principal", "RetiringPrincipal", F_STR}, LIMIT}
#define CLI_FLAGS_RetireGrant {{"grant-token", "GrantToken", F_STR}, KEYID, {"grant-id", "GrantId", F_STR}}
#define CLI_FLAGS_RevokeGrant {KEYID, {"grant-id", "GrantId", F_STR}}
/* custom key stores over a PKCS#11 token (kms/cks.c) */
#define CKS_ID {"custom-key-store-id", "CustomKeyStoreId", F_STR}
#define CLI_FLAGS_CreateCustomKeyStore \
    {{"custom-key-store-name", "CustomKeyStoreName", F_STR}, {"cloud-hsm-cluster-id", "CloudHsmClusterId", F_STR}, \
     {"trust-anchor-certificate", "TrustAnchorCertificate", F_STR}, {"key-store-password", "KeyStorePassword", F_STR}, \
     {"custom-key-store-type", "CustomKeyStoreType", F_STR}}
#define CLI_FLAGS_ConnectCustomKeyStore {CKS_ID}
#define CLI_FLAGS_DisconnectCustomKeyStore {CKS_ID}
#define CLI_FLAGS_DescribeCustomKeyStores {CKS_ID, {"custom-key-store-name", "CustomKeyStoreName", F_STR}, LIMIT}
#define CLI_FLAGS_UpdateCustomKeyStore \
    {CKS_ID, {"new-custom-key-store-name", "NewCustomKeyStoreName", F_STR}, \
     {"key-store-password", "KeyStorePassword", F_STR}, {"cloud-hsm-cluster-id", "CloudHsmClusterId", F_STR}}
#define CLI_FLAGS_DeleteCustomKeyStore {CKS_ID}

static const struct verb VERBS[] = {
#define X(name, fn, verb, flags) {verb, #name, CLI_FLAGS_##name},
    KMS_OPERATIONS(X)
#undef X
};
#define NVERBS (sizeof VERBS / sizeof VERBS[0])

/* Settings of one invocation that are not request fields. */
struct cli {
    cli_kms_opts g;
    const char *query;        /* --query: dotted path into the response, e.g. KeyMetadata.KeyId */
    const char *output;       /* --output json|text */
    bool raw_binary;          /* --cli-binary-format raw-in-base64-out */
};

static int64_t parse_time(const char *s);

static void usage(FILE *f)
{
    fprintf(f, "usage: envelopefs kms <operation> [--flag value ...] [global options]\n\n"
               "global options:\n"
               "  --store DIR              key store directory (ENVELOPEFS_STORE; default $XDG_DATA_HOME/envelopefs,\n"
               "                           else ~/.local/share/envelopefs)\n"
               "  --endpoint-url URL       use a key-service server (http(s)://..., unix:/SOCKET) instead of the local store (alias --kms)\n"
               "  --root-key-file FILE     unlock the store with this 0600 root key file (ENVELOPEFS_ROOT_KEY_FILE;\n"
               "                           STORE/root.key is used when present)\n"
               "  --passphrase-file FILE   unlock the store with the passphrase in FILE (ENVELOPEFS_PASSPHRASE_FILE);\n"
               "                           with neither, a terminal prompts for the passphrase\n"
               "  --region REGION          region for http(s) and unix: endpoints (AWS_REGION)\n"
               "  --as-user USER|ARN       local store: call as this user of the store's account (or principal ARN)\n"
               "                           instead of the account root\n"
               "  --query PATH             print only this part of the response (KeyMetadata.KeyId, Keys[0].KeyId)\n"
               "  --output json|text       text prints a string or number result raw (e.g. base64 Plaintext)\n"
               "  --cli-binary-format raw-in-base64-out   binary arguments given inline are raw text, not base64\n\n"
               "operations:\n"
               "  init-store [--generate-root-key | --root-key-file F | --passphrase-file F] [--region R] [--account A]\n"
               "  create-access-key --user USER [--account ACCOUNT]   (local store: credentials for `kms serve`)\n"
               "  list-access-keys [--user USER]                      (local store: ids and owners, no secrets)\n"
               "  delete-access-key --access-key-id ID                (local store: revoke, also in a running server)\n"
               "  configure-audit [--retention-days D] [--max-records N]  (local store: audit retention, 0 = no limit)\n"
               "  lookup-audit [--start-time T] [--end-time T] [--user U] [--key-id ID] [--operation OP]\n"
               "               [--lookup-attributes AttributeKey=K,AttributeValue=V]\n"
               "               [--max-results N] [--next-token T]     (local store: the audit trail, newest first)\n"
               "  validate-audit [--start-time T] [--public-key HEX]  (local store: check the trail's hash chain and\n"
               "               signed digests; names the first bad record; exit 1 if not intact)\n"
               "  get-audit-public-key                                (the key validate-audit checks digests with)\n"
               "  serve [--listen ADDR:PORT] ...   serve the store over the AWS KMS protocol (`kms serve --help`)\n");
    for (size_t i = 0; i < NVERBS; i++) {
        fprintf(f, "  %s", VERBS[i].verb);
        for (const struct flag *fl = VERBS[i].flags; fl->name; fl++)
            fprintf(f, " [--%s%s]", fl->name, fl->type == F_BOOL ? "" : " ...");
        fprintf(f, "\n");
    }
    fprintf(f, "\nbinary arguments (--plaintext, --ciphertext-blob, --message, --signature, --mac, --import-token, ...) take base64 or fileb://FILE (raw bytes); any value\n"
               "can be read with file://FILE; --encryption-context takes k=v,k2=v2 or a JSON object; --tags takes\n"
               "TagKey=k,TagValue=v ... or JSON; errors exit 254 (usage errors 252), as the AWS CLI does.\n");
}

/* The --query and --output of this invocation, for the local-only verbs' answers (set in cmd_kms before
 * any verb runs; the AWS verbs pass theirs through struct cli). */
static const char *local_query, *local_output = "json";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "envelopefs kms: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see `envelopefs kms help`)\n");
    return EXIT_USAGE;
}

static void free_secret_buf(char *buf, size_t len)
{
    if (buf) {
        sodium_memzero(buf, len);
        free(buf);
    }
}

/* Binary argument → base64 JSON string (canonical: whitespace dropped, validated like AWS CLI v2). */
static json_t *blob_arg(const struct cli *cli, const char *arg, const char *flag)
{
    const char *text = arg;
    char *file = NULL;
    size_t n = 0, bin_len = 0;
    unsigned char *bin;
    json_t *j = NULL;

    if (!strncmp(arg, "fileb://", 8) || !strncmp(arg, "file://", 7)) {
        const char *path = arg + (arg[4] == 'b' ? 8 : 7);
        file = efs_read_file(path, &n);
        if (!file) {
            fprintf(stderr, "envelopefs kms: --%s: cannot read %s: %s\n", flag, path, strerror(errno));
            return NULL;
        }
        if (arg[4] == 'b' || cli->raw_binary) { /* raw bytes */
            j = efs_json_base64((const unsigned char *)file, n);
            free_secret_buf(file, n);
            return j;
        }
        text = file; /* file:// holds the value as text: base64 */
    } else if (cli->raw_binary) {
        return efs_json_base64((const unsigned char *)arg, strlen(arg));
    }
    n = strlen(text);
    bin = malloc(n + 1);
    if (bin && efs_base64_decode((uint8_t *)bin, n + 1, text, n, " \t\r\n", &bin_len, sodium_base64_VARIANT_ORIGINAL) == 0)
        j = efs_json_base64(bin, bin_len);
    else if (bin)
        fprintf(stderr,
                "envelopefs kms: --%s: invalid base64 (use fileb://FILE for raw bytes, or "
                "--cli-binary-format raw-in-base64-out for text)\n",
                flag);
    if (bin) {
        sodium_memzero(bin, n + 1);
        free(bin);
    }
    free_secret_buf(file, file ? strlen(file) : 0);
    return j;
}

/* k=v,k2=v2 or JSON object of strings → JSON object; NULL if malformed. */
static json_t *ctx_arg(const char *arg)
{
    json_t *o;
    char *copy, *save = NULL, *tok;
    if (arg[strspn(arg, " \t\r\n")] == '{') {
        const char *k;
        json_t *v;
        o = json_loads(arg, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            return NULL;
        }
        json_object_foreach(o, k, v)
            if (!json_is_string(v)) {
                json_decref(o);
                return NULL;
            }
        return o;
    }
    o = json_object();
    copy = strdup(arg);
    if (!o || !copy) {
        json_decref(o);
        free(copy);
        return NULL;
    }
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            json_decref(o);
            free(copy);
            return NULL;
        }
        *eq = 0;
        json_object_set_new(o, tok, json_string(eq + 1));
    }
    free(copy);
    return o;
}

/* TagKey=k,TagValue=v → {"TagKey":k,"TagValue":v} */
static json_t *tag_arg(const char *arg)
{
    json_t *t = ctx_arg(arg);
    if (!t || !json_is_string(json_object_get(t, "TagKey"))) {
        json_decref(t);
        return NULL;
    }
    if (!json_object_get(t, "TagValue"))
        json_object_set_new(t, "TagValue", json_string(""));
    return t;
}

/* A JSON array argument for a list/tags flag, or NULL if `arg` is not one. */
static json_t *json_array_arg(const char *arg, enum ftype type)
{
    json_t *a, *x;
    size_t i;
    if (arg[strspn(arg, " \t\r\n")] != '[')
        return NULL;
    a = json_loads(arg, 0, NULL);
    if (!json_is_array(a))
        goto bad;
    json_array_foreach(a, i, x) {
        if (type == F_LIST ? !json_is_string(x) : !json_is_string(json_object_get(x, "TagKey")))
            goto bad;
    }
    return a;
bad:
    json_decref(a);
    return json_null(); /* "looked like JSON but is not valid": the caller reports it */
}

/* Wipe a string member that carries plaintext before the object is freed. */
static void wipe_json_field(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    if (json_is_string(v))
        sodium_memzero((char *)json_string_value(v), json_string_length(v));
}

static int init_store(int argc, char **argv, const cli_kms_opts *g)
{
    kms_store_opts so;
    char *dir, *msg = NULL, *rk = NULL, *pw = NULL;
    int generate = 0, rc = 0;
    kms_err e;

    memset(&so, 0, sizeof so);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--generate-root-key"))
            generate = 1;
        else if (!strcmp(argv[i], "--account") && i + 1 < argc)
            so.account = argv[++i];
        else
            return usage_error("init-store: unknown argument %s", argv[i]);
    }
    if (g->url)
        return usage_error("%s", "init-store creates a local store; it takes --store, not --endpoint-url");
    dir = cli_store_dir(g);
    if (!dir)
        return 1;
    so.store_dir = dir;
    so.region = g->region;
    so.root_key_file = g->root_key_file ? g->root_key_file : getenv("ENVELOPEFS_ROOT_KEY_FILE");
    so.passphrase_file = g->passphrase_file ? g->passphrase_file : getenv("ENVELOPEFS_PASSPHRASE_FILE");
    if (so.root_key_file && !*so.root_key_file)
        so.root_key_file = NULL;
    if (so.passphrase_file && !*so.passphrase_file)
        so.passphrase_file = NULL;
    if (generate) {
        char *db = NULL;
        struct stat st;
        /* do not leave a stray root.key next to an existing store */
        if (asprintf(&db, "%s/keystore.db", dir) >= 0 && stat(db, &st) == 0) {
            fprintf(stderr, "An error occurred (AlreadyExistsException) when calling the InitStore operation: "
                            "a key store already exists in %s\n", dir);
            free(db);
            free(dir);
            return EXIT_SERVICE;
        }
        free(db);
        rk = cli_generate_root_key(dir);
        if (!rk) {
            free(dir);
            return 1;
        }
        so.root_key_file = rk;
        so.passphrase_file = NULL;
    } else if (!so.root_key_file && !so.passphrase_file) {
        pw = cli_prompt_passphrase("envelopefs: new key store passphrase: ");
        if (pw) {
            char *again = cli_prompt_passphrase("envelopefs: repeat the passphrase: ");
            bool same = again && strlen(pw) == strlen(again) && sodium_memcmp(pw, again, strlen(pw)) == 0;
            if (again)
                sodium_free(again);
            if (!same) {
                fprintf(stderr, "envelopefs kms: the passphrases differ\n");
                sodium_free(pw);
                free(dir);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "envelopefs kms: init-store needs --generate-root-key, --root-key-file or --passphrase-file\n");
            free(dir);
            return EXIT_USAGE;
        }
        so.passphrase = pw;
    } else if (so.root_key_file && so.passphrase_file) {
        so.passphrase_file = NULL; /* an explicit root key wins, as when opening */
    }
    e = kms_store_init(&so, &msg);
    if (e) {
        fprintf(stderr, "An error occurred (%s) when calling the InitStore operation: %s\n", kms_err_name(e),
                msg ? msg : kms_strerror(e));
        if (rk)
            unlink(rk);
        rc = EXIT_SERVICE;
    } else {
        json_t *o = json_pack("{s:s, s:s}", "Store", dir, "Protection", so.root_key_file ? "root-key-file" : "passphrase");
        if (o && so.root_key_file)
            json_object_set_new(o, "RootKeyFile", json_string(so.root_key_file));
        rc = o ? cli_print_json(o, local_query, local_output, "envelopefs kms") : 1;
        json_decref(o);
    }
    free(msg);
    free(rk);
    if (pw)
        sodium_free(pw);
    free(dir);
    return rc;
}

/* The embedded core of a local store, for the verbs that manage the server's credentials (they are not
 * KMS operations, so no server offers them). 0 with *c to kmsc_free after use, else the exit status
 * after printing why. */
static int local_core(const cli_kms_opts *g, const char *verb, kmsc **c, kms_core **core)
{
    *c = cli_open_kms(g, NULL);
    if (!*c)
        return EXIT_SERVICE;
    *core = kmsc_embedded_core(*c);
    if (!*core) {
        kmsc_free(*c);
        return usage_error("%s works on a local store only", verb);
    }
    return 0;
}

/* A local verb's failure, in the AWS CLI's words. */
static int local_error(kms_err e, const char *operation)
{
    fprintf(stderr, "An error occurred (%s) when calling the %s operation: %s\n", kms_err_name(e), operation,
            kms_strerror(e));
    return EXIT_SERVICE;
}

/* The flags of a local verb: each --name takes one value, kept (not copied) in its slot. 0, or the exit
 * status of the usage error printed. */
struct local_flag {
    const char *name;
    const char **value;
};
static int local_flags(const char *verb, int argc, char **argv, const struct local_flag *flags)
{
    for (int i = 0; i < argc; i++) {
        const struct local_flag *f = flags;
        while (f->name && strcmp(f->name, argv[i]))
            f++;
        if (!f->name)
            return usage_error("%s: unknown argument %s", verb, argv[i]);
        if (i + 1 >= argc)
            return usage_error("%s: %s needs a value", verb, argv[i]);
        *f->value = argv[++i];
    }
    return 0;
}

/* A whole number in [lo, hi] from a flag's value; -1 (after a usage error naming the range) otherwise. */
static long long local_number(const char *verb, const char *flag, const char *v, long long lo, long long hi)
{
    char *end;
    long long n;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        (void)usage_error("%s: %s takes a whole number from %lld to %lld, not %s", verb, flag, lo, hi, v);
        return -1;
    }
    return n;
}

static int create_access_key(int argc, char **argv, const cli_kms_opts *g)
{
    const char *account = NULL, *user = NULL;
    char *akid = NULL, *secret = NULL;
    kmsc *c;
    kms_core *core;
    kms_err e;
    json_t *o;
    int rc;
    if ((rc = local_flags("create-access-key", argc, argv,
                          (const struct local_flag[]){{"--account", &account}, {"--user", &user}, {NULL, NULL}})))
        return rc;
    if (!user)
        return usage_error("%s", "create-access-key needs --user");
    if ((rc = local_core(g, "create-access-key", &c, &core)))
        return rc;
    if (!account)
        account = kms_core_account(core);
    e = kms_core_create_access_key(core, account, user, &akid, &secret);
    if (e) {
        kmsc_free(c);
        return local_error(e, "CreateAccessKey");
    }
    o = json_pack("{s:{s:s, s:s, s:s, s:s}}", "AccessKey", "AccessKeyId", akid, "SecretAccessKey", secret, "Account",
                  account, "UserName", user);
    if (o) {
        (void)cli_print_json(o, local_query, local_output, "envelopefs kms");
        wipe_json_field(json_object_get(o, "AccessKey"), "SecretAccessKey");
        json_decref(o);
    }
    free(akid);
    kms_secret_str_free(secret);
    kmsc_free(c);
    return o ? 0 : 1;
}

/* {key: []}: a new object and, borrowed from it, its empty array; NULL (and *arr NULL) without memory. */
static json_t *object_with_array(const char *key, json_t **arr)
{
    json_t *o = json_object(), *a = json_array();
    if (!o || !a || json_object_set(o, key, a)) {
        json_decref(o);
        o = NULL;
    }
    json_decref(a); /* o holds its own reference */
    *arr = o ? a : NULL;
    return o;
}

/* Print o as the other verbs do (--query, --output honoured) and drop it. 0, 1 for NULL (no memory), or
 * cli_print_json's status. */
static int print_result(json_t *o)
{
    int rc;
    if (!o)
        return 1;
    rc = cli_print_json(o, local_query, local_output, "envelopefs kms");
    json_decref(o);
    return rc;
}

/* list-access-keys [--user USER]: ids, owners and creation times (IAM's ListAccessKeys shape), never secrets. */
static int list_access_keys(int argc, char **argv, const cli_kms_opts *g)
{
    const char *user = NULL;
    kms_access_key_info *keys = NULL;
    size_t n = 0;
    kmsc *c;
    kms_core *core;
    kms_err e;
    json_t *o, *arr;
    int rc;
    if ((rc = local_flags("list-access-keys", argc, argv, (const struct local_flag[]){{"--user", &user}, {NULL, NULL}})))
        return rc;
    if ((rc = local_core(g, "list-access-keys", &c, &core)))
        return rc;
    e = kms_core_list_access_keys(core, user, &keys, &n);
    kmsc_free(c);
    if (e)
        return local_error(e, "ListAccessKeys");
    o = object_with_array("AccessKeyMetadata", &arr);
    for (size_t i = 0; o && i < n; i++)
        if (json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:I}", "AccessKeyId", keys[i].id, "Account",
                                                 keys[i].account, "UserName", keys[i].user, "CreateDate",
                                                 (json_int_t)keys[i].created))) {
            json_decref(o);
            o = NULL;
        }
    free(keys);
    return print_result(o);
}

/* delete-access-key --access-key-id ID: the credential stops working, also in a running server. */
static int delete_access_key(int argc, char **argv, const cli_kms_opts *g)
{
    const char *akid = NULL;
    kmsc *c;
    kms_core *core;
    kms_err e;
    int rc;
    if ((rc = local_flags("delete-access-key", argc, argv,
                          (const struct local_flag[]){{"--access-key-id", &akid}, {NULL, NULL}})))
        return rc;
    if (!akid)
        return usage_error("%s", "delete-access-key needs --access-key-id");
    if ((rc = local_core(g, "delete-access-key", &c, &core)))
        return rc;
    e = kms_core_delete_access_key(core, akid);
    kmsc_free(c);
    return e ? local_error(e, "DeleteAccessKey") : 0;
}

/* configure-audit [--retention-days D] [--max-records N]: set the store's audit retention (0: no limit),
 * apply it, and print it with what the trail holds. Without flags: only print. */
static int configure_audit(int argc, char **argv, const cli_kms_opts *g)
{
    kms_audit_retention r = {0, 0};
    kms_audit_status st = {{0, 0}, 0, 0, 0};
    const char *days = NULL, *max = NULL;
    kmsc *c;
    kms_core *core;
    kms_err e;
    json_t *o;
    int rc;
    if ((rc = local_flags("configure-audit", argc, argv,
                          (const struct local_flag[]){{"--retention-days", &days}, {"--max-records", &max}, {NULL, NULL}})))
        return rc;
    if (days && (r.days = local_number("configure-audit", "--retention-days", days, 0, KMS_RETENTION_MAX_DAYS)) < 0)
        return EXIT_USAGE;
    if (max && (r.max_records = local_number("configure-audit", "--max-records", max, 0, LLONG_MAX)) < 0)
        return EXIT_USAGE;
    if ((rc = local_core(g, "configure-audit", &c, &core)))
        return rc;
    e = KMS_OK;
    if (!days != !max) { /* one flag given: the other keeps its value */
        e = kms_core_audit_retention(core, NULL, &st);
        if (!days)
            r.days = st.retention.days;
        if (!max)
            r.max_records = st.retention.max_records;
    }
    if (!e)
        e = kms_core_audit_retention(core, days || max ? &r : NULL, &st);
    kmsc_free(c);
    if (e)
        return local_error(e, "ConfigureAudit");
    o = json_pack("{s:I, s:I, s:I, s:I, s:I}", "RetentionDays", (json_int_t)st.retention.days, "MaxRecords",
                  (json_int_t)st.retention.max_records, "Records", (json_int_t)st.records, "OldestTime",
                  (json_int_t)st.oldest, "NewestTime", (json_int_t)st.newest);
    return print_result(o);
}

/* A time for lookup-audit: seconds since the epoch, or UTC as 2026-11-30T08:00:00Z or 2026-11-30. -1 if
 * neither. */
static int64_t parse_time(const char *s)
{
    struct tm tm;
    const char *end;
    if (*s && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 12)
        return strtoll(s, NULL, 10);
    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end || *end)
            return -1;
    }
    return (int64_t)timegm(&tm);
}

/* The value of lookup-audit's time flag, or -1 after a usage error. */
static int64_t time_flag(const char *flag, const char *v)
{
    int64_t t = parse_time(v);
    if (t < 0)
        (void)usage_error("lookup-audit: %s takes seconds since the epoch or a UTC time such as "
                          "2026-11-30T08:00:00Z, not %s", flag, v);
    return t;
}

/* --lookup-attributes AttributeKey=K,AttributeValue=V (the AWS CLI's form; JSON accepted too) into q.
 * 0, or EXIT_USAGE. The strings point into v or into json kept by *keep. */
static int lookup_attribute(const char *v, kms_audit_query *q, json_t **keep)
{
    static const char *const names[] = {"EventName", "Username", "ResourceName", "EventId", "ReadOnly",
                                        "AccessKeyId", "EventSource", "ResourceType"};
    const char *k = NULL, *val = NULL;
    char *dup;
    json_t *j = NULL;
    if (*v == '{' || *v == '[') {
        j = json_loads(v, 0, NULL);
        json_t *o = json_is_array(j) ? json_array_get(j, 0) : j;
        k = json_string_value(json_object_get(o, "AttributeKey"));
        val = json_string_value(json_object_get(o, "AttributeValue"));
        *keep = j;
    } else if ((dup = strdup(v))) {
        char *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!strncmp(t, "AttributeKey=", 13))
                k = t + 13;
            else if (!strncmp(t, "AttributeValue=", 15))
                val = t + 15;
        }
        *keep = json_pack("{s:s?, s:s?}", "k", k, "v", val); /* copies: dup goes */
        free(dup);
        k = json_string_value(json_object_get(*keep, "k"));
        val = json_string_value(json_object_get(*keep, "v"));
    }
    if (!k || !val)
        return usage_error("lookup-audit: --lookup-attributes takes AttributeKey=K,AttributeValue=V (K one of "
                           "EventName, Username, ResourceName, EventId, ReadOnly, AccessKeyId, EventSource, ResourceType)");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(k, names[i])) {
            switch (i) {
            case 0: q->operation = val; break;
            case 1: q->user = val; break;
            case 2: q->resource = val; break;
            case 3: q->event_id = val; break;
            case 4:
                if (strcmp(val, "true") && strcmp(val, "false"))
                    return usage_error("lookup-audit: ReadOnly is true or false, not %s", val);
                q->read_only = !strcmp(val, "true") ? 1 : 2;
                break;
            case 5: q->access_key = val; break;
            case 6: q->event_source = val; break; /* kms.amazonaws.com, or ec2.amazonaws.com (volumes) */
            case 7: /* a key is named only by the key service's records */
                if (strcmp(val, "AWS::KMS::Key"))
                    q->event_id = "-"; /* matches nothing */
                q->event_source = "kms.amazonaws.com";
                break;
            }
            return 0;
        }
    return usage_error("lookup-audit: unknown lookup attribute %s", k);
}

/* lookup-audit [--start-time T] [--end-time T] [--user U] [--key-id ID] [--operation OP]
 * [--lookup-attributes AttributeKey=K,AttributeValue=V] [--max-results N] [--next-token TOKEN]: the audit
 * trail, newest first, a page at a time, in CloudTrail's LookupEvents shape. */
static int lookup_audit(int argc, char **argv, const cli_kms_opts *g)
{
    kms_audit_query q = {.max_results = 50};
    const char *start = NULL, *end = NULL, *max = NULL, *token = NULL, *attr = NULL;
    kms_audit_event *ev = NULL;
    size_t n = 0;
    int64_t next = 0;
    kmsc *c;
    kms_core *core;
    kms_err e;
    json_t *o, *arr, *keep = NULL;
    int rc;
    if ((rc = local_flags("lookup-audit", argc, argv,
                          (const struct local_flag[]){{"--start-time", &start}, {"--end-time", &end},
                                                      {"--user", &q.user}, {"--key-id", &q.key_id},
                                                      {"--operation", &q.operation}, {"--max-results", &max},
                                                      {"--next-token", &token}, {"--lookup-attributes", &attr},
                                                      {NULL, NULL}})))
        return rc;
    if ((start && (q.start_time = time_flag("--start-time", start)) < 0) ||
        (end && (q.end_time = time_flag("--end-time", end)) < 0))
        return EXIT_USAGE;
    if (attr && (rc = lookup_attribute(attr, &q, &keep))) {
        json_decref(keep);
        return rc;
    }
    if (max) {
        long long m = local_number("lookup-audit", "--max-results", max, 1, KMS_AUDIT_MAX_RESULTS);
        if (m < 0) {
            json_decref(keep);
            return EXIT_USAGE;
        }
        q.max_results = (size_t)m;
    }
    if ((token && (q.before = local_number("lookup-audit", "--next-token", token, 1, LLONG_MAX)) < 0) ||
        (q.start_time && q.end_time && q.start_time > q.end_time)) {
        json_decref(keep);
        return token && q.before < 0 ? EXIT_USAGE : usage_error("%s", "lookup-audit: --start-time is after --end-time");
    }
    if ((rc = local_core(g, "lookup-audit", &c, &core))) {
        json_decref(keep);
        return rc;
    }
    e = kms_core_lookup_audit(core, &q, &ev, &n, &next);
    kmsc_free(c);
    json_decref(keep);
    if (e)
        return local_error(e, "LookupEvents");
    o = object_with_array("Events", &arr);
    for (size_t i = 0; o && i < n; i++) {
        json_t *x, *res = json_array(), *rec = ev[i].event ? json_loads(ev[i].event, 0, NULL) : NULL;
        const char *source = json_string_value(json_object_get(rec, "eventSource"));
        const char *type = json_string_value(json_object_get(json_array_get(json_object_get(rec, "resources"), 0), "type"));
        if (ev[i].key_id[0])
            json_array_append_new(res, json_pack("{s:s, s:s}", "ResourceType", type ? type : "AWS::KMS::Key",
                                                 "ResourceName", ev[i].key_id));
        x = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:s}", "EventId", ev[i].event_id, "EventName",
                      ev[i].operation, "ReadOnly", ev[i].read_only ? "true" : "false", "EventTime",
                      (json_int_t)ev[i].time, "EventSource", source ? source : "kms.amazonaws.com", "Username",
                      ev[i].user, "Resources", res, "CloudTrailEvent", ev[i].event ? ev[i].event : "");
        json_decref(rec);
        if (x && ev[i].access_key[0] && json_object_set_new(x, "AccessKeyId", json_string(ev[i].access_key))) {
            json_decref(x);
            x = NULL;
        }
        if (!x || json_array_append_new(arr, x)) {
            json_decref(o);
            o = NULL;
        }
    }
    if (o && next) {
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)next);
        if (json_object_set_new(o, "NextToken", json_string(tok))) {
            json_decref(o);
            o = NULL;
        }
    }
    kms_audit_events_free(ev, n);
    return print_result(o);
}

/* validate-audit [--start-time T] [--public-key HEX]: check the trail's chain and digests; prints what
 * was checked and, if it fails, the first bad record; exit 1 when the trail is not intact. */
static int validate_audit(int argc, char **argv, const cli_kms_opts *g)
{
    const char *start = NULL, *pk = NULL;
    int64_t t = 0;
    kms_audit_validation v;
    kmsc *c;
    kms_core *core;
    kms_err e;
    json_t *o;
    int rc;
    if ((rc = local_flags("validate-audit", argc, argv,
                          (const struct local_flag[]){{"--start-time", &start}, {"--public-key", &pk}, {NULL, NULL}})))
        return rc;
    if (start && (t = time_flag("--start-time", start)) < 0)
        return EXIT_USAGE;
    if (pk && strlen(pk) != 64)
        return usage_error("%s", "validate-audit: --public-key takes 64 hex digits (get-audit-public-key)");
    if ((rc = local_core(g, "validate-audit", &c, &core)))
        return rc;
    e = kms_core_validate_audit(core, t, pk, &v);
    kmsc_free(c);
    if (e)
        return local_error(e, "ValidateAudit");
    o = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "Valid", v.valid, "RecordsChecked",
                  (json_int_t)v.records, "DigestsChecked", (json_int_t)v.digests, "FirstSeq", (json_int_t)v.first_seq,
                  "LastSeq", (json_int_t)v.last_seq, "UnsealedRecords", (json_int_t)v.unsealed, "LegacyRecords",
                  (json_int_t)v.legacy, "PublicKey", v.public_key);
    if (o && !v.valid)
        json_object_set_new(o, "FirstBadRecord",
                            json_pack("{s:I, s:s, s:s}", "Seq", (json_int_t)v.bad_seq, "EventId", v.bad_event_id,
                                      "Reason", v.reason));
    rc = print_result(o);
    if (!v.valid)
        fprintf(stderr, "envelopefs kms validate-audit: the audit trail is not intact: %s\n", v.reason);
    return rc ? rc : (v.valid ? 0 : 1);
}

/* get-audit-public-key: the public half of the audit signing key, for validate-audit --public-key. */
static int get_audit_public_key(int argc, char **argv, const cli_kms_opts *g)
{
    char hex[65];
    kmsc *c;
    kms_core *core;
    int rc;
    if ((rc = local_flags("get-audit-public-key", argc, argv, (const struct local_flag[]){{NULL, NULL}})))
        return rc;
    if ((rc = local_core(g, "get-audit-public-key", &c, &core)))
        return rc;
    kms_core_audit_public_key(core, hex);
    kmsc_free(c);
    return print_result(json_pack("{s:s, s:s}", "KeyAlgorithm", "ED25519", "PublicKey", hex));
}

/* Value of a non-binary flag: inline, or the contents of file://FILE (one trailing newline dropped). */
static int flag_value(const char *val, char **owned, const char **out, const char *flag)
{
    size_t n;
    *owned = NULL;
    *out = val;
    if (strncmp(val, "file://", 7))
        return 0;
    *owned = efs_read_file(val + 7, &n);
    if (!*owned) {
        fprintf(stderr, "envelopefs kms: --%s: cannot read %s: %s\n", flag, val + 7, strerror(errno));
        return -1;
    }
    if (n && (*owned)[n - 1] == '\n')
        (*owned)[--n] = 0;
    *out = *owned;
    return 0;
}

/* One flag's value (rest[*i] is the value, or the first of several) → JSON; prints usage errors. */
static json_t *parse_flag(const struct cli *cli, const struct flag *fl, char **rest, int nrest, int *i)
{
    const char *val;
    char *owned = NULL;
    json_t *jv = NULL;

    if (fl->type == F_BOOL)
        return json_true();
    if (*i + 1 >= nrest) {
        usage_error("--%s needs a value", fl->name);
        return NULL;
    }
    val = rest[++*i];
    if (fl->type == F_BLOB)
        return blob_arg(cli, val, fl->name); /* prints its own errors */
    if (flag_value(val, &owned, &val, fl->name))
        return NULL;
    switch (fl->type) {
    case F_STR:
        jv = json_string(val);
        break;
    case F_INT: {
        char *end;
        long long n;
        errno = 0;
        n = strtoll(val, &end, 10);
        if (*end || !*val || errno)
            usage_error("--%s must be an integer", fl->name);
        else
            jv = json_integer(n);
        break;
    }
    case F_TIME: {
        int64_t t = parse_time(val);
        if (t < 0)
            usage_error("--%s takes seconds since the epoch or a UTC time such as 2027-01-31T00:00:00Z", fl->name);
        else
            jv = json_integer(t);
        break;
    }
    case F_CTX:
        if (!(jv = ctx_arg(val)))
            usage_error("--%s takes k=v[,k2=v2] or a JSON object of strings", fl->name);
        break;
    case F_TAGS:
    case F_LIST:
        jv = json_array_arg(val, fl->type);
        if (json_is_null(jv)) {
            json_decref(jv);
            jv = NULL;
            usage_error("--%s: invalid JSON list", fl->name);
            break;
        }
        if (jv)
            break;
        /* shorthand: one or more values follow, up to the next --flag */
        jv = json_array();
        --*i;
        while (jv && *i + 1 < nrest && strncmp(rest[*i + 1], "--", 2)) {
            const char *item_text = rest[++*i];
            json_t *item = fl->type == F_TAGS ? tag_arg(item_text) : json_string(item_text);
            if (!item) {
                json_decref(jv);
                jv = NULL;
                usage_error("--%s takes TagKey=k,TagValue=v ... or a JSON list", fl->name);
                break;
            }
            json_array_append_new(jv, item);
        }
        break;
    case F_JSON:
        jv = json_loads(val, 0, NULL);
        if (!json_is_object(jv)) {
            json_decref(jv);
            jv = NULL;
            usage_error("--%s takes a JSON object", fl->name);
        }
        break;
    case F_BOOL:
    case F_BLOB:
        break;
    }
    free(owned);
    return jv;
}

/* Build the request body for verb v from its flags. Returns 0 or an exit status (message printed). */
static int build_request(const struct cli *cli, const struct verb *v, char **rest, int nrest, json_t **out)
{
    json_t *req = json_object();
    *out = NULL;
    if (!req)
        return 1;
    for (int i = 0; i < nrest; i++) {
        const char *a = rest[i];
        const struct flag *fl = NULL;
        json_t *jv;
        if (strncmp(a, "--", 2)) {
            json_decref(req);
            return usage_error("unexpected argument %s", a);
        }
        for (const struct flag *f = v->flags; f->name; f++)
            if (!strcmp(f->name, a + 2))
                fl = f;
        if (!fl) {
            json_decref(req);
            return usage_error("unknown option %s for %s", a, v->verb);
        }
        jv = parse_flag(cli, fl, rest, nrest, &i);
        if (!jv) {
            wipe_json_field(req, "Plaintext");
            json_decref(req);
            return EXIT_USAGE;
        }
        json_object_set_new(req, fl->field, jv);
    }
    *out = req;
    return 0;
}

/* Print the (queried part of the) response. Returns the exit status. */
static int print_response(const struct cli *cli, const char *resp, size_t resp_len)
{
    json_t *out = json_loadb(resp, resp_len, 0, NULL);
    int rc;
    if (!out) {
        fprintf(stderr, "envelopefs kms: the key service returned malformed JSON\n");
        return EXIT_SERVICE;
    }
    rc = cli_print_json(out, cli->query, cli->output, "envelopefs kms");
    wipe_json_field(out, "Plaintext");
    wipe_json_field(out, "PrivateKeyPlaintext");
    json_decref(out);
    return rc;
}

int cmd_kms(int argc, char **argv)
{
    struct cli cli;
    const struct verb *v = NULL;
    const char *binfmt = NULL, *verb;
    json_t *req = NULL;
    char **rest;
    int nrest = 0, rc = 0;

    memset(&cli, 0, sizeof cli);
    cli.output = "json";
    efs_json_wipe_on_free(); /* requests and responses here may carry plaintext */
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    /* The key-service options, wherever they are (before or after the operation, as `aws` allows). */
    {
        const char *bad = cli_take_kms_options(&argc, argv, &cli.g);
        if (bad)
            return usage_error("%s needs a value", bad);
    }
    /* `envelopefs kms serve` (the AWS-protocol server, src/cmd_serve.c) takes the same ones. */
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return cmd_kms_serve(argc - 1, argv + 1, &cli.g);
    /* Then this CLI's own output options, also anywhere. */
    rest = calloc((size_t)argc, sizeof *rest);
    if (!rest)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--query"))
            slot = &cli.query;
        else if (!strcmp(a, "--output"))
            slot = &cli.output;
        else if (!strcmp(a, "--cli-binary-format"))
            slot = &binfmt;
        if (slot) {
            if (i + 1 >= argc) {
                free(rest);
                return usage_error("%s needs a value", a);
            }
            *slot = argv[++i];
        } else {
            rest[nrest++] = argv[i];
        }
    }
    if (!nrest || rest[0][0] == '-') {
        rc = usage_error("expected an operation%s%s", nrest ? " before " : "", nrest ? rest[0] : "");
        free(rest);
        return rc;
    }
    verb = rest[0];
    if (!strcmp(verb, "help")) {
        usage(stdout);
        free(rest);
        return 0;
    }
    if (strcmp(cli.output, "json") && strcmp(cli.output, "text")) {
        free(rest);
        return usage_error("--output takes json or text, not %s", cli.output);
    }
    if (binfmt && strcmp(binfmt, "base64") && strcmp(binfmt, "raw-in-base64-out")) {
        free(rest);
        return usage_error("--cli-binary-format takes base64 or raw-in-base64-out, not %s", binfmt);
    }
    cli.raw_binary = binfmt && !strcmp(binfmt, "raw-in-base64-out");
    local_query = cli.query;
    local_output = cli.output;
    if (cli.g.url && strncmp(cli.g.url, "http://", 7) && strncmp(cli.g.url, "https://", 8) &&
        strncmp(cli.g.url, "local:", 6) && strncmp(cli.g.url, "unix:", 5)) {
        free(rest);
        return usage_error("--endpoint-url takes http://HOST:PORT, https://HOST:PORT or unix:/SOCKET, not %s", cli.g.url);
    }
    {
        static const struct {
            const char *verb;
            int (*fn)(int, char **, const cli_kms_opts *);
        } LOCAL[] = {{"init-store", init_store},
                     {"create-access-key", create_access_key},
                     {"list-access-keys", list_access_keys},
                     {"delete-access-key", delete_access_key},
                     {"configure-audit", configure_audit},
                     {"lookup-audit", lookup_audit},
                     {"validate-audit", validate_audit},
                     {"get-audit-public-key", get_audit_public_key}};
        for (size_t i = 0; i < sizeof LOCAL / sizeof LOCAL[0]; i++)
            if (!strcmp(verb, LOCAL[i].verb)) {
                rc = LOCAL[i].fn(nrest - 1, rest + 1, &cli.g);
                free(rest);
                return rc;
            }
    }
    for (size_t i = 0; i < NVERBS; i++)
        if (!strcmp(VERBS[i].verb, verb))
            v = &VERBS[i];
    if (!v) {
        rc = usage_error("unknown operation '%s'", verb);
        free(rest);
        return rc;
    }
    rc = build_request(&cli, v, rest + 1, nrest - 1, &req);
    free(rest);
    if (rc)
        return rc;
    {
        kmsc *c = cli_open_kms(&cli.g, NULL);
        char *body = NULL, *resp = NULL;
        size_t resp_len = 0;
        kmsc_error err;
        kms_err e;
        if (!c) {
            wipe_json_field(req, "Plaintext");
            json_decref(req);
            return EXIT_SERVICE;
        }
        body = json_dumps(req, JSON_COMPACT);
        wipe_json_field(req, "Plaintext");
        json_decref(req);
        memset(&err, 0, sizeof err);
        if (body) {
            e = kmsc_call(c, v->op, body, strlen(body), &resp, &resp_len, &err);
            sodium_memzero(body, strlen(body));
            free(body);
        } else {
            e = KMS_ERR_NOMEM;
            snprintf(err.name, sizeof err.name, "%s", kms_err_name(e));
        }
        if (e) {
            fprintf(stderr, "An error occurred (%s) when calling the %s operation%s%s\n",
                    err.name[0] ? err.name : kms_err_name(e), v->op, err.message[0] ? ": " : "", err.message);
            rc = EXIT_SERVICE;
        } else {
            rc = print_response(&cli, resp, resp_len);
            kmsc_response_free(resp, resp_len);
        }
        kmsc_free(c);
    }
    return rc;
}
