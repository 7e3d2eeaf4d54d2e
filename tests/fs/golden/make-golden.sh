#!/usr/bin/env bash
# make-golden.sh VERSION — write tests/fs/golden/VERSION: a fresh key store and an encrypted directory
# (default init options of the envelopefs binary in ENVELOPEFS_BIN) holding the files fs_golden.sh
# checks. Run once when a format changes; the tree is then checked in and never regenerated.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
G=$(cd "$(dirname "$0")" && pwd)/${1:?usage: make-golden.sh VERSION}
[ -e "$G" ] && { echo "$G exists: golden trees are never regenerated" >&2; exit 1; }
T=$(mktemp -d); trap 'mountpoint -q "$T/plain" && fusermount3 -u "$T/plain"; rm -rf "$T"' EXIT
mkdir -p "$G/cipher" "$T/plain"
export ENVELOPEFS_STORE=$G/store ENVELOPEFS_SPARES=0
"$B" kms init-store --generate-root-key >/dev/null
key=$("$B" kms create-key --description golden --query KeyMetadata.KeyId --output text)
"$B" init "$G/cipher" --kms-key-id "$key" >/dev/null
"$B" mount "$G/cipher" "$T/plain" --kms "local:$G/store"
cd "$T/plain"
echo "hello, golden world" >hello.txt
mkdir -p dir/sub; echo nested >dir/sub/nested.txt; ln -s ../hello.txt dir/link
: >empty
python3 -c "
import random, sys
r = random.Random(42); sys.stdout.buffer.write(bytes(r.randrange(256) for _ in range(10000)))" >blocks.bin
echo "long name" >"$(printf 'n%.0s' $(seq 255))"
# A symlink target too long for a backing symlink (from the long-symlink tree on): 3,500 bytes, kept
# sealed in .envelopefs-symlinks/ID; fs_golden.sh rebuilds the same target with long_target().
[ "${GOLDEN_LONG_SYMLINK:-0}" = 1 ] && ln -s "$(for i in $(seq 0 599); do printf 'd%04d/' "$i"; done | head -c 3500)" dir/long
cd /; fusermount3 -u "$T/plain"
sleep 0.5
# git keeps no xattrs: directory ids (config format 3) are kept beside the tree and restored by fs_golden.sh
(cd "$G/cipher" && getfattr -h -R -d -m '^user\.envelopefs\.' . 2>/dev/null) >"$G/xattrs.dump"
echo "wrote $G"
