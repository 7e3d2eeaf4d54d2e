/*
 * model.c — the checks AWS's service model makes before an operation runs (its request validation):
 * enum members (EncryptionAlgorithm, KeySpec, KeyUsage, Origin, …) must be values the model lists,
 * GrantTokens holds at most 10 tokens of 1-8192 characters, DryRun is a boolean on the operations
 * that take it (and ignored elsewhere, like any member the model does not list). A violation is a ValidationException (SerializationException for a wrong
 * type) before any key is looked at, as AWS answers — so an unknown algorithm is never reported as a
 * key-usage problem.
 */
#include "model.h"

#include <stdio.h>
#include <string.h>

#include "internal.h"

#define ALGS "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"
#define CMK_SPECS "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", \
                  "ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2"

static const struct enum_field {
    const char *op;    /* NULL: every operation with this field */
    const char *field;
    const char *values[24];
} ENUMS[] = {
    {NULL, "EncryptionAlgorithm", {ALGS, NULL}},
    {NULL, "SourceEncryptionAlgorithm", {ALGS, NULL}},
    {NULL, "DestinationEncryptionAlgorithm", {ALGS, NULL}},
    {"CreateKey", "KeySpec",
     {CMK_SPECS, "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519", NULL}},
    {"CreateKey", "CustomerMasterKeySpec", {CMK_SPECS, NULL}},
    {"CreateKey", "KeyUsage", {"SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", NULL}},
    {"CreateKey", "Origin", {"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE", NULL}},
    {"CreateCustomKeyStore", "CustomKeyStoreType", {"AWS_CLOUDHSM", "EXTERNAL_KEY_STORE", NULL}},
    {"GenerateDataKey", "KeySpec", {"AES_256", "AES_128", NULL}},
    {"GenerateDataKeyWithoutPlaintext", "KeySpec", {"AES_256", "AES_128", NULL}},
};

/* The operations whose model has DryRun. */
static const char *const DRY_RUN_OPS[] = {"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
                                          "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "ReEncrypt",
                                          "Sign", "Verify", "GenerateMac", "VerifyMac", "CreateGrant", "RetireGrant",
                                          "RevokeGrant"};

static kms_err enum_error(char **msg, const char *field, const char *value, const char *const *values)
{
    char set[512];
    size_t n = 0;
    set[0] = 0;
    for (size_t i = 0; values[i] && n < sizeof set; i++)
        n += (size_t)snprintf(set + n, sizeof set - n, "%s%s", i ? ", " : "", values[i]);
    kms_set_msg(msg,
                "1 validation error detected: Value '%.64s' at '%c%s' failed to satisfy constraint: Member must "
                "satisfy enum value set: [%s]",
                value, field[0] - 'A' + 'a', field + 1, set);
    return KMS_ERR_VALIDATION;
}

kms_err kms_model_check(const char *op, json_t *in, bool *dry_run, char **msg)
{
    json_t *v;
    *dry_run = false;
    for (size_t i = 0; i < sizeof ENUMS / sizeof ENUMS[0]; i++) {
        const struct enum_field *f = &ENUMS[i];
        const char *s;
        bool ok = false;
        if ((f->op && strcmp(f->op, op)) || !(v = json_object_get(in, f->field)))
            continue;
        if (!json_is_string(v)) {
            kms_set_msg(msg, "%s must be a string", f->field);
            return KMS_ERR_SERIALIZATION;
        }
        s = json_string_value(v);
        for (size_t j = 0; f->values[j] && !ok; j++)
            ok = !strcmp(s, f->values[j]);
        if (!ok)
            return enum_error(msg, f->field, s, f->values);
    }
    if ((v = json_object_get(in, "GrantTokens"))) {
        size_t i;
        json_t *t;
        if (!json_is_array(v)) {
            kms_set_msg(msg, "GrantTokens must be a list of strings");
            return KMS_ERR_SERIALIZATION;
        }
        if (json_array_size(v) > 10) {
            kms_set_msg(msg, "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member "
                             "must have length less than or equal to 10");
            return KMS_ERR_VALIDATION;
        }
        json_array_foreach(v, i, t) {
            if (!json_is_string(t)) {
                kms_set_msg(msg, "GrantTokens must be a list of strings");
                return KMS_ERR_SERIALIZATION;
            }
            if (!json_string_length(t) || json_string_length(t) > 8192) {
                kms_set_msg(msg, "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: "
                                 "Member must have length between 1 and 8192");
                return KMS_ERR_VALIDATION;
            }
        }
    }
    if ((v = json_object_get(in, "DryRun"))) {
        bool takes = false;
        for (size_t i = 0; i < sizeof DRY_RUN_OPS / sizeof DRY_RUN_OPS[0]; i++)
            takes |= !strcmp(op, DRY_RUN_OPS[i]);
        if (takes && !json_is_boolean(v)) {
            kms_set_msg(msg, "DryRun must be a boolean");
            return KMS_ERR_SERIALIZATION;
        }
        *dry_run = takes && json_is_true(v); /* elsewhere an unknown member, ignored as AWS does */
    }
    return KMS_OK;
}
