/*
 * jsonwipe.h — make every buffer jansson frees be wiped first (kmsclient and the CLI).
 *
 * JSON bodies of GenerateDataKey, Decrypt and GenerateRandom carry plaintext key material in base64.
 * Wiping the values we can see (json_string_value, response text) is not enough: jansson's parser
 * and serialiser keep their own scratch buffers. efs_json_wipe_on_free() installs, once per process,
 * jansson allocation functions that are plain malloc/free except that free first zeroes the whole
 * block (malloc_usable_size). Because the allocator is still malloc, blocks allocated before the
 * switch are freed correctly after it. kmsc_new calls it; programs that build plaintext-carrying JSON
 * before creating a client (the CLI) call it first themselves.
 */
#ifndef ENVELOPEFS_JSONWIPE_H
#define ENVELOPEFS_JSONWIPE_H

/* Idempotent and thread-safe (pthread_once). */
void efs_json_wipe_on_free(void);

#endif
