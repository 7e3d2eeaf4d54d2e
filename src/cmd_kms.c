/*
 * cmd_kms.c — `envelopefs kms <operation>`: the key-service CLI, shaped like `aws kms`.
 *
 * One table maps each kebab-case verb to its AWS operation and each flag to a JSON field and type;
 * one generic path builds the request, sends it through kmsclient (embedded store or any
 * --endpoint-url) and prints the JSON response. On failure it prints the AWS CLI's message
 * "An error occurred (Name) when calling the Op operation: message" and exits 254, as `aws` does;
 * usage errors exit 252. Local-only verbs: init-store, create-access-key.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "cli_common.h"
#include "commands.h"

#define EXIT_SERVICE 254
#define EXIT_USAGE 252

enum ftype { F_STR, F_INT, F_BOOL, F_BLOB, F_CTX, F_TAGS, F_LIST };

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

static const struct verb VERBS[] = {
    {"create-key", "CreateKey", {{"description", "Description", F_STR}, {"tags", "Tags", F_TAGS},
                                 {"key-spec", "KeySpec", F_STR}, {"key-usage", "KeyUsage", F_STR}, {"origin", "Origin", F_STR}}},
    {"describe-key", "DescribeKey", {KEYID}},
    {"list-keys", "ListKeys", {LIMIT}},
    {"update-key-description", "UpdateKeyDescription", {KEYID, {"description", "Description", F_STR}}},
    {"enable-key", "EnableKey", {KEYID}},
    {"disable-key", "DisableKey", {KEYID}},
    {"schedule-key-deletion", "ScheduleKeyDeletion", {KEYID, {"pending-window-in-days", "PendingWindowInDays", F_INT}}},
    {"cancel-key-deletion", "CancelKeyDeletion", {KEYID}},
    {"enable-key-rotation", "EnableKeyRotation", {KEYID, {"rotation-period-in-days", "RotationPeriodInDays", F_INT}}},
    {"disable-key-rotation", "DisableKeyRotation", {KEYID}},
    {"get-key-rotation-status", "GetKeyRotationStatus", {KEYID}},
    {"rotate-key-on-demand", "RotateKeyOnDemand", {KEYID}},
    {"list-key-rotations", "ListKeyRotations", {KEYID, LIMIT}},
    {"create-alias", "CreateAlias", {{"alias-name", "AliasName", F_STR}, {"target-key-id", "TargetKeyId", F_STR}}},
    {"update-alias", "UpdateAlias", {{"alias-name", "AliasName", F_STR}, {"target-key-id", "TargetKeyId", F_STR}}},
    {"delete-alias", "DeleteAlias", {{"alias-name", "AliasName", F_STR}}},
    {"list-aliases", "ListAliases", {KEYID, LIMIT}},
    {"tag-resource", "TagResource", {KEYID, {"tags", "Tags", F_TAGS}}},
    {"untag-resource", "UntagResource", {KEYID, {"tag-keys", "TagKeys", F_LIST}}},
    {"list-resource-tags", "ListResourceTags", {KEYID, LIMIT}},
    {"generate-data-key", "GenerateDataKey", {KEYID, CTX, {"key-spec", "KeySpec", F_STR},
                                              {"number-of-bytes", "NumberOfBytes", F_INT}}},
    {"generate-data-key-without-plaintext", "GenerateDataKeyWithoutPlaintext",
     {KEYID, CTX, {"key-spec", "KeySpec", F_STR}, {"number-of-bytes", "NumberOfBytes", F_INT}}},
    {"encrypt", "Encrypt", {KEYID, CTX, {"plaintext", "Plaintext", F_BLOB},
                            {"encryption-algorithm", "EncryptionAlgorithm", F_STR}}},
    {"decrypt", "Decrypt", {KEYID, CTX, {"ciphertext-blob", "CiphertextBlob", F_BLOB},
                            {"encryption-algorithm", "EncryptionAlgorithm", F_STR}}},
    {"re-encrypt", "ReEncrypt", {{"ciphertext-blob", "CiphertextBlob", F_BLOB},
                                 {"source-key-id", "SourceKeyId", F_STR},
                                 {"destination-key-id", "DestinationKeyId", F_STR},
                                 {"source-encryption-context", "SourceEncryptionContext", F_CTX},
                                 {"destination-encryption-context", "DestinationEncryptionContext", F_CTX}}},
    {"generate-random", "GenerateRandom", {{"number-of-bytes", "NumberOfBytes", F_INT}}},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: envelopefs kms <operation> [--flag value ...] [global options]\n\n"
               "global options:\n"
               "  --store DIR              key store directory (ENVELOPEFS_STORE; default $XDG_DATA_HOME/envelopefs)\n"
               "  --endpoint-url URL       use a key-service server (http(s)://...) instead of the local store (alias --kms)\n"
               "  --root-key-file FILE     unlock the store with this 0600 root key file (ENVELOPEFS_ROOT_KEY_FILE)\n"
               "  --passphrase-file FILE   unlock the store with the passphrase in FILE (ENVELOPEFS_PASSPHRASE_FILE)\n"
               "  --region REGION          region for http(s) endpoints (AWS_REGION)\n"
               "  --query FIELD            print only this top-level field of the response\n"
               "  --output json|text       text prints the --query field raw (e.g. base64 Plaintext)\n\n"
               "operations:\n"
               "  init-store [--generate-root-key | --root-key-file F | --passphrase-file F] [--region R] [--account A]\n"
               "  create-access-key --account ACCOUNT --user USER      (local store: credentials for `kms serve`)\n");
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++) {
        fprintf(f, "  %s", VERBS[i].verb);
        for (const struct flag *fl = VERBS[i].flags; fl->name; fl++)
            fprintf(f, " [--%s]", fl->name);
        fprintf(f, "\n");
    }
    fprintf(f, "\nbinary arguments (--plaintext, --ciphertext-blob) take base64, fileb://FILE (raw bytes) or\n"
               "file://FILE; --encryption-context takes k=v,k2=v2 or a JSON object; --tags TagKey=k,TagValue=v ...\n");
}

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

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap ? cap * 2 : 8192);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = cap ? cap * 2 : 8192;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Binary argument → base64 JSON string. */
static json_t *blob_arg(const char *arg, const char *flag)
{
    size_t n, cap;
    char *data, *s;
    json_t *j;
    if (!strncmp(arg, "fileb://", 8) || !strncmp(arg, "file://", 7)) {
        const char *path = arg + (arg[4] == 'b' ? 8 : 7);
        data = read_file(path, &n);
        if (!data) {
            fprintf(stderr, "envelopefs kms: --%s: cannot read %s: %s\n", flag, path, strerror(errno));
            return NULL;
        }
        cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
        s = malloc(cap);
        if (!s) {
            free(data);
            return NULL;
        }
        sodium_bin2base64(s, cap, (const unsigned char *)data, n, sodium_base64_VARIANT_ORIGINAL);
        sodium_memzero(data, n);
        free(data);
        j = json_string(s);
        sodium_memzero(s, cap);
        free(s);
        return j;
    }
    {
        /* validate base64 like AWS CLI v2 */
        size_t bin_len;
        unsigned char *tmp = malloc(strlen(arg) + 1);
        int bad = !tmp || sodium_base642bin(tmp, strlen(arg) + 1, arg, strlen(arg), NULL, &bin_len, NULL,
                                            sodium_base64_VARIANT_ORIGINAL);
        free(tmp);
        if (bad) {
            fprintf(stderr, "envelopefs kms: --%s: not valid base64 (use fileb://FILE for raw bytes)\n", flag);
            return NULL;
        }
    }
    return json_string(arg);
}

/* k=v,k2=v2 or JSON object → JSON object */
static json_t *ctx_arg(const char *arg)
{
    json_t *o;
    char *copy, *save = NULL, *tok;
    if (arg[0] == '{') {
        o = json_loads(arg, 0, NULL);
        if (!json_is_object(o)) {
            json_decref(o);
            return NULL;
        }
        return o;
    }
    o = json_object();
    copy = strdup(arg);
    if (!copy)
        return NULL;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
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
    if (!t || !json_object_get(t, "TagKey")) {
        json_decref(t);
        return NULL;
    }
    if (!json_object_get(t, "TagValue"))
        json_object_set_new(t, "TagValue", json_string(""));
    return t;
}

static int init_store(int argc, char **argv, cli_kms_opts *g)
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
        else if (!strcmp(argv[i], "--region") && i + 1 < argc)
            so.region = argv[++i];
        else
            return usage_error("init-store: unknown argument %s", argv[i]);
    }
    dir = cli_store_dir(g);
    if (!dir)
        return 1;
    so.store_dir = dir;
    so.root_key_file = g->root_key_file ? g->root_key_file : getenv("ENVELOPEFS_ROOT_KEY_FILE");
    so.passphrase_file = g->passphrase_file ? g->passphrase_file : getenv("ENVELOPEFS_PASSPHRASE_FILE");
    if (so.root_key_file && !*so.root_key_file)
        so.root_key_file = NULL;
    if (so.passphrase_file && !*so.passphrase_file)
        so.passphrase_file = NULL;
    if (generate) {
        uint8_t key[32];
        int fd;
        if (mkdir(dir, 0700) && errno != EEXIST) {
            fprintf(stderr, "envelopefs kms: cannot create %s: %s\n", dir, strerror(errno));
            free(dir);
            return 1;
        }
        if (asprintf(&rk, "%s/root.key", dir) < 0) {
            free(dir);
            return 1;
        }
        fd = open(rk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            fprintf(stderr, "envelopefs kms: cannot create %s: %s\n", rk, strerror(errno));
            free(rk);
            free(dir);
            return 1;
        }
        randombytes_buf(key, sizeof key);
        if (write(fd, key, sizeof key) != (ssize_t)sizeof key || fsync(fd)) {
            fprintf(stderr, "envelopefs kms: cannot write %s: %s\n", rk, strerror(errno));
            close(fd);
            unlink(rk);
            free(rk);
            free(dir);
            return 1;
        }
        close(fd);
        sodium_memzero(key, sizeof key);
        so.root_key_file = rk;
        so.passphrase_file = NULL;
    } else if (!so.root_key_file && !so.passphrase_file) {
        pw = cli_prompt_passphrase("envelopefs: new key store passphrase: ");
        if (!pw) {
            fprintf(stderr, "envelopefs kms: init-store needs --generate-root-key, --root-key-file or --passphrase-file\n");
            free(dir);
            return EXIT_USAGE;
        }
        so.passphrase = pw;
    } else if (so.root_key_file && so.passphrase_file) {
        so.passphrase_file = NULL;
    }
    e = kms_store_init(&so, &msg);
    if (e) {
        fprintf(stderr, "envelopefs kms: %s: %s\n", kms_err_name(e), msg ? msg : kms_strerror(e));
        if (rk && e != KMS_ERR_ALREADY_EXISTS)
            unlink(rk);
        rc = e == KMS_ERR_ALREADY_EXISTS ? 1 : EXIT_SERVICE;
    } else {
        json_t *o = json_pack("{s:s, s:s}", "Store", dir, "Protection", so.root_key_file ? "root-key-file" : "passphrase");
        if (so.root_key_file)
            json_object_set_new(o, "RootKeyFile", json_string(so.root_key_file));
        json_dumpf(o, stdout, JSON_INDENT(4));
        printf("\n");
        json_decref(o);
    }
    free(msg);
    free(rk);
    if (pw)
        sodium_free(pw);
    free(dir);
    return rc;
}

static int create_access_key(int argc, char **argv, cli_kms_opts *g)
{
    const char *account = NULL, *user = NULL;
    char *akid = NULL, *secret = NULL;
    kmsc *c;
    kms_core *core;
    kms_err e;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--account") && i + 1 < argc)
            account = argv[++i];
        else if (!strcmp(argv[i], "--user") && i + 1 < argc)
            user = argv[++i];
        else
            return usage_error("create-access-key: unknown argument %s", argv[i]);
    }
    if (!user)
        return usage_error("%s", "create-access-key needs --user");
    c = cli_open_kms(g, NULL);
    if (!c)
        return EXIT_SERVICE;
    core = kmsc_embedded_core(c);
    if (!core) {
        kmsc_free(c);
        return usage_error("%s", "create-access-key works on a local store only");
    }
    e = kms_core_create_access_key(core, account ? account : kms_core_account(core), user, &akid, &secret);
    if (e) {
        fprintf(stderr, "An error occurred (%s) when calling the CreateAccessKey operation: %s\n", kms_err_name(e),
                kms_strerror(e));
        kmsc_free(c);
        return EXIT_SERVICE;
    }
    printf("{\n    \"AccessKey\": {\n        \"AccessKeyId\": \"%s\",\n        \"SecretAccessKey\": \"%s\",\n"
           "        \"Account\": \"%s\",\n        \"UserName\": \"%s\"\n    }\n}\n",
           akid, secret, account ? account : kms_core_account(core), user);
    free(akid);
    kms_secret_str_free(secret);
    kmsc_free(c);
    return 0;
}

int cmd_kms(int argc, char **argv)
{
    cli_kms_opts g;
    const struct verb *v = NULL;
    const char *query = NULL, *output = "json";
    json_t *req;
    char **rest;
    int nrest = 0, rc = 0;

    memset(&g, 0, sizeof g);
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    /* Pull out global options wherever they are. */
    rest = calloc((size_t)argc, sizeof *rest);
    if (!rest)
        return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--store"))
            slot = &g.store;
        else if (!strcmp(a, "--endpoint-url") || !strcmp(a, "--kms"))
            slot = &g.url;
        else if (!strcmp(a, "--root-key-file"))
            slot = &g.root_key_file;
        else if (!strcmp(a, "--passphrase-file"))
            slot = &g.passphrase_file;
        else if (!strcmp(a, "--region") && strcmp(argv[1], "init-store"))
            slot = &g.region;
        else if (!strcmp(a, "--query"))
            slot = &query;
        else if (!strcmp(a, "--output"))
            slot = &output;
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
    if (!strcmp(argv[1], "init-store")) {
        rc = init_store(nrest, rest, &g);
        free(rest);
        return rc;
    }
    if (!strcmp(argv[1], "create-access-key")) {
        rc = create_access_key(nrest, rest, &g);
        free(rest);
        return rc;
    }
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        if (!strcmp(VERBS[i].verb, argv[1]))
            v = &VERBS[i];
    if (!v) {
        free(rest);
        return usage_error("unknown operation '%s'", argv[1]);
    }
    req = json_object();
    for (int i = 0; i < nrest; i++) {
        const char *a = rest[i], *val;
        const struct flag *fl = NULL;
        json_t *jv = NULL;
        if (strncmp(a, "--", 2)) {
            json_decref(req);
            free(rest);
            return usage_error("unexpected argument %s", a);
        }
        for (const struct flag *f = v->flags; f->name; f++)
            if (!strcmp(f->name, a + 2))
                fl = f;
        if (!fl) {
            json_decref(req);
            free(rest);
            return usage_error("unknown option %s for this operation", a);
        }
        if (fl->type == F_BOOL) {
            json_object_set_new(req, fl->field, json_true());
            continue;
        }
        if (i + 1 >= nrest) {
            json_decref(req);
            free(rest);
            return usage_error("%s needs a value", a);
        }
        val = rest[++i];
        switch (fl->type) {
        case F_STR:
            jv = json_string(val);
            break;
        case F_INT: {
            char *end;
            long long n = strtoll(val, &end, 10);
            if (*end || !*val) {
                json_decref(req);
                free(rest);
                return usage_error("%s must be an integer", a);
            }
            jv = json_integer(n);
            break;
        }
        case F_BLOB:
            jv = blob_arg(val, fl->name);
            if (!jv) {
                json_decref(req);
                free(rest);
                return EXIT_USAGE;
            }
            break;
        case F_CTX:
            jv = ctx_arg(val);
            if (!jv) {
                json_decref(req);
                free(rest);
                return usage_error("%s takes k=v[,k2=v2] or a JSON object", a);
            }
            break;
        case F_TAGS:
        case F_LIST: {
            /* one or more values follow (until the next --flag) */
            jv = json_array();
            i--;
            while (i + 1 < nrest && strncmp(rest[i + 1], "--", 2)) {
                json_t *item = fl->type == F_TAGS ? tag_arg(rest[++i]) : json_string(rest[++i]);
                if (!item) {
                    json_decref(jv);
                    json_decref(req);
                    free(rest);
                    return usage_error("%s takes TagKey=k,TagValue=v ...", a);
                }
                json_array_append_new(jv, item);
            }
            break;
        }
        case F_BOOL:
            break;
        }
        json_object_set_new(req, fl->field, jv);
    }
    free(rest);
    {
        kmsc *c = cli_open_kms(&g, NULL);
        char *body, *resp = NULL;
        size_t resp_len = 0;
        kmsc_error err;
        kms_err e;
        if (!c) {
            json_decref(req);
            return EXIT_SERVICE;
        }
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        e = body ? kmsc_call(c, v->op, body, strlen(body), &resp, &resp_len, &err) : KMS_ERR_NOMEM;
        if (body) {
            sodium_memzero(body, strlen(body));
            free(body);
        }
        if (e) {
            fprintf(stderr, "An error occurred (%s) when calling the %s operation%s%s\n",
                    body ? err.name : kms_err_name(e), v->op, body && err.message[0] ? ": " : "",
                    body ? err.message : "");
            rc = EXIT_SERVICE;
        } else {
            json_t *out = json_loadb(resp, resp_len, 0, NULL);
            json_t *shown = out;
            if (query)
                shown = json_object_get(out, query);
            if (!shown) {
                fprintf(stderr, "envelopefs kms: the response has no field %s\n", query ? query : "");
                rc = 1;
            } else if (!strcmp(output, "text") && json_is_string(shown)) {
                printf("%s\n", json_string_value(shown));
            } else if (!strcmp(output, "text") && json_is_integer(shown)) {
                printf("%lld\n", (long long)json_integer_value(shown));
            } else if (json_is_object(shown) && json_object_size(shown) == 0) {
                /* like the AWS CLI: operations with an empty result print nothing */
            } else {
                json_dumpf(shown, stdout, JSON_INDENT(4) | JSON_ENCODE_ANY);
                printf("\n");
            }
            json_decref(out);
            kmsc_response_free(resp, resp_len);
        }
        kmsc_free(c);
    }
    return rc;
}
