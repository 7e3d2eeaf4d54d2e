#!/usr/bin/env bash
# make-golden.sh VERSION — write tests/vol/golden/VERSION: a key store and the volume store beside it
# (STORE/volumes: catalog.db and the chunk files), made with the envelopefs binary in ENVELOPEFS_BIN
# through its CLI, and expected.json: what describe-volumes / describe-snapshots showed, the default
# key, and the SHA-256 of every volume's and snapshot's whole image, which vol_golden.sh checks a later
# build still reads. Needs root and /dev/fuse (volumes are written through `volume attach`).
#
# Every version holds (1 GiB volumes; a few 4 KiB sectors written, so the chunk files stay small):
#   V0  an empty volume under the default key (alias/aws/ebs, created on first use)
#   V1  under alias/golden-vol, tagged Name=golden; sectors written in blocks 0, 3, 7, then S1, then
#       block 3 rewritten and block 9 written, then S2 (incremental: shares blocks 0 and 7 with S1)
#   V2  restored from S1 (same key)
#   C1  copy-snapshot of S2 (same key: shares the chunks)
#   C3  copy-snapshot of S2 --kms-key-id alias/golden-vol-other --rewrap-only (the data key re-wrapped)
#   S3  `snapshot upload` of a 4 MiB image (EBS direct API) under alias/golden-vol
#   then modify-ebs-default-kms-key-id alias/golden-vol
# From v2 on (catalog format 2 and the tables added after format 1):
#   V3  restored from S1 under alias/golden-vol-other (lazy rekey: owner_lineages, format 2), block 0
#       written once more (moved to its own key; the others are still on S1's)
#   S4  create-snapshot of V3 --signing-key-id (ECC_NIST_P256): snapshot_signatures, snapshot_block_digests
#   C2  copy-snapshot of S4 --kms-key-id alias/golden-vol --signing-key-id (a full copy, re-signed,
#       carrying S4's signature); copies rows for C1, C2, C3
#   S1  shared with account 444455556666 (modify-snapshot-attribute: create_volume_permissions)
# From v3 on (chunk file version 2, the catalog still format 2):
#   V1  also block 12 before S1, each write flushed (fsync): sectors 0-3 written, then sectors 1-2, then
#       sector 2 once more — a chunk with both slot areas in use: the newest slot of sector 1 in area 1
#       (counter 2), of sector 2 in area 0 (counter 3, its counter-2 slot still in area 1), of sectors 0
#       and 3 in area 0 (counter 1, area 1 a hole); and after S1, block 9 written and then its sector 0
#       rewritten (counter 2, area 1). expected.json's chunk_areas records each slot's counter
#   C4  copy-snapshot of S1 --kms-key-id alias/golden-vol-copy (a third key: a full copy, completed)
#   P   copy-snapshot of S2 --kms-key-id alias/golden-vol-copy, incremental on C4 (blocks 0, 7, 12 shared
#       with it, 3 and 9 copied), run with ENVELOPEFS_COPY_BATCH=1 and killed with -9 while block 9's
#       batch was in flight: pending, 3 of 5 blocks recorded in copy_progress, block 9's chunk file an
#       orphan (no row), run/P.lock gone with run/ (a dead copier). expected.json's pending_copy records
#       its progress and what a resumed copy must hold
#
# v1 was made by the binary of commit af8bd3c (the first release with catalog format 1 that users may
# hold), v2 and v3 by later ones; expected.json names the commit. Run once per version; the tree is then
# checked in and never regenerated (docs/FORMAT.md "Golden vectors of the volume store").
set -euo pipefail
B=$(readlink -f "${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}")
VERSION=${1:?usage: make-golden.sh VERSION (v1: the catalog-format-1 set; v2 and later: the full set)}
VN=${VERSION#v}
case $VN in ''|*[!0-9]*) echo "VERSION is vN" >&2; exit 1;; esac
G=$(cd "$(dirname "$0")" && pwd)/$VERSION
[ -e "$G" ] && { echo "$G exists: golden stores are never regenerated" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "make-golden.sh needs /dev/fuse (volume attach)" >&2; exit 1; }
COMMIT=$(git -C "$(dirname "$B")" rev-parse HEAD)
T=$(mktemp -d /tmp/vol-golden-make.XXXXXX)
mkdir -p "$G"
export ENVELOPEFS_STORE=$G/store
VS=$G/store/volumes
cleanup() {
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$B" ec2 "$@" --output text; }
k() { "$B" kms "$@" --output text; }
sha() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }
model() { truncate -s 1G "$T/model-$1"; }   # what volume or snapshot $1 holds, kept here as a sparse file
clone() { cp --sparse=always "$T/model-$1" "$T/model-$2"; }
# put VOL BLOCK SECTOR SEED LEN: write LEN bytes (random.Random(SEED)) at that sector of the attached
# volume's image and of its model
put() {
  local img
  img=$(q describe-volumes --volume-ids "$1" --query 'Volumes[0].Attachments[0].Device')
  python3 - "$img" "$T/model-$1" $(($2 * 524288 + $3 * 4096)) "$4" "$5" <<'PY'
import os, random, sys
img, model, off, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
data = random.Random(seed).randbytes(n)
for p in (img, model):
    with open(p, "r+b") as f:
        f.seek(off); f.write(data); f.flush(); os.fsync(f.fileno())
PY
}
attach() { "$B" volume attach "$1" >/dev/null; }
detach() { "$B" volume detach "$1" >/dev/null; }
snap() { # snap VOL DESC [ARGS...] → snapshot id; its model is the volume's now
  local s v=$1 d=$2; shift 2
  s=$(q create-snapshot --volume-id "$v" --description "$d" "$@" --query SnapshotId)
  clone "$v" "$s"; echo "$s"
}

"$B" kms init-store --generate-root-key >/dev/null
CMK=$(k create-key --description golden-volumes --query KeyMetadata.Arn)
"$B" kms create-alias --alias-name alias/golden-vol --target-key-id "$CMK"
OTHER=$(k create-key --description golden-volumes-other --query KeyMetadata.Arn)
"$B" kms create-alias --alias-name alias/golden-vol-other --target-key-id "$OTHER"

V0=$(q create-volume --size 1 --query VolumeId); model "$V0"
V1=$(q create-volume --size 1 --kms-key-id alias/golden-vol \
       --tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=golden}]' --query VolumeId); model "$V1"
attach "$V1"
put "$V1" 0 0 golden-a 4096
put "$V1" 3 0 golden-b 8192
put "$V1" 7 5 golden-c 4096
if [ "$VN" -ge 3 ]; then   # block 12: both slot areas of a version-2 chunk (each put is flushed)
  put "$V1" 12 0 golden-i 16384
  put "$V1" 12 1 golden-j 8192
  put "$V1" 12 2 golden-k 4096
fi
detach "$V1"
S1=$(snap "$V1" golden-first)
attach "$V1"
put "$V1" 3 0 golden-d 4096
put "$V1" 9 0 golden-e 4096
[ "$VN" -lt 3 ] || put "$V1" 9 0 golden-e2 4096   # rewritten after a flush: area 1
detach "$V1"
S2=$(snap "$V1" golden-second)
V2=$(q create-volume --snapshot-id "$S1" --query VolumeId); clone "$S1" "$V2"
C1=$(q copy-snapshot --source-snapshot-id "$S2" --description golden-copy --query SnapshotId); clone "$S2" "$C1"
C3=$(q copy-snapshot --source-snapshot-id "$S2" --kms-key-id alias/golden-vol-other --rewrap-only \
       --description golden-rewrap --query SnapshotId); clone "$S2" "$C3"
truncate -s 4M "$T/upload.img"
python3 - "$T/upload.img" <<'PY'
import random, sys
with open(sys.argv[1], "r+b") as f:
    for off, seed in ((0, "golden-f"), (6 * 524288 + 2 * 4096, "golden-g")):
        f.seek(off); f.write(random.Random(seed).randbytes(4096))
PY
S3=$("$B" snapshot upload "$T/upload.img" --description golden-upload --kms-key-arn "$CMK" | jq -r .SnapshotId)
cp --sparse=always "$T/upload.img" "$T/model-$S3"; truncate -s 1G "$T/model-$S3"
q modify-ebs-default-kms-key-id --kms-key-id alias/golden-vol >/dev/null

SIGNED=""
if [ "$VERSION" != v1 ]; then
  SIG=$(k create-key --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY --description golden-signing --query KeyMetadata.Arn)
  V3=$(q create-volume --snapshot-id "$S1" --kms-key-id alias/golden-vol-other --query VolumeId); clone "$S1" "$V3"
  attach "$V3"
  put "$V3" 0 1 golden-h 4096
  detach "$V3"
  S4=$(snap "$V3" golden-rekeyed-signed --signing-key-id "$SIG")
  C2=$(q copy-snapshot --source-snapshot-id "$S4" --kms-key-id alias/golden-vol --signing-key-id "$SIG" \
         --description golden-copy-signed --query SnapshotId); clone "$S4" "$C2"
  q modify-snapshot-attribute --snapshot-id "$S1" --attribute createVolumePermission --operation-type add \
    --user-ids 444455556666 >/dev/null
  SIGNED="$S4 $C2"
  [ "$(sqlite3 "$VS/catalog.db" "SELECT v FROM meta WHERE k = 'format'")" = 2 ] || fail "the catalog is not format 2"
fi

PENDING=""
if [ "$VN" -ge 3 ]; then
  THIRD=$(k create-key --description golden-volumes-copy --query KeyMetadata.Arn)
  "$B" kms create-alias --alias-name alias/golden-vol-copy --target-key-id "$THIRD"
  C4=$(q copy-snapshot --source-snapshot-id "$S1" --kms-key-id alias/golden-vol-copy --description golden-copy-full \
         --query SnapshotId); clone "$S1" "$C4"
  # P: one block a batch, 0.9 s after each block before its batch commits; killed 0.5 s after the third
  # block's commit was seen, i.e. while block 9's batch sleeps with its chunk file written and synced
  ENVELOPEFS_COPY_BATCH=1 ENVELOPEFS_TEST_COPY_BLOCK_DELAY_MS=900 "$B" ec2 copy-snapshot --source-snapshot-id "$S2" \
    --kms-key-id alias/golden-vol-copy --description golden-copy-pending --output text >"$T/pending.out" 2>&1 &
  CP=$!
  P=$(python3 - "$VS/catalog.db" "$CP" <<'PY'
import os, signal, sqlite3, sys, time
db, pid = sys.argv[1], int(sys.argv[2])
end = time.time() + 120
while time.time() < end:
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        r = c.execute("SELECT snapshot FROM copy_progress WHERE blocks_done >= 3").fetchone()
        c.close()
    except sqlite3.Error:
        r = None
    if r:
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        print(r[0])
        sys.exit(0)
    time.sleep(0.005)
sys.exit("the copy never recorded 3 blocks")
PY
) || fail "the pending copy: $(cat "$T/pending.out")"
  wait "$CP" 2>/dev/null && fail "the copy to leave pending completed: $(cat "$T/pending.out")"
  clone "$S2" "$P"   # what it holds once resumed
  [ "$(q describe-snapshots --snapshot-ids "$P" --query 'Snapshots[0].State')" = pending ] || fail "$P is not pending"
  PENDING=$P
fi

# every snapshot downloads as its model (the binary that wrote the store agrees with what was written)
for s in $("$B" ec2 describe-snapshots | jq -r '.Snapshots[] | select(.State == "completed") | .SnapshotId'); do
  "$B" snapshot download "$s" "$T/dl" >/dev/null
  [ "$(sha "$T/dl")" = "$(sha "$T/model-$s")" ] || fail "snapshot $s does not download as written"
  "$B" volume fsck "$s" >/dev/null || fail "fsck $s"
  rm -f "$T/dl"
done
for v in $("$B" ec2 describe-volumes | jq -r '.Volumes[].VolumeId'); do "$B" volume fsck "$v" >/dev/null || fail "fsck $v"; done

"$B" ec2 describe-volumes >"$T/volumes.json"
"$B" ec2 describe-snapshots >"$T/snapshots.json"
"$B" ec2 get-ebs-default-kms-key-id >"$T/default.json"
for f in "$T"/model-*; do echo "${f##*/model-} $(sha "$f")"; done >"$T/shas"
python3 - "$G/expected.json" "$T" "$VERSION" "$COMMIT" "$CMK" "$OTHER" "$SIGNED" <<'PY'
import json, sys
out, t, version, commit, cmk, other, signed = sys.argv[1:8]
shas = dict(l.split() for l in open(f"{t}/shas"))
vols = json.load(open(f"{t}/volumes.json"))["Volumes"]
snaps = json.load(open(f"{t}/snapshots.json"))["Snapshots"]
exp = {"version": version, "made_by_commit": commit, "keys": {"golden-vol": cmk, "golden-vol-other": other},
       "default_kms_key_id": json.load(open(f"{t}/default.json"))["KmsKeyId"],
       "volumes": {v["VolumeId"]: {**{f: v.get(f) for f in ("Size", "State", "KmsKeyId", "SnapshotId", "Encrypted", "Tags")},
                                   "sha256": shas[v["VolumeId"]]} for v in vols},
       "snapshots": {s["SnapshotId"]: {**{f: s.get(f) for f in ("VolumeId", "VolumeSize", "State", "KmsKeyId",
                                                                "Description", "OwnerId", "Encrypted")},
                                       "sha256": shas[s["SnapshotId"]]} for s in snaps},
       "signed": signed.split()}
json.dump(exp, open(out, "w"), indent=2, sort_keys=True)
PY
if [ "$VERSION" != v1 ]; then
  for s in $SIGNED; do "$B" volume fsck "$s" --verify-signature >"$T/verify-$s.json" || fail "verify $s"; done
  python3 - "$G/expected.json" "$V3" "$S1" "$("$B" volume status "$V3")" \
    "$("$B" ec2 describe-snapshot-attribute --snapshot-id "$S1" --attribute createVolumePermission)" "$T" $SIGNED <<'PY'
import json, sys
p, v3, s1, status, attr, t = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
exp = json.load(open(p))
exp["signatures"] = {}
for s in sys.argv[7:]:
    r = json.load(open(f"{t}/verify-{s}.json"))
    assert r["Result"] == "Valid" and r["SignatureValid"], r
    exp["signatures"][s] = {f: r[f] for f in ("SigningKeyId", "SigningAlgorithm", "SignedManifestDigest", "Blocks")}
    if "Source" in r:
        exp["signatures"][s]["Source"] = {f: r["Source"].get(f) for f in ("SnapshotId", "SigningKeyId", "ManifestDigest")}
exp["lazy_rekey"] = {"volume": v3, "BlocksOnOtherKeys": status["BlocksOnOtherKeys"], "RekeyState": status["RekeyState"],
                     "SourceKmsKeyIds": status.get("SourceKmsKeyIds")}
exp["shared"] = {s1: sorted(p["UserId"] for p in attr["CreateVolumePermissions"])}
json.dump(exp, open(p, "w"), indent=2, sort_keys=True)
PY
fi
if [ "$VN" -ge 3 ]; then
  # the pending copy's chunks so far (the orphan aside) are whole: what vol_golden's fsck of every snapshot expects
  "$B" volume fsck "$PENDING" >"$T/fsck-pending" 2>&1 || fail "fsck of the pending copy $PENDING: $(cat "$T/fsck-pending")"
  python3 - "$G/expected.json" "$VS" "$V1" "$PENDING" "$THIRD" \
    "$(q describe-snapshots --snapshot-ids "$PENDING" --query 'Snapshots[0].Progress')" <<'PY'
import json, os, sqlite3, struct, sys
p, vs, v1, pend, third, progress = sys.argv[1:7]
exp = json.load(open(p))
db = sqlite3.connect(f"{vs}/catalog.db")
exp["catalog_format"] = int(db.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()[0])
exp["chunk_version"] = 2
exp["keys"]["golden-vol-copy"] = third
path = lambda g: f"{vs}/chunks/{g & 0xff:02x}/{g:016x}"
rows = {r[0] for r in db.execute("SELECT gen FROM chunks")}
files = {int(f, 16) for _, _, fs in os.walk(f"{vs}/chunks") for f in fs}
for g in files:   # every chunk this build wrote is version 2 (the orphan as well)
    h = open(path(g), "rb").read(6)
    assert h[:4] == b"EVC1" and struct.unpack("<H", h[4:6])[0] == 2, (g, h)
def areas(g):   # sector -> [counter of its area-0 slot, of its area-1 slot] (0: a hole), written sectors only
    d = open(path(g), "rb").read()
    slot = lambda s, a: 64 + 4128 * (s + 128 * a)
    ctr = lambda o: struct.unpack("<I", d[o:o + 4])[0] if len(d) >= o + 4 else 0
    return {str(s): [ctr(slot(s, 0)), ctr(slot(s, 1))] for s in range(128) if ctr(slot(s, 0)) or ctr(slot(s, 1))}
exp["chunk_areas"] = []
for blk, want in ((12, {"0": [1, 0], "1": [1, 2], "2": [3, 2], "3": [1, 0]}), (9, {"0": [1, 2]})):
    g = db.execute("SELECT gen FROM maps WHERE owner = ? AND block = ?", (v1, blk)).fetchone()[0]
    ctrs = db.execute("SELECT ctrs FROM chunks WHERE gen = ?", (g,)).fetchone()[0]
    cat = {str(s): c for s, c in enumerate(struct.unpack("<128I", ctrs)) if c}
    got = areas(g)
    assert got == want, (blk, got, want)
    assert cat == {s: max(c) for s, c in got.items()}, (blk, cat)   # the last flush recorded the newest
    exp["chunk_areas"].append({"owner": v1, "block": blk, "gen": g, "slots": got, "catalog_ctrs": cat,
                               "owners": sorted(r[0] for r in db.execute("SELECT owner FROM maps WHERE gen = ?", (g,)))})
r = db.execute("SELECT source_snapshot, base, key_arn, blocks_total, blocks_done, blocks_copied, blocks_shared, "
               "next_block, runs FROM copy_progress WHERE snapshot = ?", (pend,)).fetchone()
assert r, "no copy_progress row"
pc = dict(zip(("source_snapshot", "base", "key_arn", "blocks_total", "blocks_done", "blocks_copied", "blocks_shared",
               "next_block", "runs"), r))
assert (pc["blocks_total"], pc["blocks_done"], pc["blocks_copied"], pc["blocks_shared"], pc["next_block"]) == (5, 3, 1, 2, 8), pc
orphans = sorted(files - rows)
assert len(orphans) == 1 and not rows - files, (orphans, rows - files)
pc.update(snapshot=pend, Progress=progress, orphans=orphans, key_alias="alias/golden-vol-copy",
          completed={"blocks_copied": 2, "blocks_shared": 3})
exp["pending_copy"] = pc
json.dump(exp, open(p, "w"), indent=2, sort_keys=True)
PY
fi
# only what a later build reads: no run/ directory, no WAL left behind
rm -rf "$VS/run"
for f in "$VS/catalog.db" "$G/store/keystore.db"; do
  [ ! -s "$f-wal" ] || fail "$f-wal left behind"; rm -f "$f-wal" "$f-shm"
done
echo "wrote $G ($(du -sh --apparent-size "$G" | cut -f1), made by $COMMIT)"
