/*
 * errors.c — kms_err ↔ AWS exception names and one-line descriptions (kms_types.h), and the core's
 * error messages (kms_set_msg, internal.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelopefs/kms_types.h"
#include "internal.h"

static const struct {
    const char *name;
    const char *desc;
} table[KMS_ERR__COUNT] = {
    [KMS_OK] = {"OK", "success"},
    [KMS_ERR_NOT_FOUND] = {"NotFoundException", "the specified entity or resource could not be found"},
    [KMS_ERR_DISABLED] = {"DisabledException", "the key is disabled"},
    [KMS_ERR_INVALID_STATE] = {"KMSInvalidStateException", "the key is not in a valid state for this operation"},
    [KMS_ERR_INVALID_CIPHERTEXT] = {"InvalidCiphertextException", "the ciphertext or its encryption context is invalid"},
    [KMS_ERR_INCORRECT_KEY] = {"IncorrectKeyException", "the ciphertext was not encrypted under the specified key"},
    [KMS_ERR_VALIDATION] = {"ValidationException", "the request is not valid"},
    [KMS_ERR_ALREADY_EXISTS] = {"AlreadyExistsException", "the resource already exists"},
    [KMS_ERR_INVALID_ALIAS_NAME] = {"InvalidAliasNameException", "the alias name is not valid"},
    [KMS_ERR_INVALID_ARN] = {"InvalidArnException", "the ARN is not valid"},
    [KMS_ERR_INVALID_MARKER] = {"InvalidMarkerException", "the paging marker is not valid"},
    [KMS_ERR_INVALID_KEY_USAGE] = {"InvalidKeyUsageException", "the key usage does not allow this operation"},
    [KMS_ERR_UNSUPPORTED_OPERATION] = {"UnsupportedOperationException", "the operation is not supported"},
    [KMS_ERR_LIMIT_EXCEEDED] = {"LimitExceededException", "a limit was exceeded"},
    [KMS_ERR_TAG] = {"TagException", "the tags are not valid"},
    [KMS_ERR_ACCESS_DENIED] = {"AccessDeniedException", "the caller is not allowed to do this"},
    [KMS_ERR_THROTTLING] = {"ThrottlingException", "the request rate is too high"},
    [KMS_ERR_INTERNAL] = {"KMSInternalException", "internal error in the key service"},
    [KMS_ERR_DEPENDENCY_TIMEOUT] = {"DependencyTimeoutException", "the key service did not answer in time"},
    [KMS_ERR_UNKNOWN_OPERATION] = {"UnknownOperationException", "unknown operation"},
    [KMS_ERR_SERIALIZATION] = {"SerializationException", "the request body could not be parsed"},
    [KMS_ERR_DRY_RUN] = {"DryRunOperationException", "the request would have succeeded, but DryRun was set"},
    [KMS_ERR_INVALID_SIGNATURE] = {"KMSInvalidSignatureException", "the signature does not verify"},
    [KMS_ERR_INVALID_MAC] = {"KMSInvalidMacException", "the MAC does not verify"},
    [KMS_ERR_INCORRECT_KEY_MATERIAL] = {"IncorrectKeyMaterialException", "the key material is not the key's"},
    [KMS_ERR_EXPIRED_IMPORT_TOKEN] = {"ExpiredImportTokenException", "the import token has expired"},
    [KMS_ERR_INVALID_IMPORT_TOKEN] = {"InvalidImportTokenException", "the import token is not valid"},
    [KMS_ERR_MALFORMED_POLICY] = {"MalformedPolicyDocumentException", "the key policy is malformed"},
    [KMS_ERR_INVALID_GRANT_TOKEN] = {"InvalidGrantTokenException", "the grant token is not valid"},
    [KMS_ERR_INVALID_GRANT_ID] = {"InvalidGrantIdException", "the grant id is not valid"},
    [KMS_ERR_CKS_NOT_FOUND] = {"CustomKeyStoreNotFoundException", "no custom key store by that id or name"},
    [KMS_ERR_CKS_INVALID_STATE] = {"CustomKeyStoreInvalidStateException", "the custom key store's connection state does not allow this"},
    [KMS_ERR_CKS_HAS_CMKS] = {"CustomKeyStoreHasCMKsException", "the custom key store still holds keys"},
    [KMS_ERR_CKS_NAME_IN_USE] = {"CustomKeyStoreNameInUseException", "another custom key store has that name"},
    [KMS_ERR_HSM_NOT_FOUND] = {"CloudHsmClusterNotFoundException", "no configured HSM (PKCS#11 token) by that cluster id"},
    [KMS_ERR_HSM_IN_USE] = {"CloudHsmClusterInUseException", "the HSM cluster belongs to another custom key store"},
    [KMS_ERR_HSM_INVALID_CONFIG] = {"CloudHsmClusterInvalidConfigurationException", "the HSM (PKCS#11 module or token) is not usable"},
    [KMS_ERR_HSM_NOT_ACTIVE] = {"CloudHsmClusterNotActiveException", "the HSM is not active"},
    [KMS_ERR_HSM_NOT_RELATED] = {"CloudHsmClusterNotRelatedException", "the HSM cluster is not the custom key store's"},
    [KMS_ERR_INCORRECT_TRUST_ANCHOR] = {"IncorrectTrustAnchorException", "the trust anchor certificate is not the cluster's"},
    [KMS_ERR_MISSING_AUTH] = {"MissingAuthenticationTokenException", "the request is not signed"},
    [KMS_ERR_INCOMPLETE_SIGNATURE] = {"IncompleteSignatureException", "the request signature is malformed"},
    [KMS_ERR_SIGNATURE_MISMATCH] = {"InvalidSignatureException", "the request signature does not match"},
    [KMS_ERR_UNRECOGNIZED_CLIENT] = {"UnrecognizedClientException", "the access key id is not known"},
    [KMS_ERR_CLOCK_SKEW] = {"InvalidSignatureException", "signature expired: the request time is too far from the server's"},
    [KMS_ERR_BAD_PASSPHRASE] = {"BadPassphrase", "wrong passphrase or root key for this store"},
    [KMS_ERR_CORRUPT_STORE] = {"CorruptStore", "the key store is damaged"},
    [KMS_ERR_IO] = {"IOError", "I/O error on the key store"},
    [KMS_ERR_NOMEM] = {"OutOfMemory", "out of memory"},
    [KMS_ERR_TRANSPORT] = {"TransportError", "could not reach the key service"},
    [KMS_ERR_REMOTE] = {"RemoteError", "the key service returned an error"},
};

const char *kms_err_name(kms_err e)
{
    if ((unsigned)e >= KMS_ERR__COUNT || !table[e].name)
        return "KMSInternalException";
    return table[e].name;
}

const char *kms_strerror(kms_err e)
{
    if ((unsigned)e >= KMS_ERR__COUNT || !table[e].desc)
        return "unknown error";
    return table[e].desc;
}

kms_err kms_err_from_name(const char *name)
{
    const char *hash;

    if (!name)
        return KMS_ERR_REMOTE;
    hash = strrchr(name, '#');
    if (hash)
        name = hash + 1;
    if (!strcmp(name, "InvalidSignatureException"))
        return KMS_ERR_SIGNATURE_MISMATCH;
    for (int i = 1; i < KMS_ERR__COUNT; i++)
        if (table[i].name && !strcmp(table[i].name, name))
            return (kms_err)i;
    return KMS_ERR_REMOTE;
}

void kms_set_msg(char **msg, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    if (!msg)
        return;
    if (fmt) {
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
            s = NULL;
        va_end(ap);
    }
    free(*msg);
    *msg = s;
}
