/*
 * local.c — the embedded backend (`local:STORE_DIR`): the key-service core runs in this process and
 * calls go straight to kms_core_call as the store's account root, or as the principal kmsc_opts.as_user
 * names (`--as-user`), through the service kmsc_opts.via_service names (kms:ViaService) if one is set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

typedef struct local_impl {
    kms_core *core;
    kms_principal principal;
    char account[13], user[64], via[160];
} local_impl;

static kms_err local_call(void *p, const char *operation, const char *req, size_t req_len, char **resp,
                          size_t *resp_len, kmsc_error *err)
{
    local_impl *l = p;
    char *msg = NULL;
    kms_err e = kms_core_call(l->core, &l->principal, operation, req, req_len, resp, resp_len, &msg);
    if (e) {
        err->code = e;
        snprintf(err->name, sizeof err->name, "%s", kms_err_name(e));
        snprintf(err->message, sizeof err->message, "%s", msg ? msg : "");
        free(msg);
    }
    return e;
}

static void local_free(void *p)
{
    local_impl *l = p;
    if (!l)
        return;
    kms_core_free(l->core);
    free(l);
}

static const char *local_account(void *p) { return ((local_impl *)p)->principal.account; }

static const char *local_region(void *p) { return kms_core_region(((local_impl *)p)->core); }

static const kmsc_backend_ops LOCAL_OPS = {"local", local_call, local_free, local_account, NULL, NULL, local_region};

kms_err kmsc_backend_local_new(const kmsc_opts *opts, const char *store_dir, void **impl,
                               const kmsc_backend_ops **ops, char **errmsg)
{
    kms_store_opts so = {.store_dir = store_dir,
                         .root_key_file = opts->root_key_file,
                         .passphrase_file = opts->passphrase_file,
                         .passphrase = opts->passphrase};
    local_impl *l;
    kms_err e;

    if (!store_dir || !*store_dir) {
        if (errmsg)
            *errmsg = strdup("local: URL needs a store directory (local:/path/to/store)");
        return KMS_ERR_VALIDATION;
    }
    l = calloc(1, sizeof *l);
    if (!l)
        return KMS_ERR_NOMEM;
    e = kms_core_open(&so, &l->core, errmsg);
    if (e) {
        free(l);
        return e;
    }
    l->principal.account = kms_core_account(l->core);
    l->principal.user = "root";
    l->principal.source = "embedded";
    if (opts->as_user) {
        /* a principal ARN, or a user of the store's account */
        char arn[256];
        int n = strncmp(opts->as_user, "arn:", 4)
                    ? snprintf(arn, sizeof arn, "arn:aws:iam::%s:user/%s", l->principal.account, opts->as_user)
                    : snprintf(arn, sizeof arn, "%s", opts->as_user);
        if (n < 0 || (size_t)n >= sizeof arn || kms_principal_split(arn, l->account, l->user, sizeof l->user)) {
            if (errmsg)
                *errmsg = strdup("--as-user takes a user name or arn:aws:iam::ACCOUNT:root | arn:aws:iam::ACCOUNT:user/NAME");
            kms_core_free(l->core);
            free(l);
            return KMS_ERR_VALIDATION;
        }
        l->principal.account = l->account;
        l->principal.user = l->user;
    }
    if (opts->via_service && *opts->via_service) {
        int n = snprintf(l->via, sizeof l->via, "%s.%s.amazonaws.com", opts->via_service, kms_core_region(l->core));
        if (n < 0 || (size_t)n >= sizeof l->via) {
            if (errmsg)
                *errmsg = strdup("via_service: the service name is too long");
            kms_core_free(l->core);
            free(l);
            return KMS_ERR_VALIDATION;
        }
        l->principal.via_service = l->via;
    }
    *impl = l;
    *ops = &LOCAL_OPS;
    return KMS_OK;
}

kms_core *kmsc_backend_local_core(void *impl)
{
    return ((local_impl *)impl)->core;
}

const kms_principal *kmsc_backend_local_principal(void *impl)
{
    return &((local_impl *)impl)->principal;
}
