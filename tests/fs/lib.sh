# lib.sh — shared setup for the filesystem tests: a fresh key store and key, init, mount, and a trap
# that unmounts and cleans up. Source it; then call fs_setup [init options...].
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
T=$(mktemp -d /tmp/efs-test.XXXXXX)
export ENVELOPEFS_STORE=$T/store
CIPHER=$T/cipher MNT=$T/plain REF=$T/ref
mkdir -p "$CIPHER" "$MNT" "$REF"

fail() { echo "FAIL: $*" >&2; exit 1; }
fs_cleanup() {
  cd /
  for m in "$MNT" "$T"/mnt*; do mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }; done
  rm -rf "$T"
}
trap fs_cleanup EXIT

jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); [d:=d[k] for k in sys.argv[1].split(".")]; print(d)' "$1"; }

fs_mount() { "$B" mount "$CIPHER" "$MNT" "$@"; }
fs_unmount() { cd /; "$B" unmount "$MNT"; }
fs_remount() { fs_unmount; fs_mount "$@"; }
kms_calls() { getfattr --only-values -n user.envelopefs.stats "$MNT" | jget kms_calls; }

# fs_setup [init options]: store, key (alias/test), init CIPHER, mount on MNT
fs_setup() {
  "$B" kms init-store --generate-root-key >/dev/null
  KEY_ID=$("$B" kms create-key --description fs-test | jget KeyMetadata.KeyId)
  "$B" kms create-alias --alias-name alias/test --target-key-id "$KEY_ID"
  "$B" init "$CIPHER" --kms-key-id alias/test "$@" >/dev/null
  fs_mount
}

# expect_eio CMD...: the command fails and the error is EIO ("Input/output error")
expect_eio() {
  local out
  if out=$("$@" 2>&1 >/dev/null); then fail "expected EIO from: $*"; fi
  case $out in *"Input/output error"*) ;; *) fail "expected EIO from $*, got: $out";; esac
}
