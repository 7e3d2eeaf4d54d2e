/*
 * test_content.c — the content layer (fs/content.c) without FUSE, over temporary files: the range
 * arithmetic against brute force; reads and writes across block boundaries, partial blocks, holes, truncate
 * up and down, checked against a plaintext model and after reopening; concurrent writers out of order; a
 * torn write (failing backend, and a block half old, half new on disk); a tampered block; ENOSPC; and a
 * volume-shaped backend (chunk files of 128 sectors, absent chunks as holes, AAD binding chunk and
 * generation, per-chunk keys) with discard.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../kms/testutil.h"
#include "content.h"

static char tmpdir[] = "/tmp/efs-content-XXXXXX";

static int temp_file(const char *name)
{
    char p[256];
    int fd;
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    return fd;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) ^ seed);
}

/* A file-like content: keys from a fixed DEK, efs_file_bind with a fixed file id. */
struct fixture {
    efs_file_keys keys;
    efs_file_binding fb;
    pthread_rwlock_t rw;
    efs_content_group *g;
    efs_content *c;
};

static void fixture_open(struct fixture *f, uint32_t bs, uint64_t data_off, uint64_t size)
{
    uint8_t dek[EFS_DEK_LEN];
    efs_content_params p = {.block_size = bs, .data_off = data_off, .size = size, .bind = efs_file_bind,
                            .bind_arg = &f->fb, .lock = &f->rw, .what = "test file"};
    memset(dek, 0x42, sizeof dek);
    CHECK(efs_file_keys_derive(dek, &f->keys) == 0);
    f->fb.keys = &f->keys;
    memset(f->fb.file_id, 0xA5, EFS_FILE_ID_LEN);
    pthread_rwlock_init(&f->rw, NULL);
    CHECK(efs_content_group_new(NULL, NULL, &f->g) == 0);
    p.group = f->g;
    CHECK(efs_content_new(&p, &f->c) == 0);
}

static void fixture_close(struct fixture *f)
{
    efs_content_free(f->c);
    efs_content_group_free(f->g);
    pthread_rwlock_destroy(&f->rw);
}

static ssize_t cread(struct fixture *f, const efs_content_io *io, uint8_t *out, size_t len, uint64_t off)
{
    ssize_t n;
    pthread_rwlock_rdlock(&f->rw);
    n = efs_content_read(f->c, io, out, len, off);
    pthread_rwlock_unlock(&f->rw);
    return n;
}

static int cwrite(struct fixture *f, const efs_content_io *io, const uint8_t *data, size_t len, uint64_t off)
{
    uint8_t *buf = malloc(len ? len : 1); /* efs_content_write clobbers its buffer */
    int rc;
    CHECK(buf);
    memcpy(buf, data, len);
    rc = efs_content_write(f->c, io, buf, len, off);
    free(buf);
    return rc;
}

static int ctrunc(struct fixture *f, const efs_content_io *io, uint64_t size)
{
    int rc;
    pthread_rwlock_wrlock(&f->rw);
    rc = efs_content_truncate(f->c, io, size);
    pthread_rwlock_unlock(&f->rw);
    return rc;
}

static uint64_t csize(struct fixture *f)
{
    uint64_t s;
    pthread_rwlock_rdlock(&f->rw);
    s = efs_content_size(f->c);
    pthread_rwlock_unlock(&f->rw);
    return s;
}

/* The whole content equals model[0, size). */
static void check_model(struct fixture *f, const efs_content_io *io, const uint8_t *model, uint64_t size)
{
    uint8_t *got = malloc(size + 100);
    CHECK(got);
    CHECK_EQ_INT(csize(f), size);
    CHECK_EQ_INT(cread(f, io, got, size + 100, 0), size);
    CHECK(memcmp(got, model, size) == 0);
    free(got);
}

/* ---- range arithmetic ----------------------------------------------------------------------- */

static void test_ranges(void)
{
    const uint32_t sizes[] = {512, 4096};
    CHECK_EQ_INT(efs_range_blocks(0, 0, 512), 0);
    CHECK_EQ_INT(efs_range_blocks(511, 2, 512), 2);
    CHECK_EQ_INT(efs_range_blocks(512, 512, 512), 1);
    CHECK_EQ_INT(efs_stored_off(34, 4096, 3), 34 + 3 * 4124);
    for (size_t k = 0; k < 2; k++) {
        uint32_t bs = sizes[k];
        for (uint64_t off = 0; off < 3 * bs; off += bs / 4 - 1)
            for (uint64_t len = 1; len < 3 * bs; len += bs / 3 + 1) {
                uint64_t n = efs_range_blocks(off, len, bs), covered = 0, next = off;
                CHECK(n >= 1);
                for (uint64_t i = 0; i < n; i++) {
                    efs_block_span sp = efs_range_span(off, len, bs, i);
                    CHECK_EQ_INT(sp.blockno * bs + sp.skip, next); /* contiguous, in order */
                    CHECK(sp.len >= 1 && sp.skip + sp.len <= bs);
                    CHECK(i == 0 || sp.skip == 0);
                    CHECK(i + 1 == n || sp.skip + sp.len == bs);
                    next += sp.len;
                    covered += sp.len;
                }
                CHECK_EQ_INT(covered, len);
            }
    }
}

/* ---- boundaries, partial blocks, holes, truncate, reopen ------------------------------------ */

static void test_model(uint32_t bs, uint64_t data_off)
{
    enum { MAX = 1 << 18 };
    struct fixture f;
    int fd = temp_file("model");
    efs_content_io io = efs_content_fd_io(fd);
    uint8_t *model = calloc(1, MAX), *data = malloc(MAX);
    uint64_t size = 0;
    struct stat st;
    unsigned seed = 1;
    CHECK(model && data);
    CHECK(ftruncate(fd, (off_t)data_off) == 0); /* room for a header before block 0 */
    fixture_open(&f, bs, data_off, 0);

    /* exact boundaries and their neighbours */
    const uint64_t offs[] = {0, 1, bs - 1, bs, bs + 1, 2 * bs - 1, 3 * bs, 5 * bs + 7};
    const uint64_t lens[] = {1, bs - 1, bs, bs + 1, 2 * bs, 3 * bs + 5};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++)
        for (size_t j = 0; j < sizeof lens / sizeof *lens; j++) {
            uint64_t off = offs[i], len = lens[j];
            fill(data, len, seed++);
            CHECK_EQ_INT(cwrite(&f, &io, data, len, off), 0);
            memcpy(model + off, data, len);
            if (off + len > size)
                size = off + len;
            check_model(&f, &io, model, size);
            CHECK(fstat(fd, &st) == 0);
            CHECK_EQ_INT(st.st_size, data_off + efs_data_len(size, bs));
        }
    /* a partial read inside and across blocks */
    {
        uint8_t got[3 * 4096];
        CHECK_EQ_INT(cread(&f, &io, got, bs + 3, bs - 2), bs + 3);
        CHECK(memcmp(got, model + bs - 2, bs + 3) == 0);
        CHECK_EQ_INT(cread(&f, &io, got, 10, size), 0); /* at the end */
        CHECK_EQ_INT(cread(&f, &io, got, 10, size - 4), 4);
    }
    /* a hole: a write far past the end reads as zeros before it */
    {
        uint64_t off = size + 7 * bs + 13, gap0 = efs_content_group_gap_bytes(f.g);
        fill(data, 100, seed++);
        CHECK_EQ_INT(cwrite(&f, &io, data, 100, off), 0);
        memset(model + size, 0, off - size);
        memcpy(model + off, data, 100);
        CHECK_EQ_INT(efs_content_group_gap_bytes(f.g) - gap0, off - size);
        size = off + 100;
        check_model(&f, &io, model, size);
    }
    /* truncate down into a block, to a boundary, up (zeros), to 0 and back */
    {
        const uint64_t to[] = {size - 1, 3 * bs + 17, 3 * bs, 3 * bs + 1, 9 * bs + 100, 2 * bs - 1, 0, bs + 5};
        for (size_t i = 0; i < sizeof to / sizeof *to; i++) {
            CHECK_EQ_INT(ctrunc(&f, &io, to[i]), 0);
            if (to[i] > size)
                memset(model + size, 0, to[i] - size);
            size = to[i];
            check_model(&f, &io, model, size);
            CHECK(fstat(fd, &st) == 0);
            CHECK_EQ_INT(st.st_size, data_off + efs_data_len(size, bs));
        }
    }
    /* random writes and truncates against the model */
    srand(7);
    for (int i = 0; i < 300; i++) {
        uint64_t off = (uint64_t)rand() % (MAX / 2), len = 1 + (uint64_t)rand() % (MAX / 8);
        if (rand() % 8 == 0) {
            uint64_t t = (uint64_t)rand() % (MAX / 2);
            CHECK_EQ_INT(ctrunc(&f, &io, t), 0);
            if (t > size)
                memset(model + size, 0, t - size);
            size = t;
        } else {
            fill(data, len, seed++);
            CHECK_EQ_INT(cwrite(&f, &io, data, len, off), 0);
            if (off > size)
                memset(model + size, 0, off - size);
            memcpy(model + off, data, len);
            if (off + len > size)
                size = off + len;
        }
        if (i % 10 == 0)
            check_model(&f, &io, model, size);
    }
    check_model(&f, &io, model, size);
    fixture_close(&f);

    /* reopen: the size comes from the stored length, the bytes from the file */
    CHECK(fstat(fd, &st) == 0);
    {
        uint64_t again = 0;
        CHECK(efs_plain_size((uint64_t)st.st_size - data_off, bs, &again) == 0);
        CHECK_EQ_INT(again, size);
        fixture_open(&f, bs, data_off, again);
        check_model(&f, &io, model, size);
        fixture_close(&f);
    }
    close(fd);
    free(model);
    free(data);
}

/* ---- concurrent writers --------------------------------------------------------------------- */

struct writer {
    struct fixture *f;
    efs_content_io io;
    int id, nthreads, pieces;
    size_t piece;
    int rc;
};

/* Thread id writes pieces id, id + n, id + 2n, … of the stream, highest first: writes past the end
 * arrive before the ones that fill their gaps. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = malloc(w->piece);
    for (int k = w->pieces - 1; k >= 0 && buf; k--) {
        int piece = k * w->nthreads + w->id;
        fill(buf, w->piece, (unsigned)piece);
        w->rc |= efs_content_write(w->f->c, &w->io, buf, w->piece, (uint64_t)piece * w->piece);
    }
    free(buf);
    if (!buf)
        w->rc = -ENOMEM;
    return NULL;
}

struct reader {
    struct fixture *f;
    efs_content_io io;
    _Atomic int *stop;
    int bad;
};

/* Reads while the writers write: every read succeeds (no torn block is ever seen under the lock). */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    uint8_t buf[8192];
    unsigned seed = 3;
    while (!*r->stop)
        if (cread(r->f, &r->io, buf, sizeof buf, (uint64_t)(rand_r(&seed) % (1 << 20))) < 0)
            r->bad++;
    return NULL;
}

static void test_concurrent(void)
{
    enum { THREADS = 4, PIECES = 16 };
    const size_t piece = 12345; /* not block-aligned: partial blocks shared by neighbours */
    struct fixture f;
    int fd = temp_file("concurrent");
    efs_content_io io = efs_content_fd_io(fd);
    struct writer w[THREADS];
    pthread_t t[THREADS], rt;
    _Atomic int stop = 0;
    struct reader r = {.io = io, .stop = &stop};
    uint64_t total = (uint64_t)THREADS * PIECES * piece;
    uint8_t *model = malloc(total);
    CHECK(model);
    fixture_open(&f, 4096, 0, 0);
    r.f = &f;
    CHECK(pthread_create(&rt, NULL, reader_main, &r) == 0);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct writer){.f = &f, .io = io, .id = i, .nthreads = THREADS, .pieces = PIECES, .piece = piece};
        CHECK(pthread_create(&t[i], NULL, writer_main, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK_EQ_INT(w[i].rc, 0);
    }
    stop = 1;
    CHECK(pthread_join(rt, NULL) == 0);
    CHECK_EQ_INT(r.bad, 0);
    for (int p = 0; p < THREADS * PIECES; p++)
        fill(model + (size_t)p * piece, piece, (unsigned)p);
    check_model(&f, &io, model, total);
    fixture_close(&f);
    close(fd);
    free(model);
}

/* ---- faults: a failing backend, a torn block, a tampered block, no space ------------------- */

struct faulty {
    int fd;
    int writes_left; /* writev calls that succeed before one fails (-1: never fails) */
    bool tear;       /* the failing call writes its first half first */
    bool nospace;    /* reserve fails with ENOSPC */
};

static ssize_t faulty_read(void *arg, void *buf, size_t len, uint64_t off)
{
    return efs_content_fd_ops.read((void *)(intptr_t)((struct faulty *)arg)->fd, buf, len, off);
}

static int faulty_writev(void *arg, const struct iovec *iov, int n, uint64_t off)
{
    struct faulty *f = arg;
    if (f->writes_left == 0) {
        if (f->tear && n >= 1) {
            struct iovec half = {iov[0].iov_base, iov[0].iov_len / 2};
            (void)efs_content_fd_ops.writev((void *)(intptr_t)f->fd, &half, 1, off);
        }
        return -EIO;
    }
    if (f->writes_left > 0)
        f->writes_left--;
    return efs_content_fd_ops.writev((void *)(intptr_t)f->fd, iov, n, off);
}

static int faulty_reserve(void *arg, uint64_t off, uint64_t len)
{
    struct faulty *f = arg;
    return f->nospace ? -ENOSPC : efs_content_fd_ops.reserve((void *)(intptr_t)f->fd, off, len);
}

static int faulty_set_len(void *arg, uint64_t len)
{
    return efs_content_fd_ops.set_len((void *)(intptr_t)((struct faulty *)arg)->fd, len);
}

static const efs_content_ops faulty_ops = {
    .read = faulty_read, .writev = faulty_writev, .reserve = faulty_reserve, .set_len = faulty_set_len};

static void test_faults(void)
{
    enum { BS = 4096, N = 8 * BS };
    struct fixture f;
    int fd = temp_file("faults");
    struct faulty fy = {.fd = fd, .writes_left = -1};
    efs_content_io io = {&faulty_ops, &fy}, fio = efs_content_fd_io(fd);
    uint8_t *model = malloc(N), *data = malloc(N), *got = malloc(N);
    struct stat st;
    CHECK(model && data && got);
    fixture_open(&f, BS, 0, 0);
    fill(model, N, 99);
    CHECK_EQ_INT(cwrite(&f, &io, model, N, 0), 0);

    /* A write whose backend fails half way (torn): an error, the size unchanged, every block reads as its
     * old or its new plaintext or fails authentication — never anything else. */
    fill(data, N, 5);
    fy.writes_left = 0;
    fy.tear = true;
    CHECK_EQ_INT(cwrite(&f, &io, data, 3 * BS + 100, BS / 2), -EIO);
    fy.writes_left = -1;
    CHECK_EQ_INT(csize(&f), N);
    for (int b = 0; b < N / BS; b++) {
        ssize_t n = cread(&f, &io, got, BS, (uint64_t)b * BS);
        if (n < 0) {
            CHECK_EQ_INT(n, -EIO);
            continue;
        }
        CHECK_EQ_INT(n, BS);
        for (int i = 0; i < BS; i++) {
            uint64_t at = (uint64_t)b * BS + (uint64_t)i;
            bool in_write = at >= BS / 2 && at < BS / 2 + 3 * BS + 100;
            CHECK(got[i] == model[at] || (in_write && got[i] == data[at - BS / 2]));
        }
    }
    /* rewrite the whole content; then tear block 2 on disk: its first half new, its second half old */
    CHECK_EQ_INT(cwrite(&f, &io, model, N, 0), 0);
    {
        uint64_t so = efs_stored_off(0, BS, 2), sl = BS + EFS_BLOCK_OVERHEAD;
        uint8_t *old = malloc(sl);
        CHECK(old && pread(fd, old, sl, (off_t)so) == (ssize_t)sl);
        CHECK_EQ_INT(cwrite(&f, &io, data, BS, 2 * BS), 0);
        CHECK(pwrite(fd, old + sl / 2, sl - sl / 2, (off_t)(so + sl / 2)) == (ssize_t)(sl - sl / 2));
        free(old);
        CHECK_EQ_INT(cread(&f, &io, got, BS, 2 * BS), -EIO);
        CHECK_EQ_INT(cread(&f, &io, got, 3 * BS, BS), -EIO); /* a range that covers it */
        CHECK_EQ_INT(cread(&f, &io, got, BS, 3 * BS), BS);   /* its neighbours are intact */
        CHECK(memcmp(got, model + 3 * BS, BS) == 0);
        CHECK_EQ_INT(cread(&f, &io, got, BS, BS), BS);
        CHECK(memcmp(got, model + BS, BS) == 0);
    }
    /* a tampered byte in block 5's ciphertext; its nonce; its tag */
    CHECK_EQ_INT(cwrite(&f, &io, model, N, 0), 0);
    {
        const uint64_t where[] = {EFS_NONCE + 100, 3, EFS_NONCE + BS + 5};
        for (size_t i = 0; i < 3; i++) {
            uint64_t so = efs_stored_off(0, BS, 5) + where[i];
            uint8_t byte;
            CHECK(pread(fd, &byte, 1, (off_t)so) == 1);
            byte ^= 0x01;
            CHECK(pwrite(fd, &byte, 1, (off_t)so) == 1);
            CHECK_EQ_INT(cread(&f, &fio, got, 10, 5 * BS + 20), -EIO);
            CHECK_EQ_INT(cread(&f, &fio, got, BS, 4 * BS), BS);
            byte ^= 0x01;
            CHECK(pwrite(fd, &byte, 1, (off_t)so) == 1);
            CHECK_EQ_INT(cread(&f, &fio, got, 10, 5 * BS + 20), 10);
        }
    }
    /* block 6 swapped into block 7's place: bound to its number, it fails there */
    {
        uint64_t sl = BS + EFS_BLOCK_OVERHEAD;
        uint8_t *b6 = malloc(sl);
        CHECK(b6 && pread(fd, b6, sl, (off_t)efs_stored_off(0, BS, 6)) == (ssize_t)sl);
        CHECK(pwrite(fd, b6, sl, (off_t)efs_stored_off(0, BS, 7)) == (ssize_t)sl);
        free(b6);
        CHECK_EQ_INT(cread(&f, &fio, got, BS, 7 * BS), -EIO);
        CHECK_EQ_INT(cwrite(&f, &io, model + 7 * BS, BS, 7 * BS), 0);
    }
    /* no space: the write fails before anything is written; the content is as it was */
    fy.nospace = true;
    CHECK_EQ_INT(cwrite(&f, &io, data, 2 * BS, N - 10), -ENOSPC);
    CHECK_EQ_INT(ctrunc(&f, &io, 2 * N), -ENOSPC);
    fy.nospace = false;
    check_model(&f, &io, model, N);
    CHECK(fstat(fd, &st) == 0);
    CHECK_EQ_INT(st.st_size, efs_data_len(N, BS));
    fixture_close(&f);
    close(fd);
    free(model);
    free(data);
    free(got);
}

/* ---- a volume-shaped backend ---------------------------------------------------------------- */

#define SECTOR 4096u
#define CHUNK_SECTORS 128u
#define CHUNK_STORED ((uint64_t)CHUNK_SECTORS * (SECTOR + EFS_BLOCK_OVERHEAD))
#define CHUNKS 4u

/* Chunk files chunk.N, created when first written; an absent one reads as zeros (holes). */
struct chunks {
    int fds[CHUNKS];
};

static int chunk_fd(struct chunks *m, uint64_t idx, bool create)
{
    if (m->fds[idx] < 0 && create) {
        char name[32];
        snprintf(name, sizeof name, "chunk.%u", (unsigned)idx);
        m->fds[idx] = temp_file(name);
    }
    return m->fds[idx];
}

static ssize_t chunks_read(void *arg, void *buf, size_t len, uint64_t off)
{
    struct chunks *m = arg;
    size_t done = 0;
    while (done < len) {
        uint64_t idx = (off + done) / CHUNK_STORED, in = (off + done) % CHUNK_STORED;
        size_t n = len - done < CHUNK_STORED - in ? len - done : (size_t)(CHUNK_STORED - in);
        int fd;
        ssize_t r = 0;
        if (idx >= CHUNKS)
            break;
        fd = chunk_fd(m, idx, false);
        if (fd >= 0 && (r = pread(fd, (uint8_t *)buf + done, n, (off_t)in)) < 0)
            return -errno;
        memset((uint8_t *)buf + done + r, 0, n - (size_t)r); /* never written: zeros */
        done += n;
    }
    return (ssize_t)done;
}

static int chunks_writev(void *arg, const struct iovec *iov, int count, uint64_t off)
{
    struct chunks *m = arg;
    for (int i = 0; i < count; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            uint64_t idx = off / CHUNK_STORED, in = off % CHUNK_STORED;
            size_t n = iov[i].iov_len - done < CHUNK_STORED - in ? iov[i].iov_len - done : (size_t)(CHUNK_STORED - in);
            if (idx >= CHUNKS)
                return -ENOSPC;
            if (pwrite(chunk_fd(m, idx, true), (uint8_t *)iov[i].iov_base + done, n, (off_t)in) != (ssize_t)n)
                return -EIO;
            done += n;
            off += n;
        }
    }
    return 0;
}

static int chunks_punch(void *arg, uint64_t off, uint64_t len)
{
    struct chunks *m = arg;
    while (len) {
        uint64_t idx = off / CHUNK_STORED, in = off % CHUNK_STORED;
        uint64_t n = len < CHUNK_STORED - in ? len : CHUNK_STORED - in;
        int fd = chunk_fd(m, idx, false);
        if (fd >= 0 && efs_content_fd_ops.punch((void *)(intptr_t)fd, in, n))
            return -EIO;
        off += n;
        len -= n;
    }
    return 0;
}

static const efs_content_ops chunks_ops = {.read = chunks_read, .writev = chunks_writev, .punch = chunks_punch};

/* AAD = "EVS1" ‖ lineage (16) ‖ u64 chunk ‖ u32 sector ‖ u64 generation; a subkey per chunk. */
struct volume {
    uint8_t lineage[16];
    uint64_t gen[CHUNKS];
    efs_file_keys subkey[CHUNKS];
};

static int volume_bind(const void *arg, uint64_t blockno, efs_block_binding *b)
{
    const struct volume *v = arg;
    uint64_t chunk = blockno / CHUNK_SECTORS;
    uint32_t sector = (uint32_t)(blockno % CHUNK_SECTORS);
    if (chunk >= CHUNKS)
        return -EINVAL;
    b->key = &v->subkey[chunk];
    memcpy(b->aad, "EVS1", 4);
    memcpy(b->aad + 4, v->lineage, 16);
    memcpy(b->aad + 20, &chunk, 8);
    memcpy(b->aad + 28, &sector, 4);
    memcpy(b->aad + 32, &v->gen[chunk], 8);
    b->aad_len = 40;
    return 0;
}

static void test_volume(void)
{
    const uint64_t vsize = (uint64_t)CHUNKS * CHUNK_SECTORS * SECTOR;
    struct chunks m;
    struct volume v;
    pthread_rwlock_t rw;
    efs_content_group *g;
    efs_content *c;
    efs_content_io io = {&chunks_ops, &m};
    efs_content_params p = {.block_size = SECTOR, .size = vsize, .flags = EFS_CONTENT_ZERO_HOLES,
                            .bind = volume_bind, .bind_arg = &v, .lock = &rw, .what = "volume"};
    uint8_t *buf = malloc(3 * SECTOR), *got = malloc(3 * SECTOR), zeros[SECTOR] = {0};
    uint8_t dek[EFS_DEK_LEN];
    CHECK(buf && got);
    for (unsigned i = 0; i < CHUNKS; i++)
        m.fds[i] = -1;
    memset(&v, 0, sizeof v);
    randombytes_buf(v.lineage, sizeof v.lineage);
    randombytes_buf(dek, sizeof dek);
    for (unsigned i = 0; i < CHUNKS; i++) {
        char info[32];
        snprintf(info, sizeof info, "test chunk %u", i);
        CHECK(efs_hkdf32(dek, sizeof dek, info, v.subkey[i].block_key) == 0);
        v.subkey[i].gen = efs_file_keys_new_gen();
        v.gen[i] = 1;
    }
    pthread_rwlock_init(&rw, NULL);
    CHECK(efs_content_group_new(NULL, NULL, &g) == 0);
    p.group = g;
    CHECK(efs_content_new(&p, &c) == 0);

    /* never written: zeros, and no chunk file is made by reading */
    pthread_rwlock_rdlock(&rw);
    CHECK_EQ_INT(efs_content_read(c, &io, got, 2 * SECTOR, vsize - SECTOR - 5), SECTOR + 5);
    pthread_rwlock_unlock(&rw);
    CHECK(got[0] == 0 && got[SECTOR] == 0 && !memcmp(got, zeros, SECTOR));
    CHECK(m.fds[CHUNKS - 1] < 0);

    /* a write across the chunk 0 / chunk 1 boundary, partial sectors at both ends */
    fill(buf, 3 * SECTOR, 3);
    memcpy(got, buf, 3 * SECTOR);
    CHECK_EQ_INT(efs_content_write(c, &io, got, 2 * SECTOR + 10, (uint64_t)CHUNK_SECTORS * SECTOR - SECTOR - 7), 0);
    pthread_rwlock_rdlock(&rw);
    CHECK_EQ_INT(efs_content_read(c, &io, got, 2 * SECTOR + 10, (uint64_t)CHUNK_SECTORS * SECTOR - SECTOR - 7),
                 2 * SECTOR + 10);
    CHECK(!memcmp(got, buf, 2 * SECTOR + 10));
    CHECK_EQ_INT(efs_content_read(c, &io, got, SECTOR, 0), SECTOR); /* the rest of chunk 0: zeros */
    pthread_rwlock_unlock(&rw);
    CHECK(!memcmp(got, zeros, SECTOR));

    /* a new generation of chunk 1 (as after a snapshot rewrote its catalog entry): its old sectors no
     * longer open; chunk 0's still do */
    v.gen[1]++;
    pthread_rwlock_rdlock(&rw);
    CHECK_EQ_INT(efs_content_read(c, &io, got, 10, (uint64_t)CHUNK_SECTORS * SECTOR), -EIO);
    CHECK_EQ_INT(efs_content_read(c, &io, got, 7, (uint64_t)CHUNK_SECTORS * SECTOR - 7), 7);
    pthread_rwlock_unlock(&rw);
    v.gen[1]--;

    /* discard: whole sectors punched (holes again), partial ones rewritten as zeros; the size stays */
    pthread_rwlock_wrlock(&rw);
    CHECK_EQ_INT(efs_content_discard(c, &io, (uint64_t)CHUNK_SECTORS * SECTOR - SECTOR - 7, 2 * SECTOR + 10), 0);
    CHECK_EQ_INT(efs_content_discard(c, &io, vsize - 1, 2), -EINVAL);
    CHECK_EQ_INT(efs_content_size(c), vsize);
    CHECK_EQ_INT(efs_content_read(c, &io, got, 3 * SECTOR, (uint64_t)CHUNK_SECTORS * SECTOR - 2 * SECTOR),
                 3 * SECTOR);
    CHECK(!memcmp(got, zeros, SECTOR) && !memcmp(got + SECTOR, zeros, SECTOR) &&
          !memcmp(got + 2 * SECTOR, zeros, SECTOR));
    /* a fixed-size store cannot be truncated */
    CHECK_EQ_INT(efs_content_truncate(c, &io, SECTOR), -EINVAL);
    pthread_rwlock_unlock(&rw);
    {
        uint8_t stored[SECTOR + EFS_BLOCK_OVERHEAD];
        CHECK_EQ_INT(chunks_read(&m, stored, sizeof stored, CHUNK_STORED), sizeof stored); /* punched */
        for (size_t i = 0; i < sizeof stored; i++)
            CHECK(stored[i] == 0);
    }

    efs_content_free(c);
    efs_content_group_free(g);
    pthread_rwlock_destroy(&rw);
    for (unsigned i = 0; i < CHUNKS; i++)
        if (m.fds[i] >= 0)
            close(m.fds[i]);
    free(buf);
    free(got);
}

/* efs_hkdf32 is RFC 5869 HKDF-SHA256 with an empty salt: test case 3 (IKM 0x0b × 22, no salt, no info),
 * the first 32 bytes of its OKM; and efs_file_keys_derive's shared extract equals two separate calls. */
static void test_hkdf(void)
{
    static const uint8_t want[32] = {0x8d, 0xa4, 0xe7, 0x75, 0xa5, 0x63, 0xc1, 0x8f, 0x71, 0x5f, 0x80,
                                     0x2a, 0x06, 0x3c, 0x5a, 0x31, 0xb8, 0xa1, 0x1f, 0x5c, 0x5e, 0xe1,
                                     0x87, 0x9e, 0xc3, 0x45, 0x4e, 0x5f, 0x3c, 0x73, 0x8d, 0x2d};
    uint8_t ikm[22], out[32], dek[EFS_DEK_LEN], a[32], b[32];
    efs_file_keys k;
    memset(ikm, 0x0b, sizeof ikm);
    CHECK(efs_hkdf32(ikm, sizeof ikm, "", out) == 0);
    CHECK(memcmp(out, want, 32) == 0);
    randombytes_buf(dek, sizeof dek);
    CHECK(efs_file_keys_derive(dek, &k) == 0);
    CHECK(efs_hkdf32(dek, sizeof dek, "envelopefs v1 block", a) == 0);
    CHECK(efs_hkdf32(dek, sizeof dek, "envelopefs v1 header-mac", b) == 0);
    CHECK(memcmp(a, k.block_key, 32) == 0 && memcmp(b, k.mac_key, 32) == 0 && k.gen != 0);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    test_hkdf();
    CHECK(mkdtemp(tmpdir));
    test_ranges();
    test_model(512, 0);
    test_model(4096, 1024);
    test_concurrent();
    test_faults();
    test_volume();
    {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        CHECK(system(cmd) == 0);
    }
    TEST_DONE();
}
