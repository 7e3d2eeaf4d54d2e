#!/usr/bin/env bash
# vol_audit_remote.sh — EC2's records when the keys come from a key service over HTTP (our own `kms serve` on
# loopback, then moto_server): every `ec2` verb and `volume attach`/`detach` run with `--kms URL` leaves
# exactly one record (eventSource ec2.amazonaws.com, the right eventName, errorCode on failures) in the volume
# store's own trail (VOLUME_STORE/trail: a trail-only key store with its 0600 root key), naming the caller as
# the EC2 side knows it (the access key and its account, userAgent, sourceIPAddress), never the key service's
# records; `volume validate-audit` (and `kms --store VOLUME_STORE/trail validate-audit`) passes, and finds an
# edited, deleted, inserted, reordered or truncated record on a copy of the trail, naming the first bad one;
# no data key or secret access key of the run is in the trail, its files or the logs. The EBS direct API's
# verbs leave one record each (eventSource ebs.amazonaws.com; the block calls as data events; failed and
# another account's calls too; no block data). Over the server's Unix socket unsigned, the record names the
# local user (unixPeer); a call whose record cannot be written fails with InternalError (EBS's
# InternalServerException) and prints no answer, get-snapshot-block writes no block, and an attachment is
# undone by its daemon (the volume attaches cleanly once the trail is back).
set -euo pipefail
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
source "$(dirname "$0")/../server/lib.sh"
export ENVELOPEFS_LOG_FILE=$T/daemons.log ENVELOPEFS_LOG=debug   # the server's and the attach daemons' logs
vol_cleanup() {
  for vs in "$T"/volumes*; do
    for v in $(ls "$vs"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume --volume-store "$vs" detach "$v" >/dev/null 2>&1 || true; done
  done
  [ -f "$T/unix.pid" ] && kill "$(cat "$T/unix.pid")" 2>/dev/null
  cleanup
}
trap vol_cleanup EXIT
start_server
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_REGION=us-east-1

# run_verbs URL VS: the verbs, each once (V and S: the volume and snapshot they made)
run_verbs() {
  local url=$1 vs=$2 v s rc out
  local g=(--kms "$url" --volume-store "$vs")
  v=$("$B" ec2 "${g[@]}" create-volume --size 1 --query VolumeId --output text)
  "$B" volume "${g[@]}" attach "$v" >/dev/null
  s=$("$B" ec2 "${g[@]}" create-snapshot --volume-id "$v" --description nightly --query SnapshotId --output text)
  "$B" ec2 "${g[@]}" describe-volumes --volume-ids "$v" >/dev/null
  rc=0; out=$("$B" ec2 "${g[@]}" delete-volume --volume-id "$v" 2>&1) || rc=$?
  [ $rc = 254 ] && [[ $out == *"(VolumeInUse)"* ]] || fail "$url: delete of an attached volume: exit $rc: $out"
  "$B" volume "${g[@]}" detach "$v" >/dev/null
  "$B" ec2 "${g[@]}" delete-snapshot --snapshot-id "$s" >/dev/null
  rc=0; out=$("$B" ec2 "${g[@]}" describe-snapshots --snapshot-ids snap-0123456789abcdef0 2>&1) || rc=$?
  [ $rc = 254 ] || fail "$url: describe of a missing snapshot: exit $rc: $out"
  "$B" ec2 "${g[@]}" get-ebs-default-kms-key-id >/dev/null
  rc=0; "$B" ec2 "${g[@]}" describe-volumes --no-such-flag >/dev/null 2>&1 || rc=$?   # a usage error: no call, no record
  [ $rc = 252 ] || fail "$url: a usage error exited $rc"
  V=$v S=$s
}

# check URL VS ACCOUNT VOL SNAP: the records, the trail's validation and its tamper evidence
check() {
  local url=$1 vs=$2 account=$3 v=$4 s=$5 seq rc
  local g=(--kms "$url" --volume-store "$vs")
  [ -f "$vs/trail/keystore.db" ] || fail "$url: no trail in $vs/trail"
  [ "$(stat -c %a "$vs/trail/root.key")" = 600 ] || fail "$url: the trail's root key is not 0600"
  "$B" volume "${g[@]}" lookup-events --max-results 1000 >"$T/events.json" || fail "$url: lookup-events"
  python3 - "$T/events.json" "$v" "$s" "$account" "$AK" <<'PY' || fail "$url: the EC2 records: see above"
import json, sys
path, vol, snap, account, ak = sys.argv[1:]
events = json.load(open(path))["Events"][::-1]   # oldest first
names = [e["EventName"] for e in events]
want = ["CreateVolume", "AttachVolume", "CreateSnapshot", "DescribeVolumes", "DeleteVolume", "DetachVolume",
        "DeleteSnapshot", "DescribeSnapshots", "GetEbsDefaultKmsKeyId"]
assert names == want, names    # exactly one record per call, nothing else (no key-service records here)
recs = [json.loads(e["CloudTrailEvent"]) for e in events]
for e, r in zip(events, recs):
    assert e["EventSource"] == r["eventSource"] == "ec2.amazonaws.com", r
    ui = r["userIdentity"]
    assert ui["type"] == "Unknown" and ui["accessKeyId"] == ak and ui["principalId"] == ak, ui
    assert ui["accountId"] == account and r["recipientAccountId"] == account, r
    assert e["AccessKeyId"] == ak, e
    assert r["userAgent"].startswith("envelopefs/") and "command/" in r["userAgent"], r["userAgent"]
    assert r["sourceIPAddress"] and r["awsRegion"] == "us-east-1", r
    assert r["readOnly"] == (r["eventName"].startswith(("Describe", "Get"))), r
    for k in ("eventTime", "requestID", "eventID", "requestParameters", "responseElements", "eventType"):
        assert k in r, (k, r)
by = list(zip(names, recs))
cv = by[0][1]
assert cv["requestParameters"] == {"size": "1"} and cv["responseElements"]["volumeId"] == vol, cv
assert cv["resources"] == [{"accountId": account, "type": "AWS::EC2::Volume"}], cv["resources"]
assert by[1][1]["requestParameters"] == {"volumeId": vol} and by[1][1]["responseElements"]["state"] == "attached"
assert by[1][1]["userAgent"].endswith("command/volume.attach"), by[1][1]["userAgent"]
assert by[2][1]["requestParameters"] == {"volumeId": vol, "description": "nightly"}
assert by[2][1]["responseElements"]["snapshotId"] == snap
assert by[2][1]["userAgent"].endswith("command/ec2.create-snapshot"), by[2][1]["userAgent"]
assert "errorCode" not in by[3][1] and by[3][1]["responseElements"] is None
assert by[4][1]["errorCode"] == "VolumeInUse" and vol in by[4][1]["errorMessage"], by[4][1]
assert "errorCode" not in by[5][1] and by[5][1]["requestParameters"] == {"volumeId": vol}
assert "errorCode" not in by[6][1] and by[6][1]["requestParameters"] == {"snapshotId": snap}
assert by[7][1]["errorCode"] == "InvalidSnapshot.NotFound", by[7][1]
assert "errorCode" not in by[8][1] and by[8][1]["readOnly"] is True, by[8][1]
print(f"records: {len(events)} EC2 records, one per call")
PY
  # EventSource and ResourceName filters work on this trail as on the key store's
  [ "$("$B" volume "${g[@]}" lookup-events --lookup-attributes "AttributeKey=ResourceName,AttributeValue=$s" |
       python3 -c 'import json,sys; print(sorted(e["EventName"] for e in json.load(sys.stdin)["Events"]))')" = "['CreateSnapshot', 'DeleteSnapshot']" ] ||
    fail "$url: ResourceName $s"
  "$B" volume "${g[@]}" validate-audit >"$T/v.json" || fail "$url: validate-audit: $(cat "$T/v.json")"
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); assert v["Valid"] and v["RecordsChecked"] == 9 and v["UnsealedRecords"] == 0, v' "$T/v.json" ||
    fail "$url: validate-audit: $(cat "$T/v.json")"
  "$B" kms --store "$vs/trail" validate-audit >/dev/null || fail "$url: kms --store TRAIL validate-audit"
  # tampering, each on a copy of the trail: the first bad record is named
  seq_of() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT seq FROM audit WHERE operation=? ORDER BY seq LIMIT 1", (sys.argv[2],)).fetchone()[0])' "$vs/trail/keystore.db" "$1"; }
  tamper() { # tamper NAME WANT-SEQ SQL...: apply to a copy, validate-audit must fail naming WANT-SEQ
    local name=$1 want=$2 copy=$T/tamper-$1; shift 2
    rm -rf "$copy"; cp -a "$vs/trail" "$copy"
    python3 - "$copy/keystore.db" "$@" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for sql in sys.argv[2:]:
    db.execute(sql)
db.commit()
PY
    rc=0; "$B" kms --store "$copy" validate-audit >"$T/v.json" 2>"$T/v.err" || rc=$?
    [ $rc = 1 ] || fail "$url: $name: validate-audit exited $rc: $(cat "$T/v.json")"
    [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["FirstBadRecord"]["Seq"])' "$T/v.json")" = "$want" ] ||
      fail "$url: $name: the first bad record is not $want: $(cat "$T/v.json")"
  }
  seq=$(seq_of CreateSnapshot)
  tamper edited "$seq" "UPDATE audit SET event=replace(event, 'nightly', 'weekly') WHERE seq=$seq"
  tamper edited-column "$seq" "UPDATE audit SET result='OK', access_key='AKIAOTHER' WHERE seq=$seq"
  seq=$(seq_of DescribeVolumes)
  tamper deleted "$seq" "DELETE FROM audit WHERE seq=$seq"
  # inserted: a replay of the record before it, the ones after moved up one
  tamper inserted "$seq" "UPDATE audit SET seq=-(seq+1) WHERE seq>=$seq" "UPDATE audit SET seq=-seq WHERE seq<0" \
    "INSERT INTO audit(seq, time, account, user, source, operation, key_id, result, event_id, access_key, read_only, event, prev, hash)
     SELECT $seq, time, account, user, source, operation, key_id, result, event_id, access_key, read_only, event, prev, hash FROM audit WHERE seq=$seq-1"
  tamper reordered "$seq" "UPDATE audit SET seq=-1 WHERE seq=$seq" "UPDATE audit SET seq=$seq WHERE seq=$seq+1" \
    "UPDATE audit SET seq=$seq+1 WHERE seq=-1"
  seq=$(seq_of DetachVolume)
  tamper truncated "$seq" "DELETE FROM audit WHERE seq>=$seq"
  echo "$url: tampering found"
  # a trail that holds no keys (last: ListKeys leaves a key-service record in it)
  "$B" kms --store "$vs/trail" list-keys >"$T/keys.json" || fail "$url: list-keys on the trail"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["Keys"] == [], d' "$T/keys.json" ||
    fail "$url: the trail holds keys: $(cat "$T/keys.json")"
}

# no secret of the run (data keys, the secret access key) in the trail's files, its records or the logs
no_secrets() { # no_secrets URL VS [LOG...]
  local url=$1 vs=$2; shift 2
  python3 - "$url" "$vs" "$SK" "$@" <<'PY' || fail "$url: a secret appears in the trail or a log"
import base64, glob, os, sqlite3, sys
import boto3
url, vs, sk, logs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
kms = boto3.client("kms", endpoint_url=url, region_name="us-east-1")
cat = sqlite3.connect(os.path.join(vs, "catalog.db"))
secrets = [sk.encode()]
for key_arn, ctx, wrapped in cat.execute("SELECT key_arn, ctx_id, wrapped FROM lineages"):
    secrets.append(kms.decrypt(CiphertextBlob=wrapped, KeyId=key_arn, EncryptionContext={"aws:ebs:id": ctx})["Plaintext"])
assert len(secrets) >= 2, "no data key to look for"
forms = []
for s in secrets:
    forms += [s, s.hex().encode(), s.hex().upper().encode(), base64.b64encode(s), base64.b64encode(s).rstrip(b"="),
              base64.urlsafe_b64encode(s).rstrip(b"=")]
trail = sqlite3.connect(os.path.join(vs, "trail", "keystore.db"))
rows = b"\n".join(b"\t".join(c if isinstance(c, bytes) else str(c).encode() for c in row)
                  for t in ("audit", "audit_digests") for row in trail.execute(f"SELECT * FROM {t}"))
files = [p for p in glob.glob(os.path.join(vs, "trail", "*")) if not p.endswith("root.key")] + logs
for name, data in [("the records", rows)] + [(p, open(p, "rb").read()) for p in files if os.path.exists(p)]:
    for f in forms:
        assert f not in data, f"{name} holds a secret ({f[:6]!r}...)"
print(f"secrets: {len(secrets)} secrets in {len(forms)} forms absent from the records, {len(files)} files and logs")
PY
}

# ebs_verbs URL VS: the EBS direct API's verbs (eventSource ebs.amazonaws.com), allowed and failed, and one by
# another account (B: the snapshot does not exist for it); then their records, with no block data in any
sum() { openssl dgst -sha256 -binary "$1" | base64; }
ebs_verbs() {
  local url=$1 vs=$2 s tok rc out
  local g=(--kms "$url" --volume-store "$vs")
  head -c 524288 /dev/urandom >"$T/blk"
  printf x >"$T/x"
  s=$("$B" ebs "${g[@]}" start-snapshot --volume-size 1 --description direct --query SnapshotId --output text)
  "$B" ebs "${g[@]}" put-snapshot-block --snapshot-id "$s" --block-index 3 --block-data "fileb://$T/blk" \
    --data-length 524288 --checksum "$(sum "$T/blk")" --checksum-algorithm SHA256 >/dev/null
  rc=0; out=$("$B" ebs "${g[@]}" put-snapshot-block --snapshot-id "$s" --block-index 4 --block-data "fileb://$T/blk" \
    --data-length 524288 --checksum "$(sum "$T/x")" --checksum-algorithm SHA256 2>&1) || rc=$?
  [ $rc = 254 ] && [[ $out == *"(ValidationException)"* ]] || fail "$url: a put with a wrong checksum: exit $rc: $out"
  "$B" ebs "${g[@]}" complete-snapshot --snapshot-id "$s" --changed-blocks-count 1 >/dev/null
  tok=$("$B" ebs "${g[@]}" list-snapshot-blocks --snapshot-id "$s" --query 'Blocks[0].BlockToken' --output text)
  "$B" ebs "${g[@]}" get-snapshot-block --snapshot-id "$s" --block-index 3 --block-token "$tok" "$T/got" >/dev/null
  cmp "$T/got" "$T/blk" || fail "$url: get-snapshot-block"
  "$B" ebs "${g[@]}" list-changed-blocks --second-snapshot-id "$s" >/dev/null
  rc=0; "$B" ebs "${g[@]}" list-snapshot-blocks --snapshot-id snap-0123456789abcdef0 >/dev/null 2>&1 || rc=$?
  [ $rc = 254 ] || fail "$url: list-snapshot-blocks of a missing snapshot: exit $rc"
  rc=0; AWS_ACCESS_KEY_ID=$AKB AWS_SECRET_ACCESS_KEY=$SKB "$B" ebs "${g[@]}" complete-snapshot --snapshot-id "$s" \
    --changed-blocks-count 0 >/dev/null 2>&1 || rc=$?
  [ $rc = 254 ] || fail "$url: another account completed the snapshot: exit $rc"
  rc=0; "$B" ebs "${g[@]}" get-snapshot-block --snapshot-id "$s" --block-index 3 --block-token "$tok" >/dev/null 2>&1 || rc=$?
  [ $rc = 252 ] || fail "$url: get-snapshot-block without OUTFILE exited $rc"   # a usage error: no call, no record
  "$B" volume "${g[@]}" lookup-events --lookup-attributes AttributeKey=EventSource,AttributeValue=ebs.amazonaws.com \
    --max-results 1000 >"$T/ebs.json" || fail "$url: lookup-events of EBS"
  python3 - "$T/ebs.json" "$s" "$AK" "$AKB" "$T/blk" "$vs/trail/keystore.db" <<'PY' || fail "$url: the EBS records: see above"
import base64, json, sqlite3, sys
path, snap, ak, akb, blk, trail = sys.argv[1:]
events = json.load(open(path))["Events"][::-1]   # oldest first
recs = [json.loads(e["CloudTrailEvent"]) for e in events]
got = [(r["eventName"], r.get("errorCode")) for r in recs]
want = [("StartSnapshot", None), ("PutSnapshotBlock", None), ("PutSnapshotBlock", "ValidationException"),
        ("CompleteSnapshot", None), ("ListSnapshotBlocks", None), ("GetSnapshotBlock", None),
        ("ListChangedBlocks", None), ("ListSnapshotBlocks", "ResourceNotFoundException"),
        ("CompleteSnapshot", "ResourceNotFoundException")]
assert got == want, got    # one record per call, the usage error none
verb = {"StartSnapshot": "start-snapshot", "PutSnapshotBlock": "put-snapshot-block", "CompleteSnapshot": "complete-snapshot",
        "ListSnapshotBlocks": "list-snapshot-blocks", "GetSnapshotBlock": "get-snapshot-block",
        "ListChangedBlocks": "list-changed-blocks"}
for e, r in zip(events, recs):
    name = r["eventName"]
    assert e["EventSource"] == r["eventSource"] == "ebs.amazonaws.com", r
    management = name in ("StartSnapshot", "CompleteSnapshot")   # the block calls are data events
    assert r["managementEvent"] is management and r["eventCategory"] == ("Management" if management else "Data"), r
    assert r["readOnly"] == name.startswith(("List", "Get")), r
    assert r["userAgent"].endswith("command/ebs." + verb[name]), r["userAgent"]
    assert "blockData" not in r["requestParameters"], r
    if "errorCode" in r:
        assert r["errorMessage"] and r["responseElements"] is None, r
assert all(recs[i]["userIdentity"]["accessKeyId"] == ak for i in range(8)), recs
assert recs[8]["userIdentity"]["accessKeyId"] == akb and recs[8]["userIdentity"]["accountId"] == "444455556666", recs[8]
assert recs[0]["responseElements"]["snapshotId"] == snap and recs[0]["requestParameters"] == {"volumeSize": "1", "description": "direct"}
assert [ev["Resources"] for ev in events[:7]] == [[{"ResourceType": "AWS::EC2::Snapshot", "ResourceName": snap}]] * 7, events
put = recs[1]["requestParameters"]
assert put == {"snapshotId": snap, "blockIndex": "3", "dataLength": "524288", "checksum": put["checksum"],
               "checksumAlgorithm": "SHA256"}, put
assert recs[1]["responseElements"] == {"checksum": put["checksum"], "checksumAlgorithm": "SHA256"}, recs[1]
assert recs[3]["responseElements"] == {"status": "completed"}, recs[3]
assert recs[5]["requestParameters"]["blockIndex"] == "3" and recs[5]["responseElements"] is None, recs[5]
data = open(blk, "rb").read()
rows = b"\n".join(b"\t".join(c if isinstance(c, bytes) else str(c).encode() for c in row)
                  for row in sqlite3.connect(trail).execute("SELECT * FROM audit"))
for off in (0, 4096, len(data) - 48):
    piece = data[off:off + 48]
    for form in (piece, piece.hex().encode(), base64.b64encode(piece), base64.b64encode(data[off:off + 49])[8:56]):
        assert form not in rows, f"block data at {off} in the trail"
print(f"records: {len(events)} EBS records, one per call")
PY
  "$B" volume "${g[@]}" validate-audit >/dev/null || fail "$url: validate-audit after the EBS calls"
}

run_verbs "$URL" "$T/volumes"
check "$URL" "$T/volumes" 111122223333 "$V" "$S"
no_secrets "$URL" "$T/volumes" "$T/daemons.log"
"$B" kms create-access-key --account 444455556666 --user root >"$T/akb.json"
AKB=$(jget AccessKey.AccessKeyId <"$T/akb.json"); SKB=$(jget AccessKey.SecretAccessKey <"$T/akb.json")
ebs_verbs "$URL" "$T/volumes"
# snapshot upload / download through a remote key service: their EBS calls in the volume store's trail, the trail
# opened once for all of them, each record naming the access key
head -c 1000 /dev/urandom >"$T/img1"
U=$("$B" snapshot --kms "$URL" --volume-store "$T/volumes" upload "$T/img1" --query SnapshotId --output text)
"$B" snapshot --kms "$URL" --volume-store "$T/volumes" download "$U" "$T/img1-back"
"$B" volume --kms "$URL" --volume-store "$T/volumes" lookup-events --max-results 1000 \
  --lookup-attributes AttributeKey=EventSource,AttributeValue=ebs.amazonaws.com |
  python3 -c '
import json, sys
recs = [json.loads(e["CloudTrailEvent"]) for e in json.load(sys.stdin)["Events"][::-1]]
got = [(r["eventName"], r["userIdentity"].get("accessKeyId")) for r in recs if "command/snapshot." in r["userAgent"]]
ak = sys.argv[1]
assert got == [("StartSnapshot", ak), ("PutSnapshotBlock", ak), ("CompleteSnapshot", ak), ("ListSnapshotBlocks", ak),
               ("GetSnapshotBlock", ak)], got' "$AK" || fail "the remote records of snapshot upload / download"
"$B" volume --kms "$URL" --volume-store "$T/volumes" validate-audit >/dev/null || fail "validate-audit after upload/download"
# unsigned over the server's Unix socket (the server knows us by uid): the record names the local user
"$B" kms serve --unix "$T/kms.sock" --unix-principal "$(id -u)=arn:aws:iam::111122223333:root" --pid-file "$T/unix.pid"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T" \
  "$B" ec2 --kms "unix:$T/kms.sock" --volume-store "$T/volumes-unix" describe-volumes >/dev/null || fail "describe-volumes over the socket"
"$B" volume --kms "unix:$T/kms.sock" --volume-store "$T/volumes-unix" lookup-events |
  python3 -c '
import json, os, sys
ev = json.load(sys.stdin)["Events"]
assert [e["EventName"] for e in ev] == ["DescribeVolumes"] and "AccessKeyId" not in ev[0], ev
ui = json.loads(ev[0]["CloudTrailEvent"])["userIdentity"]
assert ui["type"] == "Unknown" and "accessKeyId" not in ui and ui["accountId"] == "111122223333", ui
assert ui["unixPeer"]["uid"] == os.getuid() and ui["unixPeer"]["gid"] == os.getgid(), ui' || fail "the record of an unsigned caller"
# a record that cannot be written fails its call, and the answer is not printed (durable before it answers):
# an ec2 verb, get-snapshot-block (whose block is then not written out), and an attachment (undone by its daemon)
unix() { env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$T" "$B" "$1" --kms "unix:$T/kms.sock" --volume-store "$T/volumes-unix" "${@:2}"; }
VU=$(unix ec2 create-volume --size 1 --query VolumeId --output text)
SU=$(unix ebs start-snapshot --volume-size 1 --query SnapshotId --output text)
unix ebs put-snapshot-block --snapshot-id "$SU" --block-index 0 --block-data "fileb://$T/blk" --data-length 524288 \
  --checksum "$(sum "$T/blk")" --checksum-algorithm SHA256 >/dev/null
unix ebs complete-snapshot --snapshot-id "$SU" --changed-blocks-count 1 >/dev/null
TU=$(unix ebs list-snapshot-blocks --snapshot-id "$SU" --query 'Blocks[0].BlockToken' --output text)
rm -rf "$T/trail-good"; cp -a "$T/volumes-unix/trail" "$T/trail-good"
printf 'not a database' >"$T/volumes-unix/trail/keystore.db"
rc=0; unix ec2 create-volume --size 1 >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 254 ] && [ ! -s "$T/out" ] && grep -q "(InternalError) when calling the CreateVolume operation" "$T/err" ||
  fail "a call whose record failed: exit $rc, out $(cat "$T/out"), err $(cat "$T/err")"
rc=0; unix ebs get-snapshot-block --snapshot-id "$SU" --block-index 0 --block-token "$TU" "$T/got-unrecorded" >"$T/out" 2>"$T/err" || rc=$?
[ $rc = 254 ] && [ ! -s "$T/out" ] && [ ! -e "$T/got-unrecorded" ] &&
  grep -q "(InternalServerException) when calling the GetSnapshotBlock operation" "$T/err" ||
  fail "a get-snapshot-block whose record failed: exit $rc, out $(cat "$T/out"), err $(cat "$T/err")"
rc=0; unix volume attach "$VU" >"$T/out" 2>"$T/err" || rc=$?
[ $rc != 0 ] && [ ! -s "$T/out" ] && grep -q "(InternalError) when calling the AttachVolume operation" "$T/err" ||
  fail "an attachment whose record failed: exit $rc, out $(cat "$T/out"), err $(cat "$T/err")"
[ ! -e "$T/volumes-unix/run/$VU.json" ] && ! mountpoint -q "$T/volumes-unix/run/$VU.mnt" ||
  fail "the unrecorded attachment of $VU was not undone"
# undone, not half-made: with the trail back, the volume attaches (no stale lock, mount or grant) and detaches
rm -rf "$T/volumes-unix/trail"; cp -a "$T/trail-good" "$T/volumes-unix/trail"
unix volume attach "$VU" >"$T/out" 2>"$T/err" || fail "attach after the refused one: $(cat "$T/err")"
! grep -q "warning" "$T/err" || fail "attach after the refused one warned: $(cat "$T/err")"
unix volume detach "$VU" >/dev/null || fail "detach after the refused attach"
[ "$(unix volume lookup-events --lookup-attributes "AttributeKey=ResourceName,AttributeValue=$VU" |
     python3 -c 'import json,sys; print(" ".join(e["EventName"] for e in json.load(sys.stdin)["Events"][::-1]))')" = \
  "CreateVolume AttachVolume DetachVolume" ] || fail "the records of $VU"
kill "$(cat "$T/unix.pid")"; rm -f "$T/unix.pid"
# the key service's trail (the server's store) has its own records of those calls, none of EC2's
stop_server
"$B" kms lookup-audit --lookup-attributes AttributeKey=EventSource,AttributeValue=ec2.amazonaws.com --output json |
  python3 -c 'import json,sys; ev=json.load(sys.stdin)["Events"]; assert ev == [], ev' || fail "EC2 records in the server's trail"
"$B" kms lookup-audit --operation CreateGrant --query 'Events[0].EventName' --output text | grep -q CreateGrant ||
  fail "no CreateGrant in the server's trail"
if command -v moto_server >/dev/null; then
  start_moto
  run_verbs "$MOTO_URL" "$T/volumes-moto"
  check "$MOTO_URL" "$T/volumes-moto" 123456789012 "$V" "$S"
  no_secrets "$MOTO_URL" "$T/volumes-moto" "$T/daemons.log" "$T/moto.log"
else
  echo "moto_server absent: only our own server checked"
fi
echo "vol_audit_remote: ok"
