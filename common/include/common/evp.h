/*
 * evp.h — the OpenSSL algorithms every layer uses, fetched from the provider once per process. OpenSSL 3
 * looks EVP_sha256() / EVP_aes_256_gcm() up (locks, allocations) each time a context is initialised with
 * them; these return a prefetched object (or, if fetching failed, the legacy getter). Never freed.
 */
#ifndef ENVELOPEFS_EVP_H
#define ENVELOPEFS_EVP_H

#include <openssl/evp.h>

const EVP_MD *efs_evp_sha256(void);
const EVP_CIPHER *efs_evp_aes_256_gcm(void);

#endif
