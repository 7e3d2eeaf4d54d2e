/*
 * evp.c — implementation of evp.h: each algorithm fetched once (pthread_once).
 */
#include "common/evp.h"

#include <pthread.h>

static EVP_MD *g_sha256;
static EVP_CIPHER *g_gcm;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

const EVP_MD *efs_evp_sha256(void)
{
    pthread_once(&g_once, fetch);
    return g_sha256 ? g_sha256 : EVP_sha256();
}

const EVP_CIPHER *efs_evp_aes_256_gcm(void)
{
    pthread_once(&g_once, fetch);
    return g_gcm ? g_gcm : EVP_aes_256_gcm();
}
