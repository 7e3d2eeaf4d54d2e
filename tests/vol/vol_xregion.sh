#!/usr/bin/env bash
# vol_xregion.sh — copy-snapshot between regions: two key stores with their volume stores, named in one
# regions file. A snapshot of us-east-1 is copied into eu-west-1 (read only from the source store, the
# source data key opened by the source region's key service, re-encrypted under eu-west-1's default key
# or a named one) and downloads identical; bad input is refused.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
T=$(mktemp -d /tmp/vol-xregion.XXXXXX)
unset ENVELOPEFS_STORE ENVELOPEFS_VOLUME_STORE ENVELOPEFS_ROOT_KEY_FILE ENVELOPEFS_REGIONS
A=$T/use1 E=$T/euw1 R=$T/regions.json
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  cd /
  for s in "$A" "$E"; do
    for v in $(ls "$s/volumes/run" 2>/dev/null | sed -n 's/\.json$//p'); do
      "$B" volume --store "$s" detach "$v" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$T"
}
trap cleanup EXIT
expect_err() { # expect_err CODE TEXT CMD...
  local code=$1 text=$2 out rc=0; shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 254 ] || fail "expected exit 254 from $*, got $rc: $out"
  case $out in *"An error occurred ($code)"*"$text"*) ;; *) fail "expected $code … $text from $*, got: $out";; esac
}
ea() { "$B" ec2 --store "$A" --regions "$R" "$@" --output text; }
ee() { "$B" ec2 --store "$E" --regions "$R" "$@" --output text; }
nfiles() { find "$1/volumes/chunks" -type f | wc -l; }

"$B" kms init-store --store "$A" --generate-root-key --region us-east-1 >/dev/null
"$B" kms init-store --store "$E" --generate-root-key --region eu-west-1 >/dev/null
printf '{"regions": {"us-east-1": {"store": "%s"}, "eu-west-1": {"store": "%s"}}}\n' "$A" "$E" >"$R"

# --- a snapshot in us-east-1 (an image through the direct API: blocks 0 and 2 written, holes around)
head -c 1572864 /dev/urandom >"$T/img"
dd if=/dev/zero of="$T/img" bs=512K seek=1 count=1 conv=notrunc status=none
truncate -s 4M "$T/img"
S=$("$B" snapshot --store "$A" upload "$T/img" --query SnapshotId --output text)
AKEY=$(ea describe-snapshots --snapshot-ids "$S" --query 'Snapshots[0].KmsKeyId')
n_a=$(nfiles "$A")
sum_a=$(sha256sum "$A/volumes/catalog.db" | cut -d' ' -f1)
touch "$T/mark"

# --- copied into eu-west-1: the default key there, identical bytes, the source untouched
C=$(ee copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 --encrypted --query SnapshotId)
case $C in snap-?????????????????) ;; *) fail "copy id $C";; esac
[ "$(ee describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].State')" = completed ] || fail "copy not completed"
CKEY=$(ee describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].KmsKeyId')
case $CKEY in arn:aws:kms:eu-west-1:*:key/*) ;; *) fail "copy's key $CKEY is not eu-west-1's";; esac
V0=$(ee create-volume --size 1 --query VolumeId)   # eu-west-1's default key, as the copy's
[ "$(ee describe-volumes --volume-ids "$V0" --query 'Volumes[0].KmsKeyId')" = "$CKEY" ] || fail "copy not under the default key"
[ "$(ee describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].Description')" = "[Copied $S from us-east-1]" ] \
  || fail "copy's description"
[ "$(ee describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].VolumeSize')" = 1 ] || fail "copy's size"
[ "$(ee describe-snapshots --snapshot-ids "$C" --query 'Snapshots[0].DataEncryptionKeyId')" != \
  "$(ea describe-snapshots --snapshot-ids "$S" --query 'Snapshots[0].DataEncryptionKeyId')" ] || fail "copy shares the data key"
[ "$(nfiles "$E")" = 2 ] || fail "copy stored $(nfiles "$E") chunks, expected 2"
"$B" snapshot --store "$E" download "$C" "$T/out" >/dev/null
cmp <(head -c 4M "$T/out") "$T/img" || fail "the copy downloads different bytes"
"$B" volume --store "$E" fsck "$C" >/dev/null || fail "fsck of the copy"
[ "$(nfiles "$A")" = "$n_a" ] || fail "the source store's chunks changed"
[ "$(sha256sum "$A/volumes/catalog.db" | cut -d' ' -f1)" = "$sum_a" ] || fail "the source catalog was written"
[ -z "$(find "$A/volumes" -newer "$T/mark" -type f ! -name 'catalog.db-shm' ! -name 'catalog.db-wal')" ] \
  || fail "the copy wrote into the source store: $(find "$A/volumes" -newer "$T/mark" -type f)"
ea describe-snapshots --query 'Snapshots[*].SnapshotId' | grep -q "$C" && fail "the copy shows in the source region"

# under a named key of eu-west-1; a volume restored from the copy there
EK=$("$B" kms --store "$E" create-key --description copies --query KeyMetadata.Arn --output text)
C2=$(ee copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 --kms-key-id "$EK" --description mine --query SnapshotId)
[ "$(ee describe-snapshots --snapshot-ids "$C2" --query 'Snapshots[0].KmsKeyId')" = "$EK" ] || fail "named key"
[ "$(ee describe-snapshots --snapshot-ids "$C2" --query 'Snapshots[0].Description')" = mine ] || fail "named description"
V=$(ee create-volume --snapshot-id "$C2" --query VolumeId)
[ "$(ee describe-volumes --volume-ids "$V" --query 'Volumes[0].KmsKeyId')" = "$EK" ] || fail "restored volume's key"

# the copy depends on its own key only: the source key disabled, the copy still downloads
"$B" kms --store "$A" disable-key --key-id "$AKEY"
expect_err KMS.DisabledException "" ee copy-snapshot --source-snapshot-id "$S" --source-region us-east-1
"$B" snapshot --store "$E" download "$C" "$T/out2" >/dev/null
cmp "$T/out" "$T/out2" || fail "the copy needed the source key"
"$B" kms --store "$A" enable-key --key-id "$AKEY"

# bad input: changes nothing
n_e=$(nfiles "$E")
expect_err InvalidParameterValue "ap-south-7" ee copy-snapshot --source-snapshot-id "$S" --source-region ap-south-7
expect_err InvalidSnapshot.NotFound "us-east-1" ee copy-snapshot --source-snapshot-id snap-0123456789abcdef0 --source-region us-east-1
expect_err InvalidSnapshot.NotFound "" ee copy-snapshot --source-snapshot-id "$S"   # not in eu-west-1 itself
expect_err InvalidParameterCombination "" ee copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 --kms-key-id "$EK" --rewrap-only
expect_err InvalidKmsKey.NotFound "" ee copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 --kms-key-id alias/nope
printf '{"regions": {"us-east-1": {"store": "%s", "volume_stor": "x"}}}\n' "$A" >"$T/bad.json"
expect_err InvalidParameterValue "volume_stor" "$B" ec2 --store "$E" --regions "$T/bad.json" copy-snapshot \
  --source-snapshot-id "$S" --source-region us-east-1
[ "$(nfiles "$E")" = "$n_e" ] || fail "a refused copy stored chunks"
# the source region's own region name: an in-store copy there, as before
C3=$(ea copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 --query SnapshotId)
[ "$(nfiles "$A")" = "$n_a" ] || fail "a same-key copy in us-east-1 copied data"
ea delete-snapshot --snapshot-id "$C3" >/dev/null

echo "vol_xregion: all checks passed"
