#!/usr/bin/env bash
# fs_golden.sh — golden vectors for the on-disk formats: tests/fs/golden/v1 is a key store and an
# encrypted directory written by format version 1 (keystore format 1, config format 1, file header
# version 1, KMS blob version 1). Every later version must still mount and read it exactly.
. "$(dirname "$0")/lib.sh"
G=$(dirname "$0")/golden/v1
cp -a "$G/store" "$T/gstore"; cp -a "$G/cipher" "$T/gcipher"
chmod 700 "$T/gstore"; chmod 600 "$T/gstore/root.key"   # git does not keep modes
export ENVELOPEFS_STORE=$T/gstore
"$B" fsck "$T/gcipher" --kms "local:$T/gstore" >/dev/null || fail "fsck of the golden tree"
"$B" mount "$T/gcipher" "$MNT" --kms "local:$T/gstore"
[ "$(cat "$MNT/hello.txt")" = "hello, golden world" ] || fail "hello.txt"
[ "$(cat "$MNT/dir/sub/nested.txt")" = nested ] || fail "nested.txt"
[ "$(readlink "$MNT/dir/link")" = ../hello.txt ] || fail "symlink target"
[ "$(stat -c %s "$MNT/empty")" = 0 ] || fail "empty file"
want=$(python3 -c "
import hashlib, random
r = random.Random(42); print(hashlib.sha256(bytes(r.randrange(256) for _ in range(10000))).hexdigest())")
[ "$(sha256sum <"$MNT/blocks.bin" | cut -d' ' -f1)" = "$want" ] || fail "blocks.bin"
[ "$(stat -c %s "$MNT/blocks.bin")" = 10000 ] || fail "blocks.bin size"
echo "fs_golden: the version-1 tree reads back exactly"
