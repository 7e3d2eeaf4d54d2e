#!/usr/bin/env bash
# vol_ebs.sh — the EBS direct API over the volume store: start-snapshot, put-snapshot-block with its
# SHA-256 checked, complete-snapshot with the block count and the LINEAR aggregate checked, block
# listings with tokens and paging, list-changed-blocks between a parent and a child (and refused between
# unrelated snapshots), get-snapshot-block, and a volume restored from a snapshot so made.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
T=$(mktemp -d /tmp/vol-ebs.XXXXXX)
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  cd /
  for v in $(ls "$T/store/volumes/run" 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT
expect_err() { # expect_err CODE TEXT CMD...
  local code=$1 text=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 254 ] || fail "expected exit 254 from $*, got $rc: $out"
  case $out in *"An error occurred ($code)"*"$text"*) ;; *) fail "expected $code … $text from $*, got: $out";; esac
}
e() { "$B" ebs "$@"; }
sum() { openssl dgst -sha256 -binary "$1" | base64; }
put() { e put-snapshot-block --snapshot-id "$1" --block-index "$2" --block-data "fileb://$3" --data-length "$(stat -c %s "$3")" \
          --checksum "$(sum "$3")" --checksum-algorithm SHA256 >/dev/null; }
linear() { for f in "$@"; do openssl dgst -sha256 -binary "$f"; done | openssl dgst -sha256 -binary | base64; }

"$B" kms init-store --generate-root-key >/dev/null
for i in 0 5 5b 7; do head -c 524288 /dev/urandom > "$T/blk$i"; done
head -c 1000 /dev/urandom > "$T/short"
head -c 524288 /dev/zero > "$T/zero"

S=$(e start-snapshot --volume-size 1 --description direct --query SnapshotId --output text)
[ "$("$B" ec2 describe-snapshots --snapshot-ids "$S" --query 'Snapshots[0].State' --output text)" = pending ] || fail "not pending"
expect_err ValidationException INVALID_VOLUME_SIZE e start-snapshot --volume-size 0
expect_err ValidationException INVALID_VOLUME_SIZE e start-snapshot --volume-size 65537
expect_err ResourceNotFoundException SNAPSHOT_NOT_FOUND e list-snapshot-blocks --snapshot-id snap-0123456789abcdef0
put "$S" 0 "$T/blk0"
put "$S" 5 "$T/blk5"
expect_err ValidationException INVALID_CHECKSUM e put-snapshot-block --snapshot-id "$S" --block-index 1 \
  --block-data "fileb://$T/blk0" --data-length 524288 --checksum "$(sum "$T/blk5")" --checksum-algorithm SHA256
expect_err ValidationException INVALID_DATA_LENGTH e put-snapshot-block --snapshot-id "$S" --block-index 1 \
  --block-data "fileb://$T/short" --data-length 1000 --checksum "$(sum "$T/short")" --checksum-algorithm SHA256
expect_err ValidationException INVALID_BLOCK e put-snapshot-block --snapshot-id "$S" --block-index 2048 \
  --block-data "fileb://$T/blk0" --data-length 524288 --checksum "$(sum "$T/blk0")" --checksum-algorithm SHA256
expect_err ValidationException "" e complete-snapshot --snapshot-id "$S" --changed-blocks-count 3
expect_err ValidationException INVALID_CHECKSUM e complete-snapshot --snapshot-id "$S" --changed-blocks-count 2 \
  --checksum "$(linear "$T/blk5" "$T/blk0")" --checksum-algorithm SHA256 --checksum-aggregation-method LINEAR
[ "$(e complete-snapshot --snapshot-id "$S" --changed-blocks-count 2 --checksum "$(linear "$T/blk0" "$T/blk5")" \
      --checksum-algorithm SHA256 --checksum-aggregation-method LINEAR --query Status --output text)" = completed ] || fail "complete"
[ "$("$B" ec2 describe-snapshots --snapshot-ids "$S" --query 'Snapshots[0].State' --output text)" = completed ] || fail "not completed"
expect_err ValidationException INVALID_SNAPSHOT_ID put "$S" 1 "$T/blk0"

# listings and reads
[ "$(e list-snapshot-blocks --snapshot-id "$S" --query 'Blocks[*].BlockIndex' --output text)" = "0	5" ] || fail "list-snapshot-blocks"
TOK=$(e list-snapshot-blocks --snapshot-id "$S" --query 'Blocks[1].BlockToken' --output text)
GOT=$(e get-snapshot-block --snapshot-id "$S" --block-index 5 --block-token "$TOK" "$T/out" --query Checksum --output text)
cmp "$T/out" "$T/blk5" || fail "get-snapshot-block data"
[ "$GOT" = "$(sum "$T/blk5")" ] || fail "get-snapshot-block checksum"
expect_err ValidationException INVALID_BLOCK_TOKEN e get-snapshot-block --snapshot-id "$S" --block-index 0 --block-token "$TOK" "$T/out"

# a child on the parent: only its own puts are new; list-changed-blocks shows them
C=$(e start-snapshot --volume-size 1 --parent-snapshot-id "$S" --query SnapshotId --output text)
expect_err ValidationException "" e start-snapshot --volume-size 1 --parent-snapshot-id "$S" --encrypted
put "$C" 5 "$T/blk5b"
put "$C" 7 "$T/blk7"
e complete-snapshot --snapshot-id "$C" --changed-blocks-count 2 >/dev/null
[ "$(e list-snapshot-blocks --snapshot-id "$C" --query 'Blocks[*].BlockIndex' --output text)" = "0	5	7" ] || fail "child blocks"
[ "$(e list-changed-blocks --first-snapshot-id "$S" --second-snapshot-id "$C" --query 'ChangedBlocks[*].BlockIndex' --output text)" = "5	7" ] \
  || fail "list-changed-blocks"
[ "$(e list-changed-blocks --first-snapshot-id "$S" --second-snapshot-id "$C" --query 'ChangedBlocks[1].FirstBlockToken' --output text)" = None ] \
  || fail "block 7 is not in the first snapshot"
[ "$("$B" ec2 describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].DataEncryptionKeyId' --output text)" = \
  "$("$B" ec2 describe-snapshots --snapshot-ids "$S" --query 'Snapshots[0].DataEncryptionKeyId' --output text)" ] || fail "child lineage"
U=$(e start-snapshot --volume-size 1 --query SnapshotId --output text)
expect_err ValidationException UNRELATED_SNAPSHOTS e list-changed-blocks --first-snapshot-id "$S" --second-snapshot-id "$U"

# paging: 101 zero blocks, pages of 100
for i in $(seq 10 110); do put "$U" "$i" "$T/zero"; done
e complete-snapshot --snapshot-id "$U" --changed-blocks-count 101 >/dev/null
NT=$(e list-snapshot-blocks --snapshot-id "$U" --max-results 100 --query NextToken --output text)
[ "$NT" != None ] || fail "no NextToken"
[ "$(e list-snapshot-blocks --snapshot-id "$U" --max-results 100 --next-token "$NT" --query 'Blocks[*].BlockIndex' --output text)" = 110 ] \
  || fail "second page"
expect_err ValidationException INVALID_PAGE_TOKEN e list-snapshot-blocks --snapshot-id "$U" --next-token bogus

# a volume restored from the child reads its blocks, zeros elsewhere
V=$("$B" ec2 create-volume --snapshot-id "$C" --query VolumeId --output text)
IMG=$("$B" volume attach "$V" --query Image --output text)
cmp <(dd if="$IMG" bs=512k skip=0 count=1 status=none) "$T/blk0" || fail "block 0"
cmp <(dd if="$IMG" bs=512k skip=5 count=1 status=none) "$T/blk5b" || fail "block 5"
cmp <(dd if="$IMG" bs=512k skip=7 count=1 status=none) "$T/blk7" || fail "block 7"
cmp <(dd if="$IMG" bs=512k skip=1 count=1 status=none) "$T/zero" || fail "block 1"
"$B" volume detach "$V"
"$B" volume fsck "$C" >/dev/null || fail "fsck of the child"
# snapshot upload / download: an image with holes and a partial last block comes back identical, holes
# stay holes, all-zero blocks are not stored
truncate -s 3M "$T/img"
dd if="$T/blk0" of="$T/img" bs=512k seek=1 conv=notrunc status=none
head -c 100000 /dev/urandom | dd of="$T/img" bs=1 seek=$((3 * 1024 * 1024)) conv=notrunc status=none   # partial last block
UP=$("$B" snapshot upload "$T/img" --description image --query SnapshotId --output text)
[ "$(e list-snapshot-blocks --snapshot-id "$UP" --query 'Blocks[*].BlockIndex' --output text)" = "1	6" ] || fail "uploaded blocks"
"$B" snapshot download "$UP" "$T/back"
cmp <(head -c "$(stat -c %s "$T/img")" "$T/back") "$T/img" || fail "download differs from the upload"
[ "$(stat -c %s "$T/back")" = $((1 << 30)) ] || fail "the download is the volume's size"
[ "$(du -k "$T/back" | cut -f1)" -lt 4096 ] || fail "the download's holes were filled"
# NBD: the volume restored from the upload, served by nbdkit, compares equal to the image (qemu-img)
if command -v nbdkit >/dev/null && command -v qemu-img >/dev/null; then
  NV=$("$B" ec2 create-volume --snapshot-id "$UP" --query VolumeId --output text)
  "$B" volume attach "$NV" --nbd "$T/nbd.sock" >/dev/null
  qemu-img compare -f raw -F raw "$T/img" "nbd+unix:///?socket=$T/nbd.sock" >/dev/null || fail "qemu-img compare over NBD"
  NBD="nbd+unix:///?socket=$T/nbd.sock"
  qemu-io -f raw -c "write -P 7 4096 64k" -c flush "$NBD" >/dev/null || fail "a write over NBD"
  qemu-io -f raw -c "read -P 7 4096 64k" "$NBD" >/dev/null || fail "read back over NBD"   # exits 1 on a pattern mismatch
  qemu-io -f raw -c "discard 0 1M" -c flush "$NBD" >/dev/null || fail "a discard over NBD"
  qemu-io -f raw -c "read -P 0 0 1M" "$NBD" >/dev/null || fail "a discarded range is not zeros"
  "$B" volume detach "$NV"
  [ "$("$B" ec2 describe-volumes --volume-ids "$NV" --query 'Volumes[0].State' --output text)" = available ] || fail "NBD detach"
else
  echo "vol_ebs: nbdkit/qemu-img absent (scripts/deps installs them): NBD not checked" >&2
fi
expect_err InvalidSnapshot.NotFound "" "$B" snapshot download snap-0123456789abcdef0 "$T/nope"
echo "vol_ebs: ok"
