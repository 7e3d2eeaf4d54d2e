/*
 * record.h — the text of one audit record: the CloudTrail-shaped JSON event the trail stores in its
 * `event` column (docs/FORMAT.md "Audit trail"), written directly from the record's fields instead of
 * being built as a jansson tree and dumped. The text is byte for byte what
 * json_dumps(JSON_COMPACT | JSON_SORT_KEYS) wrote of the tree trail.c used to build (members of every
 * object in the byte order of their keys; strings escaped as jansson escapes them), including where
 * jansson refused a string that is not UTF-8: the record fails (an unsanitised name of the store or its
 * caller), or the member is left out (errorMessage, a service's resource).
 *
 * Trees appear only where the record copies part of a request: requestParameters and responseElements
 * (the parsed request and response, of which only the fields of KMS_RECORD_REQ_FIELDS and
 * KMS_RECORD_RESP_FIELDS are copied: none holds a secret), and another service's own userIdentity.
 */
#ifndef ENVELOPEFS_KMS_RECORD_H
#define ENVELOPEFS_KMS_RECORD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "envelopefs/kms_types.h"

/* The fields a key-service record may copy from a request, and from a mutating call's response. */
extern const char *const KMS_RECORD_REQ_FIELDS[];
extern const size_t KMS_RECORD_REQ_NFIELDS;
extern const char *const KMS_RECORD_RESP_FIELDS[];
extern const size_t KMS_RECORD_RESP_NFIELDS;

/* A copied part of a call: tree NULL is null; with fields, only those members of an object (camelCased:
 * CloudTrail's names; none present, or tree not an object: null), without fields the whole tree. */
struct kms_record_part {
    const json_t *tree;
    const char *const *fields;
    size_t nfields;
};

/* One resource (accountId, type, ARN; a NULL member is left out). */
struct kms_record_resource {
    const char *account, *type, *arn;
};

/* One record's fields. Strings are borrowed and NUL-terminated; NULL means "not in the record" where a
 * member is optional. */
struct kms_record {
    const char *event_time; /* "YYYY-MM-DDTHH:MM:SSZ" */
    const char *event_source, *event_name, *region, *source_ip, *user_agent;
    /* userIdentity: identity (another service's view of its caller, an object) or the members below */
    const json_t *identity;
    const char *ui_type, *principal_id, *arn, *account_id;
    const char *access_key_id, *user_name, *invoked_by; /* optional */
    const kms_unix_peer *unix_peer;                     /* optional */
    const char *error_code;                             /* NULL: a success, no errorCode/errorMessage */
    const char *error_message;                          /* optional; at most error_message_len bytes */
    size_t error_message_len;
    struct kms_record_part request, response;
    const char *request_id, *event_id;
    const char *grant_id; /* optional: additionalEventData.grantId */
    bool read_only, management;
    const struct kms_record_resource *resources;
    size_t nresources;
    const char *recipient_account, *event_category;
};

/* The record's text, malloc'd and NUL-terminated, into *out (length *len): 0, or -1 on no memory or a
 * string jansson would have refused where the old tree's construction failed. */
int kms_record_text(const struct kms_record *r, char **out, size_t *len) __attribute__((warn_unused_result));

/* Whether s[0..n) is UTF-8 as jansson accepts it (no overlong forms, surrogates or code points past
 * U+10FFFF). */
bool kms_record_utf8(const char *s, size_t n);

#endif
