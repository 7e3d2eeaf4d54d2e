/*
 * names.h — encrypted file names (docs/FORMAT.md "Encrypted names"): deterministic AES-256-SIV under
 * the filesystem's name key with the parent directory's id as associated data, encoded in unpadded
 * base64url; names whose encoding would exceed 255 bytes are stored as "L.<hash>" with the full
 * encoding in a sidecar "L.<hash>.name". Pure functions except the *_at helpers, which do I/O on a
 * backing directory fd. Error convention 0 / -errno (-EBADMSG: a name fails authentication).
 */
#ifndef ENVELOPEFS_FS_NAMES_H
#define ENVELOPEFS_FS_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EFS_DIRID_LEN 16
#define EFS_DIRID_NAME "envelopefs.dirid"
#define EFS_BACKING_MAX 256   /* NAME_MAX + NUL */
#define EFS_ENC_MAX 512       /* base64url of 16 + 255 bytes, + NUL */

typedef struct efs_names efs_names;

/* "/proc/self/fd/N": the path through which calls that refuse an O_PATH descriptor (xattrs, chmod,
 * utimes) reach the file it refers to. Returns buf. */
#define EFS_PROCPATH_MAX 32
char *efs_procpath(int fd, char buf[EFS_PROCPATH_MAX]);

/* key: 64 bytes (AES-256-SIV). Copied into locked memory. */
int efs_names_new(const uint8_t key[64], efs_names **out);
void efs_names_free(efs_names *n);

/* Encrypt name (1..255 bytes, no '/' or NUL) in directory dirid. backing receives the backing entry
 * name; when *is_long, full receives the full encoding to store in the sidecar. */
int efs_name_encrypt(efs_names *n, const uint8_t dirid[EFS_DIRID_LEN], const char *name, char backing[EFS_BACKING_MAX],
                     bool *is_long, char full[EFS_ENC_MAX]);
/* Decrypt a full encoding (a short backing name, or a sidecar's content). out: ≥ 256 bytes. */
int efs_name_decrypt(efs_names *n, const uint8_t dirid[EFS_DIRID_LEN], const char *enc, char out[256]);

/* What a backing entry is. */
enum efs_entry_kind { EFS_ENTRY_NAME, EFS_ENTRY_LONG, EFS_ENTRY_INTERNAL };
enum efs_entry_kind efs_name_kind(const char *backing);
/* Sidecar file name for a long backing name. */
void efs_longname_sidecar(const char *backing, char out[EFS_BACKING_MAX]);

/* Directory ids ("EFD1" ‖ 16 random bytes): in the directory's xattr EFS_XATTR_DIRID (config format 3,
 * in_xattr) or in its file EFS_DIRID_NAME (formats 1-2). dirfd: the directory (O_PATH will do). Read; create
 * one durably in a new, still invisible directory. -EIO when missing or malformed. */
#define EFS_XATTR_DIRID "user.envelopefs.dirid"
int efs_dirid_read_at(int dirfd, bool in_xattr, uint8_t out[EFS_DIRID_LEN]);
int efs_dirid_create_at(int dirfd, bool in_xattr, uint8_t out[EFS_DIRID_LEN]);
/* Write a fresh id into a new, still invisible directory (dirfd, opened for reading) directly, not
 * durably: the caller fsyncs the directory, and *fd_out (the id file, returned open; -1 with in_xattr),
 * before the directory gets its name. 0 or -errno. */
int efs_dirid_write_at(int dirfd, bool in_xattr, int *fd_out) __attribute__((warn_unused_result));
/* Sidecars: write (durably) / read / remove. */
int efs_longname_write_at(int dirfd, const char *backing, const char *full);
int efs_longname_read_at(int dirfd, const char *backing, char full[EFS_ENC_MAX]);
int efs_longname_remove_at(int dirfd, const char *backing);
/* 0 if backing is the long-name form of full (the sidecar belongs to this entry). */
int efs_longname_check(const char *backing, const char *full);
/* The plaintext name of a backing entry in the directory open as dirfd: -ENOENT for internal entries
 * (directory id, sidecars, temporary files), -EBADMSG for a name that fails authentication. */
int efs_name_from_backing(efs_names *n, int dirfd, const uint8_t dirid[EFS_DIRID_LEN], const char *backing,
                          char out[256]);

#endif
