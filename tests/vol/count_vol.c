/*
 * count_vol.c — the instruction-count driver of docs/PERFORMANCE.md (Volumes, stop 18): not a test and
 * not timed. It builds a store in DIR with one 1 GiB volume, writes NB blocks of random data through the
 * data path and flushes, then does NR random 4 KiB reads inside those blocks in the function reads(),
 * which `valgrind --tool=callgrind --toggle-collect=reads` counts alone:
 *   count_vol DIR NB NR same    the reads in the session that wrote the blocks
 *   count_vol DIR NB NR fresh   the reads in a new session (the device closed and opened again)
 *   count_vol DIR NB NR write   NR random 4 KiB writes instead, in the function writes() (--toggle-collect=writes),
 *                               in the session that wrote and flushed the blocks, then a read-back of each
 * Instructions per read = the count of reads() ÷ NR (per write: writes() ÷ NR). Exit 0 when every read
 * returned the bytes written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "catalog.h"
#include "chunkstore.h"
#include "dev.h"
#include "store.h"

__attribute__((noinline)) static int reads(vol_dev *d, const uint8_t *data, size_t nb, unsigned nr)
{
    uint8_t buf[4096];
    uint64_t x = 88172645463325252ull;
    int bad = 0;
    for (unsigned i = 0; i < nr; i++) {
        uint64_t off;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: the same offsets every run */
        off = (x % (nb * (VOL_BLOCK_SIZE / 4096))) * 4096;
        if (vol_dev_read(d, buf, sizeof buf, off) || memcmp(buf, data + off, sizeof buf))
            bad++;
    }
    return bad;
}

__attribute__((noinline)) static int writes(vol_dev *d, uint8_t *data, size_t nb, unsigned nr)
{
    uint64_t x = 88172645463325252ull;
    int bad = 0;
    for (unsigned i = 0; i < nr; i++) {
        uint64_t off;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        off = (x % (nb * (VOL_BLOCK_SIZE / 4096))) * 4096;
        data[off] ^= 0x5a; /* a changed sector, written back */
        if (vol_dev_write(d, data + off, 4096, off))
            bad++;
    }
    return bad;
}

int main(int argc, char **argv)
{
    char path[4096];
    vol_store *st = NULL;
    vol_volume v = {0};
    vol_dev *d = NULL;
    uint8_t dk[32], *data;
    size_t nb;
    unsigned nr;
    int bad;
    if (argc != 5 || sodium_init() < 0 || (strcmp(argv[4], "same") && strcmp(argv[4], "fresh") && strcmp(argv[4], "write"))) {
        fprintf(stderr, "usage: count_vol DIR NBLOCKS NREADS same|fresh|write\n");
        return 2;
    }
    nb = strtoul(argv[2], NULL, 10);
    nr = (unsigned)strtoul(argv[3], NULL, 10);
    snprintf(path, sizeof path, "%s/store", argv[1]);
    if (!nb || nb > 2048 || !(data = malloc(nb * VOL_BLOCK_SIZE)) || vol_store_open(path, NULL, &st, NULL))
        return 1;
    randombytes_buf(dk, sizeof dk);
    randombytes_buf(data, nb * VOL_BLOCK_SIZE);
    snprintf(v.id, sizeof v.id, "vol-00000000000000001");
    v.size_gib = 1;
    snprintf(v.lineage, sizeof v.lineage, "0f0e0d0c0b0a09080706050403020100");
    if (vol_store_catalog(st)->ops->volume_put(vol_store_catalog(st), &v) ||
        vol_dev_open(vol_store_catalog(st), vol_store_chunks(st), &v, v.lineage, dk, &d) ||
        vol_dev_write(d, data, nb * VOL_BLOCK_SIZE, 0) || vol_dev_flush(d))
        return 1;
    if (!strcmp(argv[4], "fresh")) {
        vol_dev_free(d);
        if (vol_dev_open(vol_store_catalog(st), vol_store_chunks(st), &v, v.lineage, dk, &d))
            return 1;
    }
    if (!strcmp(argv[4], "write")) {
        bad = writes(d, data, nb, nr);
        nr = (unsigned)(nb * (VOL_BLOCK_SIZE / 4096)); /* then every sector read back, in order */
        for (unsigned i = 0; i < nr; i++) {
            uint8_t buf[4096];
            if (vol_dev_read(d, buf, sizeof buf, (uint64_t)i * 4096) || memcmp(buf, data + (size_t)i * 4096, sizeof buf))
                bad++;
        }
    } else {
        bad = reads(d, data, nb, nr);
    }
    vol_dev_free(d);
    vol_store_free(st);
    free(data);
    printf("%u reads, %d wrong\n", nr, bad);
    return bad ? 1 : 0;
}
