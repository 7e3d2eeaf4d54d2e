#!/usr/bin/env bash
# vol_xregion.sh — copy-snapshot between regions: two key stores with their volume stores, named in one
# regions file. A snapshot of us-east-1 is copied into eu-west-1 (read only from the source store, the
# source data key opened by the source region's key service, re-encrypted under eu-west-1's default key
# or a named one) and downloads identical; a multi-Region key replicated into eu-west-1 lets the copy open
# the source's data key there while us-east-1's key store is gone; a second snapshot of the same volume
# copies incrementally (only its changed blocks stored, the rest shared with the first copy); bad input is
# refused. An interrupted copy and its resume: vol_copy_resume.sh.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
T=$(mktemp -d /tmp/vol-xregion.XXXXXX)
unset ENVELOPEFS_STORE ENVELOPEFS_VOLUME_STORE ENVELOPEFS_ROOT_KEY_FILE ENVELOPEFS_REGIONS
A=$T/use1 E=$T/euw1 R=$T/regions.json
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  cd /
  [ -f "$T/server.pid" ] && kill "$(cat "$T/server.pid")" 2>/dev/null
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

# --- a multi-Region key replicated into eu-west-1: the copy opens the source's data key with the replica,
# so it works with us-east-1's key store out of reach (the regions file R2 names only its volume store)
MRK=$("$B" kms --store "$A" create-key --multi-region --query KeyMetadata.KeyId --output text)
"$B" kms --store "$A" --regions "$R" replicate-key --key-id "$MRK" --replica-region eu-west-1 >/dev/null
MARN_A=$("$B" kms --store "$A" describe-key --key-id "$MRK" --query KeyMetadata.Arn --output text)
MARN_E=$("$B" kms --store "$E" describe-key --key-id "$MRK" --query KeyMetadata.Arn --output text)
M=$("$B" snapshot --store "$A" upload "$T/img" --kms-key-arn "$MARN_A" --query SnapshotId --output text)
[ "$(ea describe-snapshots --snapshot-ids "$M" --query 'Snapshots[0].KmsKeyId')" = "$MARN_A" ] || fail "mrk snapshot's key"
R2=$T/regions-nokms.json
printf '{"regions": {"us-east-1": {"store": "%s", "volume_store": "%s"}, "eu-west-1": {"store": "%s"}}}\n' \
  "$T/unreachable" "$A/volumes" "$E" >"$R2"
em() { "$B" ec2 --store "$E" --regions "$R2" "$@" --output text; }
# the key-service part of us-east-1 is really absent: a single-Region source cannot be copied now
expect_err InternalError "cannot reach the key service of region us-east-1" \
  em copy-snapshot --source-snapshot-id "$S" --source-region us-east-1
CM=$(em copy-snapshot --source-snapshot-id "$M" --source-region us-east-1 --kms-key-id "$MRK" --query SnapshotId)
[ "$(em describe-snapshots --snapshot-ids "$CM" --query 'Snapshots[0].KmsKeyId')" = "$MARN_E" ] || fail "mrk copy's key"
"$B" snapshot --store "$E" download "$CM" "$T/outm" >/dev/null
cmp "$T/out" "$T/outm" || fail "the mrk copy downloads different bytes"
CM2=$(em copy-snapshot --source-snapshot-id "$M" --source-region us-east-1 --kms-key-id "$MARN_E" --query SnapshotId)
[ "$(em describe-snapshots --snapshot-ids "$CM2" --query 'Snapshots[0].KmsKeyId')" = "$MARN_E" ] || fail "replica ARN copy"
CM3=$(em copy-snapshot --source-snapshot-id "$M" --source-region us-east-1 --query SnapshotId)   # default key: still the replica opens it
[ "$(em describe-snapshots --snapshot-ids "$CM3" --query 'Snapshots[0].KmsKeyId')" = "$CKEY" ] || fail "mrk copy under the default key"
"$B" volume --store "$E" fsck "$CM3" >/dev/null || fail "fsck of the mrk copy"
# the replica's own state rules: disabled in eu-west-1, the copy is refused there
"$B" kms --store "$E" disable-key --key-id "$MRK"
expect_err KMS.DisabledException "" em copy-snapshot --source-snapshot-id "$M" --source-region us-east-1 --kms-key-id "$EK"
"$B" kms --store "$E" enable-key --key-id "$MRK"
# and through the source region's key service (R, reachable) the same copy works too
CM4=$(ee copy-snapshot --source-snapshot-id "$M" --source-region us-east-1 --kms-key-id "$MRK" --query SnapshotId)
"$B" snapshot --store "$E" download "$CM4" "$T/outm4" >/dev/null
cmp "$T/out" "$T/outm4" || fail "the second mrk copy"

# --- the source region given as a key-service endpoint (a server on us-east-1's key store): the data key is
# opened there, as the signed-in user (its audit trail shows the Decrypt)
"$B" kms --store "$A" create-access-key --user alice >"$T/ak.json"
AK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["AccessKey"]["AccessKeyId"])' "$T/ak.json")
SK=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["AccessKey"]["SecretAccessKey"])' "$T/ak.json")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
R3=$T/regions-endpoint.json
printf '{"regions": {"us-east-1": {"kms": "http://127.0.0.1:%s", "volume_store": "%s"}}}\n' "$PORT" "$A/volumes" >"$R3"
expect_err KMS.TransportError "" env AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" \
  "$B" ec2 --store "$E" --regions "$R3" copy-snapshot --source-snapshot-id "$S" --source-region us-east-1   # not serving yet
"$B" kms --store "$A" serve --listen "127.0.0.1:$PORT" --pid-file "$T/server.pid"
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break; sleep 0.1; done
CR=$(env AWS_ACCESS_KEY_ID="$AK" AWS_SECRET_ACCESS_KEY="$SK" "$B" ec2 --store "$E" --regions "$R3" copy-snapshot \
       --source-snapshot-id "$S" --source-region us-east-1 --query SnapshotId --output text) || { kill "$(cat "$T/server.pid")"; fail "copy via endpoint"; }
kill "$(cat "$T/server.pid")"
for _ in $(seq 50); do [ -f "$T/server.pid" ] || break; sleep 0.1; done
"$B" snapshot --store "$E" download "$CR" "$T/outr" >/dev/null
cmp "$T/out" "$T/outr" || fail "the copy through the endpoint differs"
"$B" kms --store "$A" lookup-audit --operation Decrypt --max-results 1 | grep -q '"Username": "alice"' \
  || fail "the source region's server did not open the data key"

# --- incremental copies (EBS's rule): a second snapshot of the same volume copied under the same key
# re-seals only the blocks changed since the first copy's source and shares the rest with that copy
copies_row() { # copies_row STORE SNAP → "base copied shared source_snapshot" from the destination's copies table
  python3 - "$1/volumes/catalog.db" "$2" <<'PY'
import sqlite3, sys
r = sqlite3.connect(sys.argv[1]).execute(
    "SELECT base, blocks_copied, blocks_shared, source_snapshot, source_region FROM copies WHERE snapshot=?", (sys.argv[2],)).fetchone()
print(" ".join(str(x) if x != "" else "-" for x in r) if r else "none")
PY
}
newbytes() { find "$1/volumes/chunks" -type f -newer "$2" -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
V=$(ea create-volume --size 1 --query VolumeId)
IMG=$("$B" volume --store "$A" attach "$V" --query Image --output text)
head -c 4M /dev/urandom | dd of="$IMG" bs=512K conv=notrunc,fsync status=none            # blocks 0-7
S1=$(ea create-snapshot --volume-id "$V" --query SnapshotId)
head -c 1M /dev/urandom | dd of="$IMG" bs=512K seek=2 conv=notrunc,fsync status=none     # blocks 2, 3
head -c 512K /dev/urandom | dd of="$IMG" bs=512K seek=20 conv=notrunc,fsync status=none  # block 20
S2=$(ea create-snapshot --volume-id "$V" --query SnapshotId)
"$B" volume --store "$A" detach "$V"
"$B" snapshot --store "$A" download "$S2" "$T/s2.img" >/dev/null
n0=$(nfiles "$E")
I1=$(ee copy-snapshot --source-snapshot-id "$S1" --source-region us-east-1 --query SnapshotId)
[ "$(nfiles "$E")" = $((n0 + 8)) ] || fail "the first copy stored $(( $(nfiles "$E") - n0 )) chunks, expected 8"
[ "$(copies_row "$E" "$I1")" = "- 8 0 $S1 us-east-1" ] || fail "first copy's record: $(copies_row "$E" "$I1")"
touch "$T/mark2"; sleep 1
n1=$(nfiles "$E")
I2=$(ee copy-snapshot --source-snapshot-id "$S2" --source-region us-east-1 --query SnapshotId)
[ "$(nfiles "$E")" = $((n1 + 3)) ] || fail "the incremental copy stored $(( $(nfiles "$E") - n1 )) chunks, expected 3"
[ "$(copies_row "$E" "$I2")" = "$I1 3 6 $S2 us-east-1" ] || fail "incremental copy's record: $(copies_row "$E" "$I2")"
nb=$(newbytes "$E" "$T/mark2")
[ "$nb" -le $((3 * 528448)) ] && [ "$nb" -ge $((3 * 524288)) ] || fail "the incremental copy wrote $nb bytes for 3 changed blocks"
[ "$(ee describe-snapshots --snapshot-ids "$I2" --query 'Snapshots[0].DataEncryptionKeyId')" = \
  "$(ee describe-snapshots --snapshot-ids "$I1" --query 'Snapshots[0].DataEncryptionKeyId')" ] || fail "incremental copy's lineage"
"$B" snapshot --store "$E" download "$I2" "$T/i2.img" >/dev/null
cmp "$T/s2.img" "$T/i2.img" || fail "the incremental copy differs from its source"
"$B" volume --store "$E" fsck "$I2" >/dev/null || fail "fsck of the incremental copy"
# the earlier copy deleted: the later one keeps every block (shared chunks are referenced, not owned)
ee delete-snapshot --snapshot-id "$I1" >/dev/null
[ "$(copies_row "$E" "$I1")" = none ] || fail "a deleted copy's record stays"
[ "$(nfiles "$E")" = $((n1 + 3 - 2)) ] || fail "deleting the first copy freed $(( n1 + 3 - $(nfiles "$E") )) chunks, expected 2"
"$B" snapshot --store "$E" download "$I2" "$T/i2b.img" >/dev/null
cmp "$T/s2.img" "$T/i2b.img" || fail "the incremental copy lost blocks with the earlier copy"
# another key: nothing to share, a full copy
n2=$(nfiles "$E")
I3=$(ee copy-snapshot --source-snapshot-id "$S2" --source-region us-east-1 --kms-key-id "$EK" --query SnapshotId)
[ "$(nfiles "$E")" = $((n2 + 9)) ] || fail "a copy under another key shared chunks"
[ "$(copies_row "$E" "$I3")" = "- 9 0 $S2 us-east-1" ] || fail "full copy's record: $(copies_row "$E" "$I3")"
# the same rule within one store: two copies under another key of us-east-1's own snapshots
AK2=$("$B" kms --store "$A" create-key --description in-store --query KeyMetadata.Arn --output text)
na=$(nfiles "$A")
L1=$(ea copy-snapshot --source-snapshot-id "$S1" --kms-key-id "$AK2" --query SnapshotId)
L2=$(ea copy-snapshot --source-snapshot-id "$S2" --source-region us-east-1 --kms-key-id "$AK2" --query SnapshotId)
[ "$(nfiles "$A")" = $((na + 8 + 3)) ] || fail "in-store copies stored $(( $(nfiles "$A") - na )) chunks, expected 8 + 3"
[ "$(copies_row "$A" "$L2")" = "$L1 3 6 $S2 us-east-1" ] || fail "in-store incremental record: $(copies_row "$A" "$L2")"
"$B" snapshot --store "$A" download "$L2" "$T/l2.img" >/dev/null
cmp "$T/s2.img" "$T/l2.img" || fail "the in-store incremental copy differs"
# a catalog from before the copies table opens and gets it (additive)
python3 -c 'import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); d.execute("DROP TABLE copies"); d.commit()' "$E/volumes/catalog.db"
ee describe-snapshots --snapshot-ids "$I2" --query 'Snapshots[0].State' >/dev/null || fail "an older catalog does not open"
[ "$(copies_row "$E" "$I2")" = none ] || fail "the copies table was not recreated empty"

# (kill -9 mid-copy between regions, the pending copy and its resume: vol_copy_resume.sh)

echo "vol_xregion: all checks passed"
