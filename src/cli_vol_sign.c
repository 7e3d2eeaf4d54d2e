/*
 * cli_vol_sign.c — signed snapshots on the command line (cli_vol_sign.h): signing after create-snapshot
 * and copy-snapshot, `volume sign`, `volume set-signing-key` and `volume fsck SNAP --verify-signature`,
 * which prints the verification as JSON and exits 1 naming what failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "cli_aws.h"
#include "cli_vol_sign.h"
#include "share.h"
#include "sign.h"

#define WHO "envelopefs volume"

static json_t *hexj(const uint8_t *p, size_t n)
{
    char h[2 * 64 + 1];
    if (n > 64)
        return json_null();
    sodium_bin2hex(h, sizeof h, p, n);
    return json_string(h);
}

static void add_sig_fields(json_t *o, const vol_signature *s)
{
    uint8_t d[32];
    if (!o)
        return;
    vol_manifest_digest(s->manifest, s->manifest_len, d);
    json_object_set_new(o, "SigningKeyId", json_string(s->key_arn));
    json_object_set_new(o, "SigningAlgorithm", json_string(s->algorithm));
    json_object_set_new(o, "ManifestDigest", hexj(d, 32));
}

int cli_vol_sign_new(const cli_vol *g, vol_store *st, const char *snap_id, const char *key_flag, const char *source_id,
                     vol_store *src_store, const char *op, json_t *o)
{
    vol_store *kst = st;
    vol_catalog *scat = vol_store_catalog(src_store ? src_store : st);
    kmsc *kms = NULL;
    vol_signature src, sig;
    vol_err e = {"", ""}, de = {"", ""};
    char *key = NULL;
    bool have_src;
    int rc = 0;
    memset(&src, 0, sizeof src);
    have_src = source_id && scat->ops->sig_get(scat, source_id, &src) == 0;
    if (key_flag && *key_flag) {
        key = strdup(key_flag);
    } else if (have_src && !src_store) {
        key = strdup(src.key_arn); /* a copy of a signed snapshot is signed again, by the same key unless named */
    } else if (vol_signing_default(st, &key)) {
        if (have_src) /* from another region: the source's key is that region's */
            fprintf(stderr, WHO ": the copy %s of the signed snapshot %s is not signed: its key %s is another region's "
                    "(give --signing-key-id, or volume set-signing-key, in this one)\n", snap_id, source_id, src.key_arn);
        vol_signature_clear(&src);
        return 0; /* nothing asks for a signature */
    }
    if (!key) {
        vol_signature_clear(&src);
        return cli_service_error("InternalError", op, "out of memory");
    }
    if (!vol_store_kms(st) && !(kst = cli_vol_open(g, true, &kms, op))) {
        kst = st;
        rc = CLI_EXIT_SERVICE;
        goto undo;
    }
    if (vol_sign_snapshot(kst, vol_store_kms(kst), snap_id, key, source_id, have_src ? &src : NULL, &sig, &e)) {
        rc = cli_service_error(e.code[0] ? e.code : "InternalError", op, e.message);
        goto undo;
    }
    add_sig_fields(o, &sig);
    vol_signature_clear(&sig);
    goto out;
undo:
    /* signing was asked for: no unsigned snapshot is left behind */
    if (vol_delete_snapshot(st, snap_id, &de))
        fprintf(stderr, WHO ": the unsigned snapshot %s could not be deleted: %s\n", snap_id, de.message);
out:
    if (kst != st)
        vol_store_free(kst);
    kmsc_free(kms);
    vol_signature_clear(&src);
    free(key);
    return rc;
}

int cli_volume_sign(cli_vol *g)
{
    const char *id = NULL, *key = NULL;
    vol_store *st;
    kmsc *kms;
    vol_signature sig, src;
    vol_err e = {"", ""};
    char *dflt = NULL;
    json_t *o;
    int rc;
    for (int i = 1; i < g->nrest; i++) {
        if (!strcmp(g->rest[i], "--signing-key-id") && i + 1 < g->nrest)
            key = g->rest[++i];
        else if (g->rest[i][0] == '-' || id) {
            fprintf(stderr, "usage: " WHO " sign SNAP [--signing-key-id KEY]\n");
            return CLI_EXIT_USAGE;
        } else
            id = g->rest[i];
    }
    if (!id) {
        fprintf(stderr, "usage: " WHO " sign SNAP [--signing-key-id KEY]\n");
        return CLI_EXIT_USAGE;
    }
    if (!(st = cli_vol_open(g, true, &kms, "SignSnapshot")))
        return CLI_EXIT_SERVICE;
    if (vol_snapshot_for_caller(st, id, true, NULL, &e)) { /* only its owner signs it */
        rc = cli_service_error(e.code, "SignSnapshot", e.message);
        goto out;
    }
    memset(&src, 0, sizeof src);
    if (!key && vol_store_catalog(st)->ops->sig_get(vol_store_catalog(st), id, &src) == 0 && (dflt = strdup(src.key_arn)))
        key = dflt; /* re-sign with the key that signed it */
    vol_signature_clear(&src);
    if (!key && vol_signing_default(st, &dflt) == 0)
        key = dflt;
    if (!key) {
        rc = cli_service_error("MissingParameter", "SignSnapshot", "no --signing-key-id and no default signing key "
                               "(volume set-signing-key)");
        goto out;
    }
    { /* a copy re-signed keeps naming its source, and carries its source's record on (from its earlier one) */
        vol_signature old, from;
        memset(&old, 0, sizeof old);
        memset(&from, 0, sizeof from);
        if (vol_store_catalog(st)->ops->sig_get(vol_store_catalog(st), id, &old) == 0 && old.source_manifest) {
            from.manifest = old.source_manifest, from.manifest_len = old.source_manifest_len;
            from.signature = old.source_signature, from.signature_len = old.source_signature_len;
            snprintf(from.key_arn, sizeof from.key_arn, "%s", old.source_key_arn);
            snprintf(from.algorithm, sizeof from.algorithm, "%s", old.source_algorithm);
        }
        rc = vol_sign_snapshot(st, kms, id, key, old.source_id[0] ? old.source_id : NULL, from.manifest ? &from : NULL,
                               &sig, &e);
        vol_signature_clear(&old);
        if (rc) {
            rc = cli_service_error(e.code[0] ? e.code : "InternalError", "SignSnapshot", e.message);
            goto out;
        }
    }
    o = json_pack("{s:s}", "SnapshotId", id);
    add_sig_fields(o, &sig);
    vol_signature_clear(&sig);
    rc = cli_vol_print(g, WHO, o);
out:
    free(dflt);
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

int cli_volume_set_signing_key(cli_vol *g)
{
    const char *key = g->nrest == 2 ? g->rest[1] : NULL;
    bool clear = key && (!strcmp(key, "none") || !strcmp(key, "--none"));
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    char *arn = NULL;
    int rc;
    if (!key) {
        fprintf(stderr, "usage: " WHO " set-signing-key KEY|none\n");
        return CLI_EXIT_USAGE;
    }
    if (!(st = cli_vol_open(g, !clear, &kms, "SetSigningKey")))
        return CLI_EXIT_SERVICE;
    if (vol_set_signing_default(st, kms, clear ? NULL : key, &arn, &e))
        rc = cli_service_error(e.code[0] ? e.code : "InternalError", "SetSigningKey", e.message);
    else
        rc = cli_vol_print(g, WHO, json_pack("{s:o}", "SigningKeyId", arn ? json_string(arn) : json_null()));
    free(arn);
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}

static const char *verdict_name(vol_verdict v)
{
    switch (v) {
    case VOL_VERIFY_OK: return "Valid";
    case VOL_VERIFY_UNSIGNED: return "NoSignature";
    case VOL_VERIFY_BAD_RECORD: return "MalformedManifest";
    case VOL_VERIFY_SIG_INVALID: return "SignatureInvalid";
    case VOL_VERIFY_MISMATCH: return "ManifestMismatch";
    case VOL_VERIFY_DAMAGED: return "DamagedBlocks";
    case VOL_VERIFY_SOURCE_INVALID: return "SourceSignatureInvalid";
    }
    return "Unknown";
}

static json_t *tri(int v) { return v < 0 ? json_null() : json_boolean(v == 1); }

int cli_volume_verify(cli_vol *g)
{
    const char *id = NULL;
    vol_verify_opts vo = {NULL, NULL, NULL, true};
    vol_verify_result r;
    vol_store *st;
    kmsc *kms;
    vol_err e = {"", ""};
    json_t *o;
    int rc;
    for (int i = 1; i < g->nrest; i++) {
        const char *a = g->rest[i];
        if (!strcmp(a, "--verify-signature"))
            continue;
        if (!strcmp(a, "--public-key") && i + 1 < g->nrest)
            vo.public_key = g->rest[++i];
        else if (!strcmp(a, "--source-public-key") && i + 1 < g->nrest)
            vo.source_public_key = g->rest[++i];
        else if (!strcmp(a, "--signing-key-id") && i + 1 < g->nrest)
            vo.expect_key = g->rest[++i];
        else if (!strcmp(a, "--no-authenticate"))
            vo.authenticate = false;
        else if (a[0] != '-' && !id)
            id = a;
        else {
            fprintf(stderr, "usage: " WHO " fsck SNAP --verify-signature [--public-key FILE.pem] [--source-public-key "
                            "FILE.pem] [--signing-key-id KEY] [--no-authenticate]\n");
            return CLI_EXIT_USAGE;
        }
    }
    if (!id || !vol_id_valid("snap-", id))
        return cli_service_error("InvalidParameterValue", "Fsck", "--verify-signature checks a snapshot: expecting a "
                                 "snap-… id");
    /* offline (--public-key --no-authenticate): no key service at all */
    if (!(st = cli_vol_open(g, !(vo.public_key && !vo.authenticate), &kms, "Fsck")))
        return CLI_EXIT_SERVICE;
    /* anyone who may see it may check it (a shared snapshot's receiver too); offline there is no caller */
    if (kms && vol_snapshot_for_caller(st, id, false, NULL, &e)) {
        rc = cli_service_error(e.code, "Fsck", e.message);
        goto out;
    }
    if ((rc = vol_verify_snapshot(st, kms, id, &vo, &r, &e))) {
        rc = cli_service_error(e.code[0] ? e.code : "InternalError", "Fsck", e.message);
        goto out;
    }
    o = json_pack("{s:s, s:b, s:s}", "SnapshotId", id, "Signed", r.verdict != VOL_VERIFY_UNSIGNED, "Result",
                  verdict_name(r.verdict));
    if (r.verdict != VOL_VERIFY_UNSIGNED && r.verdict != VOL_VERIFY_BAD_RECORD) {
        json_object_set_new(o, "SigningKeyId", json_string(r.sig.key_arn));
        json_object_set_new(o, "SigningAlgorithm", json_string(r.sig.algorithm));
        json_object_set_new(o, "VerifiedWith", json_string(vo.public_key ? "PublicKey" : "KMS"));
        json_object_set_new(o, "SignatureValid", tri(r.sig_valid));
        json_object_set_new(o, "SignedManifestDigest", hexj(r.recorded_digest, 32));
        json_object_set_new(o, "ManifestDigest", hexj(r.current_digest, 32));
        json_object_set_new(o, "ManifestMatches", json_boolean(!r.field));
        json_object_set_new(o, "FirstDifferingField", r.field ? json_string(r.field) : json_null());
        json_object_set_new(o, "FirstDifferingBlock", r.have_block ? json_integer((json_int_t)r.block) : json_null());
        json_object_set_new(o, "Blocks", json_integer((json_int_t)r.scan.n));
        json_object_set_new(o, "SectorsAuthenticated", json_boolean(r.scan.authenticated));
        json_object_set_new(o, "DamagedBlocks", json_integer((json_int_t)r.scan.damaged));
        if (r.auth_error[0])
            json_object_set_new(o, "AuthenticationSkipped", json_string(r.auth_error));
        if (r.sig.source_id[0]) {
            json_t *s = json_pack("{s:s}", "SnapshotId", r.sig.source_id);
            if (r.has_source) {
                uint8_t d[32];
                vol_manifest_digest(r.sig.source_manifest, r.sig.source_manifest_len, d);
                json_object_set_new(s, "SigningKeyId", json_string(r.sig.source_key_arn));
                json_object_set_new(s, "ManifestDigest", hexj(d, 32));
                json_object_set_new(s, "SignatureValid", tri(r.source_valid));
                json_object_set_new(s, "SameBlocks", json_boolean(r.same_blocks));
                if (r.source_error[0])
                    json_object_set_new(s, "SignatureNotChecked", json_string(r.source_error));
            } else {
                json_object_set_new(s, "Signed", json_false());
            }
            json_object_set_new(o, "Source", s);
        }
    }
    if (r.detail[0] && r.verdict != VOL_VERIFY_OK)
        json_object_set_new(o, "Error", json_string(r.detail));
    rc = cli_vol_print(g, WHO, o);
    if (!rc && r.verdict != VOL_VERIFY_OK) {
        fprintf(stderr, WHO " fsck: %s: %s\n", id, r.detail);
        rc = 1;
    }
    vol_verify_result_clear(&r);
out:
    vol_store_free(st);
    kmsc_free(kms);
    return rc;
}
