/*
 * hsm.c — PKCS#11 tokens for the custom key stores (hsm.h). The module is loaded with dlopen and
 * C_GetFunctionList (no link-time dependency: any PKCS#11 module, SoftHSM2 in the tests) and initialized
 * with CKF_OS_LOCKING_OK; a module another library of the process already initialized is used as it is
 * and not finalized. A token is found by its label among the slots with a token present, logged in once
 * (CKU_USER) and shared by every core of the process that opens it with the same PIN (compared through a
 * keyed hash: the PIN itself is not kept here); its sessions come from one pool behind the token's lock.
 * The last hsm_close logs out, closes the sessions and finalizes the module (the library stays loaded:
 * re-initializing is safe, unloading a module with OpenSSL inside it is not).
 *
 * After fork() the child has none of the parent's logins (PKCS#11 requires a child to initialize the module
 * again): an atfork handler forgets them in the child, whose tokens from before the fork are then stale —
 * refused with a message, and freed by hsm_close without calling the module.
 *
 * Every CK_RV becomes a kms_err at this boundary (rv_fail): KMS_ERR_INTERNAL with a message naming the
 * function and the return value, KMS_ERR_INVALID_CIPHERTEXT for a refused GCM tag.
 */
#include "hsm.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>
#include <sodium.h>

#include "internal.h"

#define HSM_POOL 8

struct hsm_module {
    char *path;
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool initialized, ours; /* ours: we called C_Initialize, so we finalize */
    int refs;
    struct hsm_module *next;
};

struct hsm_token {
    struct hsm_module *m;
    char *label;
    CK_SLOT_ID slot;
    uint8_t pin_hash[32];
    int refs;
    unsigned gen;                 /* g_fork_gen when opened: another value means opened before a fork */
    pthread_mutex_t mu;           /* guards idle / n_idle */
    CK_SESSION_HANDLE login;      /* the session that logged in; open while the token is */
    CK_SESSION_HANDLE idle[HSM_POOL];
    int n_idle;
    struct hsm_token *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* guards the two lists and the pin key */
static struct hsm_module *g_modules;
static struct hsm_token *g_tokens;
static uint8_t g_pin_key[crypto_generichash_KEYBYTES];
static bool g_pin_key_set;
static unsigned g_fork_gen;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

/* In a child after fork(): no module is initialized and no token logged in here. */
static void atfork_child(void)
{
    pthread_mutex_init(&g_mu, NULL);
    for (struct hsm_module *m = g_modules; m; m = m->next)
        m->initialized = m->ours = false, m->refs = 0;
    g_tokens = NULL; /* each still referenced by a core of the parent's: stale (gen) */
    g_fork_gen++;
}

static void atfork_register(void) { (void)pthread_atfork(NULL, NULL, atfork_child); }

static const char *rv_name(CK_RV rv)
{
    switch (rv) {
#define N(x) case x: return #x;
        N(CKR_OK) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID) N(CKR_GENERAL_ERROR) N(CKR_FUNCTION_FAILED)
        N(CKR_ARGUMENTS_BAD) N(CKR_ATTRIBUTE_SENSITIVE) N(CKR_ATTRIBUTE_TYPE_INVALID) N(CKR_ATTRIBUTE_VALUE_INVALID)
        N(CKR_DATA_INVALID) N(CKR_DATA_LEN_RANGE) N(CKR_DEVICE_ERROR) N(CKR_DEVICE_MEMORY) N(CKR_DEVICE_REMOVED)
        N(CKR_ENCRYPTED_DATA_INVALID) N(CKR_ENCRYPTED_DATA_LEN_RANGE) N(CKR_KEY_HANDLE_INVALID)
        N(CKR_KEY_TYPE_INCONSISTENT) N(CKR_KEY_FUNCTION_NOT_PERMITTED) N(CKR_MECHANISM_INVALID)
        N(CKR_MECHANISM_PARAM_INVALID) N(CKR_OBJECT_HANDLE_INVALID) N(CKR_OPERATION_ACTIVE)
        N(CKR_OPERATION_NOT_INITIALIZED) N(CKR_PIN_INCORRECT) N(CKR_PIN_LEN_RANGE) N(CKR_PIN_LOCKED)
        N(CKR_SESSION_CLOSED) N(CKR_SESSION_HANDLE_INVALID) N(CKR_SESSION_READ_ONLY) N(CKR_TEMPLATE_INCOMPLETE)
        N(CKR_TEMPLATE_INCONSISTENT) N(CKR_TOKEN_NOT_PRESENT) N(CKR_TOKEN_NOT_RECOGNIZED) N(CKR_USER_NOT_LOGGED_IN)
        N(CKR_USER_ALREADY_LOGGED_IN) N(CKR_USER_PIN_NOT_INITIALIZED) N(CKR_BUFFER_TOO_SMALL)
        N(CKR_CRYPTOKI_NOT_INITIALIZED) N(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef N
    default: return "CKR_?";
    }
}

static kms_err rv_fail(kms_err e, char **msg, const char *fn, CK_RV rv)
{
    kms_set_msg(msg, "HSM: PKCS#11 %s failed: %s (0x%lx)", fn, rv_name(rv), (unsigned long)rv);
    return e;
}

/* Whether a session is unusable after rv (it is dropped, not pooled). */
static bool session_dead(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
           rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR;
}

static void pin_hash(const char *pin, size_t n, uint8_t out[32])
{
    if (!g_pin_key_set) {
        randombytes_buf(g_pin_key, sizeof g_pin_key);
        g_pin_key_set = true;
    }
    crypto_generichash(out, 32, (const uint8_t *)pin, n, g_pin_key, sizeof g_pin_key);
}

/* Under g_mu. */
static kms_err module_get(const char *path, struct hsm_module **out, const char **code, char **msg)
{
    struct hsm_module *m;
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;
    for (m = g_modules; m && strcmp(m->path, path); m = m->next)
        ;
    if (!m) {
        CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            *code = HSM_CODE_NOT_FOUND;
            kms_set_msg(msg, "HSM: cannot load the PKCS#11 module %s: %s", path, dlerror());
            return KMS_ERR_HSM_INVALID_CONFIG;
        }
        *(void **)&get = dlsym(dl, "C_GetFunctionList");
        m = calloc(1, sizeof *m);
        if (!m || !(m->path = strdup(path))) {
            free(m);
            dlclose(dl);
            return KMS_ERR_NOMEM;
        }
        if (!get || (rv = get(&m->f)) != CKR_OK || !m->f) {
            free(m->path);
            free(m);
            dlclose(dl);
            *code = HSM_CODE_NOT_FOUND;
            kms_set_msg(msg, "HSM: %s is not a PKCS#11 module (no C_GetFunctionList)", path);
            return KMS_ERR_HSM_INVALID_CONFIG;
        }
        m->dl = dl;
        m->next = g_modules;
        g_modules = m;
    }
    if (!m->initialized) {
        memset(&args, 0, sizeof args);
        args.flags = CKF_OS_LOCKING_OK;
        rv = m->f->C_Initialize(&args);
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
            *code = HSM_CODE_INTERNAL;
            return rv_fail(KMS_ERR_HSM_INVALID_CONFIG, msg, "C_Initialize", rv);
        }
        m->initialized = true;
        m->ours = rv == CKR_OK;
    }
    m->refs++;
    *out = m;
    return KMS_OK;
}

/* Under g_mu. */
static void module_put(struct hsm_module *m)
{
    if (--m->refs > 0)
        return;
    if (m->ours)
        (void)m->f->C_Finalize(NULL);
    m->initialized = m->ours = false;
}

/* The slot whose token's label is label (CK_TOKEN_INFO pads it with spaces to 32 bytes). */
static kms_err find_slot(CK_FUNCTION_LIST_PTR f, const char *label, CK_SLOT_ID *slot, const char **code, char **msg)
{
    CK_ULONG n = 0;
    CK_SLOT_ID *slots;
    CK_RV rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
    size_t ll = strlen(label);
    kms_err e = KMS_ERR_HSM_NOT_FOUND;
    if (rv != CKR_OK) {
        *code = HSM_CODE_INTERNAL;
        return rv_fail(KMS_ERR_HSM_INVALID_CONFIG, msg, "C_GetSlotList", rv);
    }
    slots = calloc(n ? n : 1, sizeof *slots);
    if (!slots)
        return KMS_ERR_NOMEM;
    if (n && (rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
        free(slots);
        *code = HSM_CODE_INTERNAL;
        return rv_fail(KMS_ERR_HSM_INVALID_CONFIG, msg, "C_GetSlotList", rv);
    }
    for (CK_ULONG i = 0; i < n && e; i++) {
        CK_TOKEN_INFO ti;
        size_t l = sizeof ti.label;
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        while (l && ti.label[l - 1] == ' ')
            l--;
        if (l == ll && !memcmp(ti.label, label, l) && (ti.flags & CKF_TOKEN_INITIALIZED)) {
            *slot = slots[i];
            e = KMS_OK;
        }
    }
    free(slots);
    if (e) {
        *code = HSM_CODE_NOT_FOUND;
        kms_set_msg(msg, "HSM: no initialized token labelled \"%s\"", label);
    }
    return e;
}

kms_err hsm_open(const char *module, const char *label, const char *pin, size_t pin_len, hsm_token **out,
                 const char **code, char **msg)
{
    struct hsm_token *t;
    struct hsm_module *m = NULL;
    uint8_t h[32];
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_SLOT_ID slot = 0;
    CK_RV rv;
    kms_err e;

    *out = NULL;
    *code = HSM_CODE_INTERNAL;
    pthread_once(&g_atfork_once, atfork_register);
    pthread_mutex_lock(&g_mu);
    pin_hash(pin, pin_len, h);
    for (t = g_tokens; t && (strcmp(t->m->path, module) || strcmp(t->label, label)); t = t->next)
        ;
    if (t) { /* already logged in by this process: the same PIN or none */
        if (sodium_memcmp(h, t->pin_hash, 32)) {
            pthread_mutex_unlock(&g_mu);
            *code = HSM_CODE_CREDENTIALS;
            kms_set_msg(msg, "HSM: the token \"%s\" refused the PIN", label);
            return KMS_ERR_HSM_INVALID_CONFIG;
        }
        t->refs++;
        pthread_mutex_unlock(&g_mu);
        *out = t;
        return KMS_OK;
    }
    if ((e = module_get(module, &m, code, msg)))
        goto fail;
    if ((e = find_slot(m->f, label, &slot, code, msg)))
        goto fail;
    if ((rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) != CKR_OK) {
        *code = HSM_CODE_INTERNAL;
        e = rv_fail(KMS_ERR_HSM_INVALID_CONFIG, msg, "C_OpenSession", rv);
        goto fail;
    }
    rv = m->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)pin_len);
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        *code = rv == CKR_PIN_LOCKED ? HSM_CODE_LOCKED
              : rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE || rv == CKR_USER_PIN_NOT_INITIALIZED
                  ? HSM_CODE_CREDENTIALS
                  : HSM_CODE_INTERNAL;
        e = rv_fail(KMS_ERR_HSM_INVALID_CONFIG, msg, "C_Login", rv);
        goto fail;
    }
    t = calloc(1, sizeof *t);
    if (!t || !(t->label = strdup(label))) {
        free(t);
        e = KMS_ERR_NOMEM;
        goto fail;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->m = m;
    t->slot = slot;
    t->login = s;
    t->refs = 1;
    t->gen = g_fork_gen;
    memcpy(t->pin_hash, h, 32);
    t->next = g_tokens;
    g_tokens = t;
    pthread_mutex_unlock(&g_mu);
    *out = t;
    return KMS_OK;
fail:
    if (s != CK_INVALID_HANDLE)
        (void)m->f->C_CloseSession(s);
    if (m)
        module_put(m);
    pthread_mutex_unlock(&g_mu);
    return e;
}

void hsm_close(hsm_token *t)
{
    struct hsm_token **p;
    if (!t)
        return;
    pthread_mutex_lock(&g_mu);
    if (--t->refs > 0) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    if (t->gen != g_fork_gen) { /* the parent's login: nothing to close in this process */
        pthread_mutex_unlock(&g_mu);
        free(t->label);
        free(t);
        return;
    }
    for (p = &g_tokens; *p && *p != t; p = &(*p)->next)
        ;
    if (*p)
        *p = t->next;
    for (int i = 0; i < t->n_idle; i++)
        (void)t->m->f->C_CloseSession(t->idle[i]);
    (void)t->m->f->C_Logout(t->login);
    (void)t->m->f->C_CloseSession(t->login);
    module_put(t->m);
    pthread_mutex_unlock(&g_mu);
    pthread_mutex_destroy(&t->mu);
    free(t->label);
    free(t);
}

static kms_err session_get(hsm_token *t, CK_SESSION_HANDLE *s, char **msg)
{
    CK_RV rv;
    if (t->gen != g_fork_gen) {
        kms_set_msg(msg, "HSM: the token \"%s\" was logged in to before this process forked: open the store again",
                    t->label);
        return KMS_ERR_INTERNAL;
    }
    pthread_mutex_lock(&t->mu);
    if (t->n_idle) {
        *s = t->idle[--t->n_idle];
        pthread_mutex_unlock(&t->mu);
        return KMS_OK;
    }
    pthread_mutex_unlock(&t->mu);
    rv = t->m->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
    return rv == CKR_OK ? KMS_OK : rv_fail(KMS_ERR_INTERNAL, msg, "C_OpenSession", rv);
}

static void session_put(hsm_token *t, CK_SESSION_HANDLE s, CK_RV last)
{
    if (session_dead(last)) {
        (void)t->m->f->C_CloseSession(s);
        return;
    }
    pthread_mutex_lock(&t->mu);
    if (t->n_idle < HSM_POOL) {
        t->idle[t->n_idle++] = s;
        s = CK_INVALID_HANDLE;
    }
    pthread_mutex_unlock(&t->mu);
    if (s != CK_INVALID_HANDLE)
        (void)t->m->f->C_CloseSession(s);
}

/* The secret key object with CKA_ID id (*h CK_INVALID_HANDLE if none). */
static CK_RV find_key(hsm_token *t, CK_SESSION_HANDLE s, const uint8_t id[16], CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, (void *)id, 16}};
    CK_ULONG n = 0;
    CK_RV rv = t->m->f->C_FindObjectsInit(s, tmpl, 2);
    *h = CK_INVALID_HANDLE;
    if (rv != CKR_OK)
        return rv;
    rv = t->m->f->C_FindObjects(s, h, 1, &n);
    (void)t->m->f->C_FindObjectsFinal(s);
    if (rv == CKR_OK && n != 1)
        *h = CK_INVALID_HANDLE;
    return rv;
}

/* A session and the key's handle; KMS_ERR_INTERNAL when the token does not hold the key. */
static kms_err session_key(hsm_token *t, const uint8_t id[16], CK_SESSION_HANDLE *s, CK_OBJECT_HANDLE *h, char **msg)
{
    CK_RV rv;
    kms_err e = session_get(t, s, msg);
    if (e)
        return e;
    rv = find_key(t, *s, id, h);
    if (rv != CKR_OK) {
        session_put(t, *s, rv);
        return rv_fail(KMS_ERR_INTERNAL, msg, "C_FindObjects", rv);
    }
    if (*h == CK_INVALID_HANDLE) {
        session_put(t, *s, CKR_OK);
        kms_set_msg(msg, "HSM: the token \"%s\" does not hold this key's material", t->label);
        return KMS_ERR_INTERNAL;
    }
    return KMS_OK;
}

kms_err hsm_generate_aes256(hsm_token *t, const uint8_t id[16], const char *label, char **msg)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},       {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &len, sizeof len},   {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},     {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},   {CKA_ENCRYPT, &yes, sizeof yes},
        {CKA_DECRYPT, &yes, sizeof yes},     {CKA_WRAP, &no, sizeof no},
        {CKA_UNWRAP, &no, sizeof no},        {CKA_SIGN, &no, sizeof no},
        {CKA_VERIFY, &no, sizeof no},        {CKA_DERIVE, &no, sizeof no},
        {CKA_LABEL, (void *)label, strlen(label)}, {CKA_ID, (void *)id, 16},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    CK_SESSION_HANDLE s;
    CK_RV rv;
    kms_err e = session_get(t, &s, msg);
    if (e)
        return e;
    rv = t->m->f->C_GenerateKey(s, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], &h);
    session_put(t, s, rv);
    return rv == CKR_OK ? KMS_OK : rv_fail(KMS_ERR_INTERNAL, msg, "C_GenerateKey", rv);
}

kms_err hsm_gcm_seal(hsm_token *t, const uint8_t id[16], const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                     const uint8_t *pt, size_t n, uint8_t *out, char **msg)
{
    CK_GCM_PARAMS p = {(CK_BYTE_PTR)iv, 12, 96, (CK_BYTE_PTR)aad, aad_len, 128};
    CK_MECHANISM mech = {CKM_AES_GCM, &p, sizeof p};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    CK_ULONG out_len = n + 16;
    CK_RV rv;
    kms_err e = session_key(t, id, &s, &h, msg);
    if (e)
        return e;
    rv = t->m->f->C_EncryptInit(s, &mech, h);
    if (rv == CKR_OK)
        rv = t->m->f->C_Encrypt(s, (CK_BYTE_PTR)pt, n, out, &out_len);
    session_put(t, s, rv);
    if (rv != CKR_OK)
        return rv_fail(KMS_ERR_INTERNAL, msg, "C_Encrypt (CKM_AES_GCM)", rv);
    if (out_len != n + 16) {
        sodium_memzero(out, n + 16);
        kms_set_msg(msg, "HSM: CKM_AES_GCM returned %lu bytes for %zu", (unsigned long)out_len, n);
        return KMS_ERR_INTERNAL;
    }
    return KMS_OK;
}

kms_err hsm_gcm_open(hsm_token *t, const uint8_t id[16], const uint8_t iv[12], const uint8_t *aad, size_t aad_len,
                     const uint8_t *ct, size_t n, const uint8_t tag[16], uint8_t *pt, char **msg)
{
    CK_GCM_PARAMS p = {(CK_BYTE_PTR)iv, 12, 96, (CK_BYTE_PTR)aad, aad_len, 128};
    CK_MECHANISM mech = {CKM_AES_GCM, &p, sizeof p};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    CK_ULONG out_len = n + 16;
    uint8_t *in = malloc(n + 16), *tmp = sodium_malloc(n + 16); /* some modules want room for the tag */
    CK_RV rv;
    kms_err e;
    if (!in || !tmp) {
        free(in);
        sodium_free(tmp);
        return KMS_ERR_NOMEM;
    }
    memcpy(in, ct, n);
    memcpy(in + n, tag, 16);
    e = session_key(t, id, &s, &h, msg);
    if (e)
        goto out;
    rv = t->m->f->C_DecryptInit(s, &mech, h);
    if (rv != CKR_OK) {
        session_put(t, s, rv);
        e = rv_fail(KMS_ERR_INTERNAL, msg, "C_DecryptInit (CKM_AES_GCM)", rv);
        goto out;
    }
    rv = t->m->f->C_Decrypt(s, in, n + 16, tmp, &out_len);
    session_put(t, s, rv);
    if (session_dead(rv) || rv == CKR_BUFFER_TOO_SMALL || rv == CKR_HOST_MEMORY || rv == CKR_DEVICE_MEMORY) {
        e = rv_fail(KMS_ERR_INTERNAL, msg, "C_Decrypt (CKM_AES_GCM)", rv);
    } else if (rv != CKR_OK || out_len != n) {
        e = KMS_ERR_INVALID_CIPHERTEXT; /* the tag (context, header or bytes) did not verify */
        kms_set_msg(msg, NULL);
    } else {
        memcpy(pt, tmp, n);
    }
out:
    sodium_free(tmp);
    free(in);
    return e;
}

kms_err hsm_destroy_key(hsm_token *t, const uint8_t id[16], char **msg)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    CK_RV rv;
    kms_err e = session_get(t, &s, msg);
    if (e)
        return e;
    rv = find_key(t, s, id, &h);
    if (rv == CKR_OK && h != CK_INVALID_HANDLE)
        rv = t->m->f->C_DestroyObject(s, h);
    session_put(t, s, rv);
    return rv == CKR_OK ? KMS_OK : rv_fail(KMS_ERR_INTERNAL, msg, "C_DestroyObject", rv);
}

kms_err hsm_describe_key(hsm_token *t, const uint8_t id[16], hsm_key_info *info, char **msg)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
    CK_KEY_TYPE kt = 0;
    CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, tok = CK_FALSE;
    CK_ULONG vlen = 0;
    CK_RV rv;
    kms_err e = session_get(t, &s, msg);
    memset(info, 0, sizeof *info);
    if (e)
        return e;
    rv = find_key(t, s, id, &h);
    if (rv == CKR_OK && h != CK_INVALID_HANDLE) {
        CK_ATTRIBUTE a[] = {{CKA_KEY_TYPE, &kt, sizeof kt},     {CKA_SENSITIVE, &sens, sizeof sens},
                            {CKA_EXTRACTABLE, &extr, sizeof extr}, {CKA_TOKEN, &tok, sizeof tok},
                            {CKA_VALUE_LEN, &vlen, sizeof vlen},   {CKA_LABEL, info->label, sizeof info->label - 1}};
        rv = t->m->f->C_GetAttributeValue(s, h, a, sizeof a / sizeof a[0]);
        if (rv == CKR_OK) {
            info->found = true;
            info->aes = kt == CKK_AES;
            info->sensitive = sens == CK_TRUE;
            info->extractable = extr == CK_TRUE;
            info->token = tok == CK_TRUE;
            info->value_len = vlen;
            info->label[a[5].ulValueLen < sizeof info->label ? a[5].ulValueLen : sizeof info->label - 1] = 0;
        }
        if (rv == CKR_OK) {
            uint8_t v[64];
            CK_ATTRIBUTE va = {CKA_VALUE, v, sizeof v};
            CK_RV r2 = t->m->f->C_GetAttributeValue(s, h, &va, 1);
            info->value_readable = r2 == CKR_OK && va.ulValueLen != CK_UNAVAILABLE_INFORMATION;
            sodium_memzero(v, sizeof v);
        }
    }
    session_put(t, s, rv);
    return rv == CKR_OK ? KMS_OK : rv_fail(KMS_ERR_INTERNAL, msg, "C_GetAttributeValue", rv);
}
