#!/usr/bin/env bash
# vol_sign.sh — signed snapshot manifests: an ECC_NIST_P256 SIGN_VERIFY key signs a snapshot of a volume
# with data (create-snapshot --signing-key-id); `volume fsck --verify-signature` passes through the key
# service's Verify and offline with the PEM public key (get-public-key converted by openssl, and with no
# key service at all); it fails, exit 1, naming the block, after a byte of a chunk file is changed and
# after a map row is altered in the catalog (sqlite3); a signature made by another key fails (Verify,
# and the expected key); an unsigned snapshot says so; a store default key (volume set-signing-key)
# signs new snapshots; copies of a signed snapshot (shared, re-encrypted under another key) are
# re-signed and carry the source's signature, which verifies; an RSA key signs with RSASSA_PSS_SHA_256.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 absent"; exit 77; }
T=$(mktemp -d /tmp/vol-sign.XXXXXX)
export ENVELOPEFS_STORE=$T/store
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  cd /
  for v in $(ls "$T/store/volumes/run" 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT
CAT=$T/store/volumes/catalog.db
k() { "$B" kms "$@"; }
fsck() { "$B" volume fsck "$@" --verify-signature; }
# expect_fail WHAT RESULT TEXT ARGS...: fsck --verify-signature exits 1, JSON Result RESULT, stderr names TEXT
expect_fail() {
  local what=$1 result=$2 text=$3 rc=0; shift 3
  fsck "$@" >"$T/out" 2>"$T/err" || rc=$?
  [ "$rc" = 1 ] || fail "$what: expected exit 1, got $rc: $(cat "$T/out" "$T/err")"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["Result"]==sys.argv[2], j' "$T/out" "$result" \
    || fail "$what: expected Result $result: $(cat "$T/out")"
  grep -q -- "$text" "$T/err" || fail "$what: expected '$text' on stderr, got: $(cat "$T/err")"
}
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); [v := v[p] for p in sys.argv[2].split(".")]; print(v)' "$T/out" "$1"; }
pem() { k get-public-key --key-id "$1" --query PublicKey --output text | base64 -d >"$T/$2.der"
        openssl pkey -pubin -inform DER -in "$T/$2.der" -out "$T/$2.pem"; }

k init-store --generate-root-key >/dev/null
KEY=$(k create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --query KeyMetadata.Arn --output text)
OTHER=$(k create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --query KeyMetadata.Arn --output text)
RSA=$(k create-key --key-spec RSA_2048 --key-usage SIGN_VERIFY --query KeyMetadata.Arn --output text)
SYM=$(k create-key --query KeyMetadata.Arn --output text)
pem "$KEY" key
pem "$OTHER" other
pem "$RSA" rsa

# an attached volume written with dd (FUSE): its daemon takes the snapshot, the command signs it
if [ -e /dev/fuse ] && [ -w /dev/fuse ]; then
  W=$("$B" ec2 create-volume --size 1 --query VolumeId --output text)
  "$B" volume attach "$W" >/dev/null
  IMG=$("$B" ec2 describe-volumes --volume-ids "$W" --query 'Volumes[0].Attachments[0].Device' --output text)
  head -c 1M /dev/urandom | dd of="$IMG" bs=64k conv=notrunc,fsync status=none
  SW=$("$B" ec2 create-snapshot --volume-id "$W" --signing-key-id "$KEY" --query SnapshotId --output text)
  head -c 64k /dev/urandom | dd of="$IMG" bs=64k conv=notrunc,fsync status=none   # after the snapshot: copy on write
  fsck "$SW" >"$T/out" || fail "attached volume's signed snapshot: $(cat "$T/out")"
  [ "$(field Blocks)" = 2 ] || fail "attached snapshot blocks: $(cat "$T/out")"
  "$B" volume detach "$W"
  fsck "$SW" --public-key "$T/key.pem" >/dev/null || fail "attached snapshot after detach"
else
  echo "note: /dev/fuse not usable: the attached-volume case is skipped"
fi

# a volume with data: an image uploaded as a snapshot (blocks 0, 1, 3 written; 2 a hole), restored
truncate -s 2M "$T/img"
head -c 600000 /dev/urandom | dd of="$T/img" conv=notrunc status=none
head -c 524288 /dev/urandom | dd of="$T/img" bs=512k seek=3 conv=notrunc status=none
UP=$("$B" snapshot upload "$T/img" --query SnapshotId --output text)
V=$("$B" ec2 create-volume --snapshot-id "$UP" --query VolumeId --output text)

# a symmetric key cannot sign; a refused signature leaves no snapshot behind
nsnaps() { "$B" ec2 describe-snapshots --query 'Snapshots[*].SnapshotId' --output text | wc -w; }
n0=$(nsnaps)
out=$("$B" ec2 create-snapshot --volume-id "$V" --signing-key-id "$SYM" 2>&1) && fail "a symmetric key signed: $out"
case $out in *InvalidParameterValue*SIGN_VERIFY*) ;; *) fail "symmetric key: $out";; esac
[ "$(nsnaps)" = "$n0" ] || fail "an unsigned snapshot was left"

# signed snapshot; fsck --verify-signature through KMS Verify and offline (PEM), with and without a key service
"$B" ec2 create-snapshot --volume-id "$V" --signing-key-id "$KEY" >"$T/snap.json"
S=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["SnapshotId"])' "$T/snap.json")
grep -q '"SigningAlgorithm": "ECDSA_SHA_256"' "$T/snap.json" || fail "create-snapshot: no SigningAlgorithm: $(cat "$T/snap.json")"
fsck "$S" >"$T/out" || fail "fsck through KMS: $(cat "$T/out")"
[ "$(field Result)" = Valid ] && [ "$(field SignatureValid)" = True ] && [ "$(field VerifiedWith)" = KMS ] \
  && [ "$(field Blocks)" = 3 ] && [ "$(field SectorsAuthenticated)" = True ] || fail "fsck through KMS: $(cat "$T/out")"
[ "$(field ManifestDigest)" = "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ManifestDigest"])' "$T/snap.json")" ] \
  || fail "the manifest digest changed"
fsck "$S" --public-key "$T/key.pem" >"$T/out" || fail "fsck offline: $(cat "$T/out")"
[ "$(field VerifiedWith)" = PublicKey ] && [ "$(field SignatureValid)" = True ] || fail "offline: $(cat "$T/out")"
fsck "$S" --public-key "$T/key.pem" --no-authenticate --kms http://127.0.0.1:9 >"$T/out" \
  || fail "fsck without a key service: $(cat "$T/out")"
[ "$(field SectorsAuthenticated)" = False ] || fail "no key service yet authenticated: $(cat "$T/out")"
# the signature verifies with openssl's command line too: the manifest digest signed as a digest
sqlite3 "$CAT" "SELECT hex(signature) FROM snapshot_signatures WHERE snapshot='$S'" | xxd -r -p >"$T/sig"
sqlite3 "$CAT" "SELECT hex(manifest) FROM snapshot_signatures WHERE snapshot='$S'" | xxd -r -p >"$T/manifest"
openssl dgst -sha256 -verify "$T/key.pem" -signature "$T/sig" "$T/manifest" >/dev/null || fail "openssl does not verify"
"$B" volume fsck "$S" >/dev/null || fail "plain fsck"

# the wrong public key, an expected key other than the signer
expect_fail "another public key" SignatureInvalid "signature invalid" "$S" --public-key "$T/other.pem"
expect_fail "another expected key" SignatureInvalid "signature invalid" "$S" --signing-key-id "$OTHER"

# unsigned snapshots say so
expect_fail "unsigned" NoSignature "no signature" "$UP"

# a signature from another key (the record's signature replaced by one OTHER made over the same digest)
cp "$CAT" "$T/catalog.bak"
openssl dgst -sha256 -binary "$T/manifest" >"$T/digest"
k sign --key-id "$OTHER" --message "fileb://$T/digest" --message-type DIGEST --signing-algorithm ECDSA_SHA_256 \
  --query Signature --output text | base64 -d >"$T/othersig"
sqlite3 "$CAT" "UPDATE snapshot_signatures SET signature=x'$(xxd -p "$T/othersig" | tr -d '\n')' WHERE snapshot='$S'"
expect_fail "signature by another key (KMS)" SignatureInvalid "signature invalid" "$S"
expect_fail "signature by another key (PEM)" SignatureInvalid "signature invalid" "$S" --public-key "$T/key.pem"
# ... and the whole record re-signed by OTHER: its own key says valid, the key the verifier trusts does not
cp "$T/catalog.bak" "$CAT"
"$B" volume sign "$S" --signing-key-id "$OTHER" >/dev/null
fsck "$S" >/dev/null || fail "re-signed by OTHER, checked with the recorded key"
expect_fail "re-signed by another key" SignatureInvalid "signature invalid" "$S" --public-key "$T/key.pem"
expect_fail "re-signed by another key (expected key)" SignatureInvalid "signature invalid" "$S" --signing-key-id "$KEY"
cp "$T/catalog.bak" "$CAT"
rm -f "$CAT-wal" "$CAT-shm"
fsck "$S" >/dev/null || fail "restored catalog"

# a byte of a stored chunk changed: the manifest no longer matches, the block is named
G=$(sqlite3 "$CAT" "SELECT gen FROM maps WHERE owner='$S' AND block=1")
F=$(printf '%s/store/volumes/chunks/%02x/%016x' "$T" $((G & 255)) "$G")
[ -f "$F" ] || fail "no chunk file $F"
cp "$F" "$T/chunk.bak"
printf '\x5a' | dd of="$F" bs=1 seek=70000 conv=notrunc status=none
expect_fail "a chunk byte" ManifestMismatch "block 1 differs" "$S"
[ "$(field FirstDifferingBlock)" = 1 ] && [ "$(field FirstDifferingField)" = BlockMapDigest ] && [ "$(field DamagedBlocks)" = 1 ] \
  || fail "tampered chunk: $(cat "$T/out")"
expect_fail "a chunk byte (offline)" ManifestMismatch "block 1 differs" "$S" --public-key "$T/key.pem" --no-authenticate
cp "$T/chunk.bak" "$F"
fsck "$S" >/dev/null || fail "chunk restored"

# a map row altered in the catalog: block 3 pointed at block 0's chunk, then block 3's row deleted
G0=$(sqlite3 "$CAT" "SELECT gen FROM maps WHERE owner='$S' AND block=0")
G3=$(sqlite3 "$CAT" "SELECT gen FROM maps WHERE owner='$S' AND block=3")
sqlite3 "$CAT" "UPDATE maps SET gen=$G0 WHERE owner='$S' AND block=3"
expect_fail "a map row" ManifestMismatch "block 3 differs" "$S"
sqlite3 "$CAT" "DELETE FROM maps WHERE owner='$S' AND block=3"
expect_fail "a deleted map row" ManifestMismatch "block 3 is in the signed manifest but not" "$S"
sqlite3 "$CAT" "INSERT INTO maps (owner, block, gen) VALUES ('$S', 3, $G3)"
fsck "$S" >/dev/null || fail "map row restored"
# the recorded per-block digests altered too (to hide the block): still a mismatch, the block unknown
sqlite3 "$CAT" "UPDATE maps SET gen=$G0 WHERE owner='$S' AND block=3"
sqlite3 "$CAT" "UPDATE snapshot_block_digests SET sha256=zeroblob(32) WHERE snapshot='$S' AND block=3"
expect_fail "digests altered" ManifestMismatch "first differing block is unknown" "$S"
sqlite3 "$CAT" "UPDATE maps SET gen=$G3 WHERE owner='$S' AND block=3"
cp "$T/catalog.bak" "$CAT"
rm -f "$CAT-wal" "$CAT-shm"
# a changed snapshot row (its completion time) is named as the field
sqlite3 "$CAT" "UPDATE snapshots SET completed=completed+1 WHERE id='$S'"
expect_fail "a snapshot row" ManifestMismatch "CompletionTime differs" "$S"
cp "$T/catalog.bak" "$CAT"
rm -f "$CAT-wal" "$CAT-shm"

# copies of a signed snapshot are re-signed: a shared copy (same blocks) and one under another key
C=$("$B" ec2 copy-snapshot --source-snapshot-id "$S" --query SnapshotId --output text)
fsck "$C" >"$T/out" || fail "shared copy: $(cat "$T/out")"
[ "$(field SigningKeyId)" = "$KEY" ] && [ "$(field Source.SnapshotId)" = "$S" ] && [ "$(field Source.SignatureValid)" = True ] \
  && [ "$(field Source.SameBlocks)" = True ] || fail "shared copy provenance: $(cat "$T/out")"
DK=$(k create-key --query KeyMetadata.Arn --output text)
C2=$("$B" ec2 copy-snapshot --source-snapshot-id "$S" --kms-key-id "$DK" --signing-key-id "$RSA" --query SnapshotId --output text)
fsck "$C2" >"$T/out" || fail "re-encrypted copy: $(cat "$T/out")"
[ "$(field SigningAlgorithm)" = RSASSA_PSS_SHA_256 ] && [ "$(field Source.SignatureValid)" = True ] \
  && [ "$(field Source.SameBlocks)" = False ] || fail "re-encrypted copy: $(cat "$T/out")"
C3=$("$B" ec2 copy-snapshot --source-snapshot-id "$S" --kms-key-id "$DK" --rewrap-only --query SnapshotId --output text)
fsck "$C3" >"$T/out" || fail "rewrapped copy: $(cat "$T/out")"
[ "$(field Source.SameBlocks)" = True ] && [ "$(field SigningKeyId)" = "$KEY" ] || fail "rewrapped copy: $(cat "$T/out")"
fsck "$C2" --public-key "$T/rsa.pem" --source-public-key "$T/key.pem" >"$T/out" || fail "copy offline: $(cat "$T/out")"
[ "$(field Source.SignatureValid)" = True ] || fail "copy offline source: $(cat "$T/out")"
expect_fail "copy, wrong source key" SourceSignatureInvalid "source signature" "$C2" --public-key "$T/rsa.pem" \
  --source-public-key "$T/other.pem"
# the copy's recorded source signature tampered
sqlite3 "$CAT" "UPDATE snapshot_signatures SET source_signature=x'$(xxd -p "$T/othersig" | tr -d '\n')' WHERE snapshot='$C2'"
expect_fail "copy, tampered source signature" SourceSignatureInvalid "source signature" "$C2"

# a store default: new snapshots signed without the flag
"$B" volume set-signing-key "$KEY" >/dev/null
S2=$("$B" ec2 create-snapshot --volume-id "$V" --query SnapshotId --output text)
fsck "$S2" --public-key "$T/key.pem" >/dev/null || fail "default-key snapshot"
"$B" volume set-signing-key none >/dev/null
S3=$("$B" ec2 create-snapshot --volume-id "$V" --query SnapshotId --output text)
expect_fail "default cleared" NoSignature "no signature" "$S3"
# volume sign signs an existing (direct-API) snapshot
"$B" volume sign "$UP" --signing-key-id "$KEY" >/dev/null
fsck "$UP" --public-key "$T/key.pem" >/dev/null || fail "volume sign"

# a copy from another region (eu-west-1's store copying from this one, us-east-1): signed there with its own
# key, carrying the source's record, whose signature the source key's public key checks (eu-west-1's key
# service cannot: the key is us-east-1's)
E=$T/euw1 R=$T/regions.json
"$B" kms init-store --store "$E" --generate-root-key --region eu-west-1 >/dev/null
printf '{"regions": {"us-east-1": {"store": "%s"}, "eu-west-1": {"store": "%s"}}}\n' "$T/store" "$E" >"$R"
EKEY=$("$B" kms --store "$E" create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --query KeyMetadata.Arn --output text)
XC=$("$B" ec2 --store "$E" --regions "$R" copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 \
     --signing-key-id "$EKEY" --query SnapshotId --output text)
"$B" volume --store "$E" fsck "$XC" --verify-signature >"$T/out" || fail "cross-region copy: $(cat "$T/out")"
[ "$(field SigningKeyId)" = "$EKEY" ] && [ "$(field Source.SnapshotId)" = "$S" ] && [ "$(field Source.SigningKeyId)" = "$KEY" ] \
  && [ "$(field Source.SignatureValid)" = None ] || fail "cross-region copy provenance: $(cat "$T/out")"
"$B" volume --store "$E" fsck "$XC" --verify-signature --source-public-key "$T/key.pem" >"$T/out" \
  || fail "cross-region copy, source key: $(cat "$T/out")"
[ "$(field Source.SignatureValid)" = True ] || fail "cross-region source signature: $(cat "$T/out")"
expect_fail "cross-region copy, wrong source key" SourceSignatureInvalid "source signature" "$XC" --store "$E" \
  --source-public-key "$T/other.pem"
# without a key of its own region the copy is made unsigned, and says why
XU=$("$B" ec2 --store "$E" --regions "$R" copy-snapshot --source-snapshot-id "$S" --source-region us-east-1 \
     --query SnapshotId --output text 2>"$T/err")
grep -q "is not signed: its key" "$T/err" || fail "cross-region unsigned copy: no note: $(cat "$T/err")"
expect_fail "cross-region unsigned copy" NoSignature "no signature" "$XU" --store "$E"

# deleting a snapshot drops its signature rows
"$B" ec2 delete-snapshot --snapshot-id "$S2"
[ "$(sqlite3 "$CAT" "SELECT count(*) FROM snapshot_signatures WHERE snapshot='$S2'")" = 0 ] || fail "signature row left"
[ "$(sqlite3 "$CAT" "SELECT count(*) FROM snapshot_block_digests WHERE snapshot='$S2'")" = 0 ] || fail "digest rows left"
echo "vol_sign: ok"
