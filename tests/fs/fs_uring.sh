#!/usr/bin/env bash
# fs_uring.sh — FUSE over io_uring (fs/uring.c), opt-in with ENVELOPEFS_IO_URING=1 and the kernel's
# fuse.enable_uring: with both, requests are served from the rings (the daemon counts them) and files,
# directories, links, xattrs, a large file and a tree read back exactly, also after a remount; with the
# kernel parameter off, the same request falls back to /dev/fuse; without the variable nothing changes.
# Skipped (77) on kernels without the parameter. The parameter is restored on exit. (scripts/test also runs
# every filesystem test over io_uring.)
. "$(dirname "$0")/lib.sh"
P=/sys/module/fuse/parameters/enable_uring
[ -e "$P" ] || { echo "SKIP: this kernel has no FUSE over io_uring"; exit 77; }
OLD=$(cat "$P")
trap 'echo "$OLD" >"$P"; fs_cleanup' EXIT
urings() { getfattr --only-values -n user.envelopefs.stats "$MNT" | jget uring_requests; }

# Asked for, but the kernel does not allow it: /dev/fuse, and a working mount.
echo N >"$P"
export ENVELOPEFS_IO_URING=1
fs_setup
echo hello >"$MNT/a"
[ "$(cat "$MNT/a")" = hello ] || fail "mount with io_uring asked for but off in the kernel"
[ "$(urings)" = 0 ] || fail "io_uring used although the kernel has it off"
fs_unmount

# Asked for and allowed.
echo Y >"$P"
fs_mount
u0=$(urings)
mkdir -p "$REF/t" "$MNT/t"
head -c 5000000 /dev/urandom >"$REF/t/big"
for i in $(seq 200); do printf 'file %s\n' "$i" >"$REF/t/f$i"; done
mkdir -p "$REF/t/d/e"; echo deep >"$REF/t/d/e/x"; ln -s ../f1 "$REF/t/d/lnk"
cp -a "$REF/t/." "$MNT/t/"
ln "$MNT/t/f2" "$MNT/t/hard" && ln "$REF/t/f2" "$REF/t/hard"
setfattr -n user.colour -v blue "$MNT/t/f3"
tar -C /usr/include -cf "$T/inc.tar" linux 2>/dev/null
mkdir "$MNT/tree" "$REF/tree"
tar -xf "$T/inc.tar" -C "$MNT/tree"; tar -xf "$T/inc.tar" -C "$REF/tree"
diff -r "$REF/t" "$MNT/t" || fail "the tree written over io_uring differs"
diff -r "$REF/tree" "$MNT/tree" || fail "the untarred tree differs"
u1=$(urings)
[ $((u1 - u0)) -gt 1000 ] || fail "only $((u1 - u0)) requests came over io_uring"
fs_remount
[ "$(urings)" -gt 0 ] || fail "io_uring not used after a remount"
diff -r "$REF/t" "$MNT/t" || fail "the tree differs after a remount"
diff -r "$REF/tree" "$MNT/tree" || fail "the untarred tree differs after a remount"
[ "$(getfattr --only-values -n user.colour "$MNT/t/f3")" = blue ] || fail "xattr over io_uring"
[ "$(stat -c %h "$MNT/t/hard")" = 2 ] || fail "hard link count over io_uring"
ls -lR "$MNT" >/dev/null
rm -rf "$MNT/tree" "$MNT/t"
[ -z "$(ls -A "$MNT" | grep -v '^a$')" ] || fail "rm -rf over io_uring left: $(ls -A "$MNT")"
fs_unmount
"$B" fsck "$CIPHER" >/dev/null || fail "fsck after io_uring"

# Allowed but not asked for: the default, /dev/fuse.
unset ENVELOPEFS_IO_URING
fs_mount
cat "$MNT/a" >/dev/null
[ "$(urings)" = 0 ] || fail "io_uring used without ENVELOPEFS_IO_URING=1"
fs_unmount
echo "fs_uring: ok"
