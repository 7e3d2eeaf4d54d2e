/*
 * sign.c — signed snapshots (sign.h): the manifest recomputed from the store, Sign and Verify through
 * the key service (kmsc_call with AWS's JSON shapes), offline verification with OpenSSL, and the
 * catalog record of each signature.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "rekey.h"
#include "sector.h"
#include "sign.h"

#define SETTING "signing_key_id"

/* ---- key service calls ---- */

static char *b64(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (s)
        sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

static int unb64(const char *s, uint8_t **out, size_t *len)
{
    size_t n = strlen(s), got = 0;
    uint8_t *b = malloc(n + 1);
    if (!b)
        return -ENOMEM;
    if (sodium_base642bin(b, n + 1, s, n, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL)) {
        free(b);
        return -EBADMSG;
    }
    *out = b;
    *len = got;
    return 0;
}

/* Call op with the JSON object req (consumed); *resp the parsed answer. */
static kms_err call(kmsc *kms, const char *op, json_t *req, json_t **resp, kmsc_error *ke)
{
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL, *r = NULL;
    size_t rlen = 0;
    kms_err k;
    json_decref(req);
    memset(ke, 0, sizeof *ke);
    *resp = NULL;
    if (!body)
        return KMS_ERR_INTERNAL;
    k = kmsc_call(kms, op, body, strlen(body), &r, &rlen, ke);
    free(body);
    if (k)
        return k;
    *resp = json_loadb(r, rlen, 0, NULL);
    kmsc_response_free(r, rlen);
    return *resp ? KMS_OK : KMS_ERR_INTERNAL;
}

/* The key's ARN and the algorithm we sign with: ECDSA_SHA_256 (ECC_NIST_P256) or RSASSA_PSS_SHA_256 (RSA). */
static int signing_key(kmsc *kms, const char *key_id, char *arn, size_t arncap, char *alg, size_t algcap, vol_err *e)
{
    kmsc_error ke;
    json_t *r, *md;
    const char *spec, *usage, *a;
    kms_err k = call(kms, "DescribeKey", json_pack("{s:s}", "KeyId", key_id), &r, &ke);
    int rc = 0;
    if (k == KMS_ERR_NOT_FOUND || k == KMS_ERR_INVALID_ARN || k == KMS_ERR_VALIDATION)
        return vol_fail(e, -ENOENT, "InvalidKmsKey.NotFound", "The KMS key %s does not exist%s%s", key_id,
                        ke.message[0] ? ": " : "", ke.message);
    if (k)
        return vol_kms_fail(e, k, &ke);
    md = json_object_get(r, "KeyMetadata");
    spec = json_string_value(json_object_get(md, "KeySpec"));
    if (!spec)
        spec = json_string_value(json_object_get(md, "CustomerMasterKeySpec"));
    usage = json_string_value(json_object_get(md, "KeyUsage"));
    a = json_string_value(json_object_get(md, "Arn"));
    if (!a || !spec || !usage) {
        rc = vol_fail(e, -EIO, "InternalError", "DescribeKey of %s returned no Arn, KeySpec or KeyUsage", key_id);
    } else if (strcmp(usage, "SIGN_VERIFY")) {
        rc = vol_fail(e, -EINVAL, "InvalidParameterValue", "the signing key %s has KeyUsage %s, not SIGN_VERIFY", key_id,
                      usage);
    } else if (!strcmp(spec, "ECC_NIST_P256")) {
        snprintf(alg, algcap, "ECDSA_SHA_256");
    } else if (!strncmp(spec, "RSA_", 4)) {
        snprintf(alg, algcap, "RSASSA_PSS_SHA_256");
    } else {
        rc = vol_fail(e, -EINVAL, "InvalidParameterValue", "the signing key %s is %s: snapshot manifests are signed "
                      "with ECC_NIST_P256 or RSA keys (a SHA-256 digest)", key_id, spec);
    }
    if (!rc)
        snprintf(arn, arncap, "%s", a);
    json_decref(r);
    return rc;
}

int vol_signing_default(vol_store *st, char **key)
{
    vol_catalog *cat = vol_store_catalog(st);
    return cat->ops->setting_get(cat, SETTING, key);
}

int vol_set_signing_default(vol_store *st, kmsc *kms, const char *key_id, char **arn, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    char a[256], alg[32];
    int rc;
    *arn = NULL;
    if (!key_id)
        return (rc = cat->ops->setting_delete(cat, SETTING)) ? vol_fail(e, rc, "InternalError", "cannot clear the "
                                                                           "signing key") : 0;
    if ((rc = signing_key(kms, key_id, a, sizeof a, alg, sizeof alg, e)))
        return rc;
    if ((rc = cat->ops->setting_set(cat, SETTING, a)))
        return vol_fail(e, rc, "InternalError", "cannot record the signing key");
    if (!(*arn = strdup(a)))
        return vol_fail(e, -ENOMEM, "InternalError", "out of memory");
    return 0;
}

/* ---- the manifest from the store ---- */

struct scan {
    vol_store *st;
    const vol_keyring *ring;
    vol_manifest_scan *out;
    vol_map_hash mh;
    vol_sealer *sealer;
    uint8_t *buf, *pt;
    size_t cap;
};

/* Is the chunk bytes in buf the intact chunk gen of block (header, every sector under its key)? */
static bool chunk_intact(struct scan *s, uint64_t block, uint64_t gen)
{
    vol_catalog *cat = vol_store_catalog(s->st);
    vol_chunk k;
    uint8_t key[32], lin[VOL_LINEAGE_LEN];
    const uint8_t *dk;
    unsigned ver = 0;
    bool ok = true;
    if (cat->ops->chunk_get(cat, gen, &k) || !(dk = vol_keyring_find(s->ring, k.lineage)) ||
        vol_lineage_bin(k.lineage, lin) || vol_chunk_header_check(s->buf, VOL_CHUNK_HDR, lin, block, gen, &ver) ||
        vol_chunk_key(dk, lin, block, gen, key))
        return false;
    for (unsigned i = 0; i < VOL_SECTORS && ok; i++) {
        uint32_t got;
        ok = vol_chunk_image_open(s->sealer, key, lin, block, gen, ver, i, k.ctr[i], s->buf, s->pt, &got) == 0;
    }
    sodium_memzero(key, sizeof key);
    return ok;
}

static int scan_one(void *arg, uint64_t block, uint64_t gen)
{
    struct scan *s = arg;
    vol_manifest_scan *o = s->out;
    vol_chunkstore *cs = vol_store_chunks(s->st);
    bool ok;
    if (o->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        uint64_t *b = realloc(o->block, cap * sizeof *b);
        uint8_t(*h)[32];
        if (!b)
            return -ENOMEM;
        o->block = b;
        if (!(h = realloc(o->sha, cap * sizeof *h)))
            return -ENOMEM;
        o->sha = h;
        s->cap = cap;
    }
    /* the chunk's stored bytes: the whole chunk file image of its header's version (docs/FORMAT.md),
     * unwritten (sparse) slots as zeros */
    if (cs->ops->pread(cs, gen, s->buf, VOL_CHUNK_FILE_SIZE, 0)) {
        memset(o->sha[o->n], 0, 32); /* missing: no digest can match */
        ok = false;
    } else {
        crypto_hash_sha256(o->sha[o->n], s->buf, vol_chunk_stored_size(s->buf));
        ok = !s->ring || chunk_intact(s, block, gen);
    }
    if (!ok && !o->damaged++)
        o->first_damaged = block;
    vol_map_hash_add(&s->mh, block, o->sha[o->n]);
    o->block[o->n++] = block;
    return 0;
}

void vol_manifest_scan_clear(vol_manifest_scan *s)
{
    if (!s)
        return;
    free(s->block);
    free(s->sha);
    memset(s, 0, sizeof *s);
}

int vol_manifest_scan_run(vol_store *st, const char *snap_id, const vol_keyring *ring, const char *source_id,
                          const uint8_t *source_sha256, vol_manifest_scan *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    struct scan s;
    vol_snapshot snap;
    vol_lineage lin;
    int rc;
    memset(out, 0, sizeof *out);
    memset(&s, 0, sizeof s);
    if (sodium_init() < 0) /* offline, no key service has initialised it */
        return vol_fail(e, -ENOMEM, "InternalError", "libsodium cannot start");
    s.st = st;
    s.ring = ring;
    s.out = out;
    if ((rc = cat->ops->snapshot_get(cat, snap_id, &snap)))
        return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", snap_id);
    if (strcmp(snap.state, "completed")) {
        rc = vol_fail(e, -EBUSY, "IncorrectState", "Snapshot '%s' is in the '%s' state.", snap_id, snap.state);
        vol_snapshot_clear(&snap);
        return rc;
    }
    if ((rc = vol_lineage_of(st, snap.lineage, &lin, e))) {
        vol_snapshot_clear(&snap);
        return rc;
    }
    snprintf(out->m.snapshot_id, sizeof out->m.snapshot_id, "%s", snap.id);
    snprintf(out->m.volume_id, sizeof out->m.volume_id, "%s", snap.volume_id);
    out->m.size_gib = snap.volume_size;
    snprintf(out->m.key_arn, sizeof out->m.key_arn, "%s", lin.key_arn);
    crypto_hash_sha256(out->m.wrapped_sha256, lin.wrapped, lin.wrapped_len);
    out->m.created = snap.completed;
    if (source_id)
        snprintf(out->m.source_id, sizeof out->m.source_id, "%s", source_id);
    if (source_sha256)
        memcpy(out->m.source_sha256, source_sha256, 32);
    rc = vol_lineage_bin(lin.id, out->m.lineage);
    vol_lineage_clear(&lin);
    vol_snapshot_clear(&snap);
    if (rc)
        return vol_fail(e, -EIO, "InternalError", "snapshot %s: malformed lineage id", snap_id);
    if (!(s.buf = malloc(VOL_CHUNK_FILE_SIZE)) || !(s.pt = sodium_malloc(VOL_SECTOR_SIZE)) ||
        !(s.sealer = vol_sealer_new())) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    vol_map_hash_init(&s.mh);
    if ((rc = cat->ops->map_list(cat, snap_id, scan_one, &s))) {
        rc = vol_fail(e, rc, "InternalError", "cannot read the block map of %s: %s", snap_id, strerror(-rc));
        goto out;
    }
    vol_map_hash_final(&s.mh, out->m.map_sha256);
    out->m.blocks = out->n;
    out->authenticated = ring != NULL;
out:
    free(s.buf);
    if (s.pt)
        sodium_free(s.pt);
    vol_sealer_free(s.sealer);
    if (rc)
        vol_manifest_scan_clear(out);
    return rc;
}

/* ---- signing ---- */

int vol_sign_snapshot(vol_store *st, kmsc *kms, const char *snap_id, const char *key_id, const char *source_id,
                      const vol_signature *src, vol_signature *out, vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_signature sig;
    vol_manifest_scan scan;
    vol_keyring ring = {NULL, 0};
    vol_snapshot snap;
    uint8_t enc[VOL_MANIFEST_MAX], digest[32], src_digest[32];
    size_t len = 0;
    char *m64 = NULL;
    const char *s64;
    json_t *r = NULL;
    kmsc_error ke;
    kms_err k;
    int rc;
    bool have_src = src && src->manifest && src->signature;

    memset(&sig, 0, sizeof sig);
    memset(&scan, 0, sizeof scan);
    if (out)
        memset(out, 0, sizeof *out);
    if ((rc = signing_key(kms, key_id, sig.key_arn, sizeof sig.key_arn, sig.algorithm, sizeof sig.algorithm, e)))
        return rc;
    if ((rc = cat->ops->snapshot_get(cat, snap_id, &snap)))
        return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", snap_id);
    rc = vol_owner_keys(st, snap_id, snap.lineage, &ring, e);
    vol_snapshot_clear(&snap);
    if (rc)
        return rc;
    if (have_src)
        vol_manifest_digest(src->manifest, src->manifest_len, src_digest);
    if ((rc = vol_manifest_scan_run(st, snap_id, &ring, source_id, have_src ? src_digest : NULL, &scan, e)))
        goto out;
    if (scan.damaged) {
        rc = vol_fail(e, -EIO, "InternalError", "snapshot %s is damaged (block %" PRIu64 " and %" PRIu64 " more fail "
                      "authentication; see volume fsck): not signing it", snap_id, scan.first_damaged, scan.damaged - 1);
        goto out;
    }
    if ((rc = vol_manifest_encode(&scan.m, enc, sizeof enc, &len))) {
        rc = vol_fail(e, rc, "InternalError", "snapshot %s: its manifest does not encode", snap_id);
        goto out;
    }
    vol_manifest_digest(enc, len, digest);
    if (!(m64 = b64(digest, sizeof digest))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    k = call(kms, "Sign", json_pack("{s:s, s:s, s:s, s:s}", "KeyId", sig.key_arn, "Message", m64, "MessageType", "DIGEST",
                                    "SigningAlgorithm", sig.algorithm), &r, &ke);
    if (k) {
        rc = vol_kms_fail(e, k, &ke);
        goto out;
    }
    if (!(s64 = json_string_value(json_object_get(r, "Signature"))) || unb64(s64, &sig.signature, &sig.signature_len)) {
        rc = vol_fail(e, -EIO, "InternalError", "Sign returned no signature");
        goto out;
    }
    snprintf(sig.snapshot_id, sizeof sig.snapshot_id, "%s", snap_id);
    if (!(sig.manifest = malloc(len))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    memcpy(sig.manifest, enc, len);
    sig.manifest_len = len;
    sig.signed_at = time(NULL);
    if (source_id && *source_id)
        snprintf(sig.source_id, sizeof sig.source_id, "%s", source_id);
    if (have_src) { /* the source's record travels with the copy: the chain can be checked without the source */
        if (!(sig.source_manifest = malloc(src->manifest_len)) || !(sig.source_signature = malloc(src->signature_len))) {
            rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
            goto out;
        }
        memcpy(sig.source_manifest, src->manifest, src->manifest_len);
        sig.source_manifest_len = src->manifest_len;
        memcpy(sig.source_signature, src->signature, src->signature_len);
        sig.source_signature_len = src->signature_len;
        snprintf(sig.source_key_arn, sizeof sig.source_key_arn, "%s", src->key_arn);
        snprintf(sig.source_algorithm, sizeof sig.source_algorithm, "%s", src->algorithm);
    }
    if ((rc = cat->ops->begin(cat)) || (rc = cat->ops->sig_put(cat, &sig)) || (rc = cat->ops->digest_drop(cat, snap_id)))
        goto dberr;
    for (size_t i = 0; i < scan.n; i++)
        if ((rc = cat->ops->digest_put(cat, snap_id, scan.block[i], scan.sha[i])))
            goto dberr;
    if ((rc = cat->ops->commit(cat)))
        goto dberr;
    if (out) {
        *out = sig;
        memset(&sig, 0, sizeof sig);
    }
    goto out;
dberr:
    cat->ops->rollback(cat);
    rc = vol_fail(e, rc, "InternalError", "the volume catalog refused the signature: %s", strerror(-rc));
out:
    json_decref(r);
    free(m64);
    vol_manifest_scan_clear(&scan);
    vol_keyring_clear(&ring);
    vol_signature_clear(&sig);
    return rc;
}

/* ---- verification ---- */

static EVP_PKEY *load_public_key(const char *path, vol_err *e)
{
    FILE *f = fopen(path, "rbe");
    EVP_PKEY *k = NULL;
    if (!f) {
        vol_fail(e, -errno, "InvalidParameterValue", "cannot open the public key %s: %s", path, strerror(errno));
        return NULL;
    }
    k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!k && fseek(f, 0, SEEK_SET) == 0)
        k = d2i_PUBKEY_fp(f, NULL); /* DER, as GetPublicKey returns it */
    fclose(f);
    if (!k)
        vol_fail(e, -EINVAL, "InvalidParameterValue", "%s holds no PEM or DER public key (SubjectPublicKeyInfo)", path);
    return k;
}

static int verify_offline(const char *pem, const char *alg, const uint8_t digest[32], const uint8_t *sig, size_t sig_len,
                          vol_err *e)
{
    EVP_PKEY *k = load_public_key(pem, e);
    EVP_PKEY_CTX *c = NULL;
    bool rsa = !strcmp(alg, "RSASSA_PSS_SHA_256"), ec = !strcmp(alg, "ECDSA_SHA_256");
    int rc, v;
    if (!k)
        return -EINVAL;
    if (!rsa && !ec) {
        rc = vol_fail(e, -EINVAL, "InvalidParameterValue", "unknown signing algorithm %s", alg);
        goto out;
    }
    if ((rsa && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) || (ec && EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)) {
        rc = 0; /* a key of another type did not make this signature */
        goto out;
    }
    if (!(c = EVP_PKEY_CTX_new(k, NULL)) || EVP_PKEY_verify_init(c) != 1 ||
        EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) != 1 ||
        (rsa && (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) != 1 ||
                 EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) != 1 ||
                 EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) != 1))) {
        rc = vol_fail(e, -EIO, "InternalError", "OpenSSL cannot set up the verification");
        goto out;
    }
    v = EVP_PKEY_verify(c, sig, sig_len, digest, 32);
    rc = v == 1 ? 1 : 0;
out:
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(k);
    return rc;
}

int vol_verify_digest(kmsc *kms, const char *key_id, const char *pem, const char *algorithm, const uint8_t digest[32],
                      const uint8_t *sig, size_t sig_len, vol_err *e)
{
    char *m64 = NULL, *s64 = NULL;
    json_t *r = NULL;
    kmsc_error ke;
    kms_err k;
    int rc;
    if (pem)
        return verify_offline(pem, algorithm, digest, sig, sig_len, e);
    if (!kms)
        return vol_fail(e, -EINVAL, "InternalError", "no key service to verify with");
    if (!(m64 = b64(digest, 32)) || !(s64 = b64(sig, sig_len))) {
        rc = vol_fail(e, -ENOMEM, "InternalError", "out of memory");
        goto out;
    }
    k = call(kms, "Verify", json_pack("{s:s, s:s, s:s, s:s, s:s}", "KeyId", key_id, "Message", m64, "MessageType", "DIGEST",
                                      "Signature", s64, "SigningAlgorithm", algorithm), &r, &ke);
    if (k == KMS_ERR_INVALID_SIGNATURE)
        rc = 0;
    else if (k)
        rc = vol_kms_fail(e, k, &ke);
    else
        rc = json_is_true(json_object_get(r, "SignatureValid")) ? 1 : 0;
out:
    json_decref(r);
    free(m64);
    free(s64);
    return rc;
}

struct recorded {
    vol_map_hash mh;
    uint64_t *block;
    uint8_t (*sha)[32];
    size_t n, cap;
};
static int add_recorded(void *arg, uint64_t block, const uint8_t *sha)
{
    struct recorded *r = arg;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        uint64_t *b = realloc(r->block, cap * sizeof *b);
        uint8_t(*h)[32];
        if (!b)
            return -ENOMEM;
        r->block = b;
        if (!(h = realloc(r->sha, cap * sizeof *h)))
            return -ENOMEM;
        r->sha = h;
        r->cap = cap;
    }
    vol_map_hash_add(&r->mh, block, sha);
    r->block[r->n] = block;
    memcpy(r->sha[r->n++], sha, 32);
    return 0;
}

/* The first block whose digest differs between the signed list (authenticated: its map digest is the
 * signed one) and the store's. */
static void first_block(vol_verify_result *r, const struct recorded *rec, const char **why)
{
    const vol_manifest_scan *s = &r->scan;
    size_t i = 0, j = 0;
    while (i < rec->n || j < s->n) {
        if (j == s->n || (i < rec->n && rec->block[i] < s->block[j])) {
            r->have_block = true, r->block = rec->block[i], *why = "is in the signed manifest but not in the store's block map";
            return;
        }
        if (i == rec->n || s->block[j] < rec->block[i]) {
            r->have_block = true, r->block = s->block[j], *why = "is in the store's block map but not in the signed manifest";
            return;
        }
        if (memcmp(rec->sha[i], s->sha[j], 32)) {
            r->have_block = true, r->block = s->block[j], *why = "differs from the signed manifest (its chunk's bytes or map row changed)";
            return;
        }
        i++, j++;
    }
}

void vol_verify_result_clear(vol_verify_result *r)
{
    if (!r)
        return;
    vol_signature_clear(&r->sig);
    vol_manifest_scan_clear(&r->scan);
    memset(r, 0, sizeof *r);
}

int vol_verify_snapshot(vol_store *st, kmsc *kms, const char *snap_id, const vol_verify_opts *o, vol_verify_result *r,
                        vol_err *e)
{
    vol_catalog *cat = vol_store_catalog(st);
    vol_keyring ring = {NULL, 0};
    vol_snapshot snap;
    struct recorded rec;
    vol_err ae = {"", ""};
    bool have_ring = false;
    int rc;

    memset(r, 0, sizeof *r);
    memset(&rec, 0, sizeof rec);
    r->sig_valid = r->source_valid = -1;
    if ((rc = cat->ops->snapshot_get(cat, snap_id, &snap)))
        return vol_fail(e, rc, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", snap_id);
    rc = cat->ops->sig_get(cat, snap_id, &r->sig);
    if (rc == -ENOENT) {
        vol_snapshot_clear(&snap);
        r->verdict = VOL_VERIFY_UNSIGNED;
        snprintf(r->detail, sizeof r->detail, "no signature: %s was never signed (create-snapshot --signing-key-id, "
                 "or volume sign)", snap_id);
        return 0;
    }
    if (rc) {
        vol_snapshot_clear(&snap);
        return vol_fail(e, rc, "InternalError", "cannot read the signature of %s", snap_id);
    }
    if (o->authenticate) {
        if (vol_owner_keys(st, snap_id, snap.lineage, &ring, &ae) == 0)
            have_ring = true;
        else if (!o->public_key) { /* through the key service: its refusal is the answer */
            vol_snapshot_clear(&snap);
            *e = ae;
            return -EACCES;
        } else {
            snprintf(r->auth_error, sizeof r->auth_error, "%s: %s", ae.code, ae.message);
        }
    }
    vol_snapshot_clear(&snap);
    if (vol_manifest_decode(r->sig.manifest, r->sig.manifest_len, &r->recorded)) {
        r->verdict = VOL_VERIFY_BAD_RECORD;
        snprintf(r->detail, sizeof r->detail, "the recorded manifest of %s is not a version-%d manifest", snap_id,
                 VOL_MANIFEST_VERSION);
        rc = 0;
        goto out;
    }
    vol_manifest_digest(r->sig.manifest, r->sig.manifest_len, r->recorded_digest);
    /* 1. the signature over the recorded manifest */
    rc = vol_verify_digest(kms, o->expect_key ? o->expect_key : r->sig.key_arn, o->public_key, r->sig.algorithm,
                           r->recorded_digest, r->sig.signature, r->sig.signature_len, e);
    if (rc < 0)
        goto out;
    r->sig_valid = rc;
    /* 2. the manifest as the store has it now (the source fields as recorded: they are checked in 3) */
    if ((rc = vol_manifest_scan_run(st, snap_id, have_ring ? &ring : NULL, r->recorded.source_id,
                                    r->recorded.source_sha256, &r->scan, e)))
        goto out;
    {
        uint8_t enc[VOL_MANIFEST_MAX];
        size_t len;
        if ((rc = vol_manifest_encode(&r->scan.m, enc, sizeof enc, &len))) {
            rc = vol_fail(e, rc, "InternalError", "the manifest of %s does not encode", snap_id);
            goto out;
        }
        vol_manifest_digest(enc, len, r->current_digest);
    }
    r->field = vol_manifest_diff(&r->recorded, &r->scan.m);
    if (r->field && (!strcmp(r->field, "Blocks") || !strcmp(r->field, "BlockMapDigest"))) {
        const char *why = NULL;
        uint8_t d[32];
        vol_map_hash_init(&rec.mh);
        if ((rc = cat->ops->digest_list(cat, snap_id, add_recorded, &rec))) {
            rc = vol_fail(e, rc, "InternalError", "cannot read the block digests of %s", snap_id);
            goto out;
        }
        vol_map_hash_final(&rec.mh, d);
        if (!memcmp(d, r->recorded.map_sha256, 32))
            first_block(r, &rec, &why);
        if (why)
            snprintf(r->detail, sizeof r->detail, "manifest mismatch: block %" PRIu64 " %s", r->block, why);
        else
            snprintf(r->detail, sizeof r->detail, "manifest mismatch: the block map differs from the signed one (the "
                     "recorded per-block digests were altered too, so the first differing block is unknown)");
    } else if (r->field) {
        snprintf(r->detail, sizeof r->detail, "manifest mismatch: %s differs from the signed manifest", r->field);
    }
    /* 3. a copy: the source's record, which the copy's own manifest names by digest */
    if (r->sig.source_id[0] && r->sig.source_manifest) {
        uint8_t sd[32];
        vol_manifest sm;
        r->has_source = true;
        vol_manifest_digest(r->sig.source_manifest, r->sig.source_manifest_len, sd);
        if (memcmp(sd, r->recorded.source_sha256, 32) || vol_manifest_decode(r->sig.source_manifest,
                                                                             r->sig.source_manifest_len, &sm)) {
            r->source_valid = 0;
        } else {
            r->same_blocks = sm.blocks == r->recorded.blocks && !memcmp(sm.map_sha256, r->recorded.map_sha256, 32);
            if (!o->public_key || o->source_public_key) {
                vol_err se = {"", ""};
                rc = vol_verify_digest(kms, r->sig.source_key_arn, o->source_public_key, r->sig.source_algorithm, sd,
                                       r->sig.source_signature, r->sig.source_signature_len, &se);
                if (rc < 0 && o->source_public_key) {
                    *e = se;
                    goto out;
                }
                if (rc < 0) /* the source's key is another region's (or gone): --source-public-key checks it */
                    snprintf(r->source_error, sizeof r->source_error, "%s: %s", se.code, se.message);
                r->source_valid = rc < 0 ? -1 : rc;
            }
        }
    }
    rc = 0;
    if (r->sig_valid != 1) {
        r->verdict = VOL_VERIFY_SIG_INVALID;
        snprintf(r->detail, sizeof r->detail, "signature invalid: the signature of %s does not verify with %s%s", snap_id,
                 o->public_key ? "the public key " : o->expect_key ? "the expected key " : "its recorded key ",
                 o->public_key ? o->public_key : o->expect_key ? o->expect_key : r->sig.key_arn);
    } else if (r->field) {
        r->verdict = VOL_VERIFY_MISMATCH;
    } else if (r->scan.damaged) {
        r->verdict = VOL_VERIFY_DAMAGED;
        snprintf(r->detail, sizeof r->detail, "%" PRIu64 " block(s) fail authentication, first block %" PRIu64,
                 r->scan.damaged, r->scan.first_damaged);
    } else if (r->has_source && r->source_valid == 0) {
        r->verdict = VOL_VERIFY_SOURCE_INVALID;
        snprintf(r->detail, sizeof r->detail, "the source signature recorded with the copy (of %s) does not verify",
                 r->sig.source_id);
    } else {
        r->verdict = VOL_VERIFY_OK;
    }
out:
    free(rec.block);
    free(rec.sha);
    vol_keyring_clear(&ring);
    return rc;
}
