/*
 * uring_abi.h — the FUSE-over-io_uring part of the kernel's uapi fuse.h (protocol 7.42, Linux 6.14+),
 * which Debian 12's linux-libc-dev predates: the INIT flag, the two commands, and the layouts of a ring
 * entry's header buffer and of a command's payload in a 128-byte SQE. Shared by fs/uring.c and
 * bench/fuse-rtt.c.
 */
#ifndef EFS_URING_ABI_H
#define EFS_URING_ABI_H

#include <stdint.h>

#define EFS_FUSE_OVER_IO_URING (1ULL << 41) /* INIT flag: bit 9 of fuse_init_out.flags2 */
#define EFS_FUSE_OVER_IO_URING_FLAGS2 ((uint32_t)(EFS_FUSE_OVER_IO_URING >> 32))

enum efs_uring_cmd {
    EFS_URING_CMD_REGISTER = 1,          /* an entry's two buffers (iovec[2] at sqe->addr, len 2) */
    EFS_URING_CMD_COMMIT_AND_FETCH = 2,  /* the entry's reply; then wait for the next request */
};

struct efs_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;   /* from the kernel with a request; returned with its commit */
    uint32_t payload_sz;  /* bytes in the payload buffer: the request's, then the reply's */
    uint32_t padding;
    uint64_t reserved;
};

/* The header buffer of a ring entry. */
struct efs_uring_req_header {
    char in_out[128];     /* fuse_in_header in, fuse_out_header out */
    char op_in[128];      /* the operation's first argument (its fixed-size header) */
    struct efs_uring_ent_in_out ent;
};

/* In sqe->cmd of an IORING_OP_URING_CMD on the /dev/fuse descriptor. */
struct efs_uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;         /* the CPU queue */
    uint8_t padding[6];
};

#endif
