/*
 * kms_types.h — types shared by the key-service core (kms/), its server and the client library
 * (kmsclient/): the typed error code with its AWS exception name, the calling principal, and the
 * encryption context.
 *
 * Error convention of every kms* layer: functions return `kms_err` (KMS_OK == 0); a human-readable
 * message, when there is one, is returned separately. `kms_err_name()` gives the AWS exception name
 * (the `__type` of the wire protocol), `kms_strerror()` a one-line description.
 */
#ifndef ENVELOPEFS_KMS_TYPES_H
#define ENVELOPEFS_KMS_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KMS_WUR __attribute__((warn_unused_result))

typedef enum kms_err {
    KMS_OK = 0,
    /* AWS KMS exceptions (names as on the wire, see kms_err_name) */
    KMS_ERR_NOT_FOUND,               /* NotFoundException */
    KMS_ERR_DISABLED,                /* DisabledException */
    KMS_ERR_INVALID_STATE,           /* KMSInvalidStateException */
    KMS_ERR_INVALID_CIPHERTEXT,      /* InvalidCiphertextException */
    KMS_ERR_INCORRECT_KEY,           /* IncorrectKeyException */
    KMS_ERR_VALIDATION,              /* ValidationException */
    KMS_ERR_ALREADY_EXISTS,          /* AlreadyExistsException */
    KMS_ERR_INVALID_ALIAS_NAME,      /* InvalidAliasNameException */
    KMS_ERR_INVALID_ARN,             /* InvalidArnException */
    KMS_ERR_INVALID_MARKER,          /* InvalidMarkerException */
    KMS_ERR_INVALID_KEY_USAGE,       /* InvalidKeyUsageException */
    KMS_ERR_UNSUPPORTED_OPERATION,   /* UnsupportedOperationException */
    KMS_ERR_LIMIT_EXCEEDED,          /* LimitExceededException */
    KMS_ERR_TAG,                     /* TagException */
    KMS_ERR_ACCESS_DENIED,           /* AccessDeniedException */
    KMS_ERR_THROTTLING,              /* ThrottlingException */
    KMS_ERR_INTERNAL,                /* KMSInternalException */
    KMS_ERR_DEPENDENCY_TIMEOUT,      /* DependencyTimeoutException */
    KMS_ERR_UNKNOWN_OPERATION,       /* UnknownOperationException */
    KMS_ERR_SERIALIZATION,           /* SerializationException (malformed JSON body) */
    KMS_ERR_DRY_RUN,                 /* DryRunOperationException: DryRun set, and the call would be allowed */
    KMS_ERR_INVALID_SIGNATURE,       /* KMSInvalidSignatureException (Verify) */
    KMS_ERR_INVALID_MAC,             /* KMSInvalidMacException (VerifyMac) */
    KMS_ERR_INCORRECT_KEY_MATERIAL,  /* IncorrectKeyMaterialException (ImportKeyMaterial) */
    KMS_ERR_EXPIRED_IMPORT_TOKEN,    /* ExpiredImportTokenException */
    KMS_ERR_INVALID_IMPORT_TOKEN,    /* InvalidImportTokenException */
    KMS_ERR_MALFORMED_POLICY,        /* MalformedPolicyDocumentException */
    KMS_ERR_INVALID_GRANT_TOKEN,     /* InvalidGrantTokenException */
    KMS_ERR_INVALID_GRANT_ID,        /* InvalidGrantIdException */
    /* custom key stores (kms/cks.c) */
    KMS_ERR_CKS_NOT_FOUND,           /* CustomKeyStoreNotFoundException */
    KMS_ERR_CKS_INVALID_STATE,       /* CustomKeyStoreInvalidStateException */
    KMS_ERR_CKS_HAS_CMKS,            /* CustomKeyStoreHasCMKsException */
    KMS_ERR_CKS_NAME_IN_USE,         /* CustomKeyStoreNameInUseException */
    KMS_ERR_HSM_NOT_FOUND,           /* CloudHsmClusterNotFoundException */
    KMS_ERR_HSM_IN_USE,              /* CloudHsmClusterInUseException */
    KMS_ERR_HSM_INVALID_CONFIG,      /* CloudHsmClusterInvalidConfigurationException */
    KMS_ERR_HSM_NOT_ACTIVE,          /* CloudHsmClusterNotActiveException */
    KMS_ERR_HSM_NOT_RELATED,         /* CloudHsmClusterNotRelatedException */
    KMS_ERR_INCORRECT_TRUST_ANCHOR,  /* IncorrectTrustAnchorException */
    /* SigV4 / authentication (server side) */
    KMS_ERR_MISSING_AUTH,            /* MissingAuthenticationTokenException */
    KMS_ERR_INCOMPLETE_SIGNATURE,    /* IncompleteSignatureException */
    KMS_ERR_SIGNATURE_MISMATCH,      /* InvalidSignatureException */
    KMS_ERR_UNRECOGNIZED_CLIENT,     /* UnrecognizedClientException (unknown access key) */
    KMS_ERR_CLOCK_SKEW,              /* InvalidSignatureException, "Signature expired" */
    /* Local (not on the wire as such) */
    KMS_ERR_BAD_PASSPHRASE,          /* wrong passphrase / root key for the store */
    KMS_ERR_CORRUPT_STORE,           /* store database unreadable or fails its integrity checks */
    KMS_ERR_IO,                      /* local I/O failure (store directory, key files) */
    KMS_ERR_NOMEM,
    KMS_ERR_TRANSPORT,               /* client: could not reach the endpoint */
    KMS_ERR_REMOTE,                  /* client: an error name we do not know; see the kept name */
    KMS_ERR__COUNT
} kms_err;

/* AWS exception name, e.g. "NotFoundException". Never NULL. */
const char *kms_err_name(kms_err e);
/* One-line description. Never NULL. */
const char *kms_strerror(kms_err e);
/* Inverse of kms_err_name; accepts "prefix#Name" as SDKs do; unknown → KMS_ERR_REMOTE. */
kms_err kms_err_from_name(const char *name);

/*
 * Who is calling. Every key-service operation is made on behalf of a principal; the core's single
 * dispatch point (kms_core_call) receives it so that key policies, grants and the audit trail can be
 * applied in one place. Embedded callers use the store's own account with user "local".
 * Strings are borrowed for the duration of the call.
 */
typedef struct kms_principal {
    const char *account;     /* 12-digit account id, e.g. "111122223333" */
    const char *user;        /* user name, e.g. "alice" */
    const char *access_key;  /* access key id used to sign, or NULL for embedded calls */
    const char *source;      /* "embedded", "http:127.0.0.1:54321", ... for the audit trail */
    const char *user_agent;  /* the client's User-Agent (audit trail), or NULL */
    const char *source_ip;   /* the caller's address for aws:SourceIp conditions, or NULL (embedded) */
    const char *via_service; /* kms:ViaService when an AWS-shaped service calls on the principal's behalf */
    const struct kms_unix_peer *unix_peer; /* an unsigned caller on the server's Unix socket, known by its
                                              uid (SO_PEERCRED; audit trail), or NULL */
} kms_principal;

/* A Unix-socket caller's credentials as the kernel gave them when it connected. */
typedef struct kms_unix_peer {
    uint32_t uid, gid;
    int32_t pid;
} kms_unix_peer;

/* One encryption-context pair; strings are borrowed, NUL-terminated UTF-8. */
typedef struct kms_ectx_pair {
    const char *key;
    const char *value;
} kms_ectx_pair;

/* An encryption context: `n` pairs in any order (the canonical encoding sorts them). */
typedef struct kms_ectx {
    const kms_ectx_pair *pairs;
    size_t n;
} kms_ectx;

#ifdef __cplusplus
}
#endif
#endif
