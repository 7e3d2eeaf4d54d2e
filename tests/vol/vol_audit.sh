#!/usr/bin/env bash
# vol_audit.sh — EC2's records: every `ec2` verb and `volume attach`/`detach` leaves one CloudTrail-shaped
# record (eventSource ec2.amazonaws.com, eventName the EC2 action, requestParameters, responseElements on
# mutating calls, errorCode/errorMessage on failures, requestID, eventID, readOnly) in the key store's
# trail, next to the key service's own (AttachVolume's CreateGrant, Decrypt, RetireGrant); lookup-audit
# filters them by EventSource; validate-audit checks them in the same chain and finds an edited one;
# `volume lookup-events` / `validate-audit` read that trail. The `ebs` verbs leave theirs with eventSource
# ebs.amazonaws.com (the block calls as data events), another account's denied call too.
# (With --kms URL: vol_audit_remote.sh.)
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; }
T=$(mktemp -d /tmp/vol-audit.XXXXXX)
export ENVELOPEFS_STORE=$T/store
VS=$T/store/volumes
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  cd /
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap cleanup EXIT
"$B" kms init-store --generate-root-key >/dev/null
V=$("$B" ec2 create-volume --size 1 --query VolumeId --output text)
"$B" volume attach "$V" >/dev/null
S=$("$B" ec2 create-snapshot --volume-id "$V" --description nightly --query SnapshotId --output text)
"$B" ec2 describe-volumes --volume-ids "$V" >/dev/null
set +e; "$B" ec2 delete-volume --volume-id "$V" 2>/dev/null; rc=$?; set -e
[ $rc = 254 ] || fail "delete of an attached volume: exit $rc"
"$B" volume detach "$V"
"$B" ec2 delete-snapshot --snapshot-id "$S"

ec2_events() { "$B" kms lookup-audit --lookup-attributes AttributeKey=EventSource,AttributeValue=ec2.amazonaws.com --output json; }
ec2_events | python3 -c '
import json, sys
vol, snap = sys.argv[1:]
events = json.load(sys.stdin)["Events"]
names = [e["EventName"] for e in events]
want = ["CreateVolume", "AttachVolume", "CreateSnapshot", "DescribeVolumes", "DeleteVolume", "DetachVolume", "DeleteSnapshot"]
assert names == want[::-1], names
for e in events:
    r = json.loads(e["CloudTrailEvent"])
    assert e["EventSource"] == r["eventSource"] == "ec2.amazonaws.com", r
    for k in ("eventVersion", "eventTime", "eventName", "userIdentity", "requestParameters", "responseElements",
              "requestID", "eventID", "readOnly", "awsRegion", "sourceIPAddress"):
        assert k in r, (k, r)
    assert r["userIdentity"]["type"] == "Root" and "invokedBy" not in r["userIdentity"], r
    assert r["userAgent"].startswith("envelopefs/") and "command/" in r["userAgent"], r["userAgent"]
    assert r["recipientAccountId"] == r["userIdentity"]["accountId"], r
    assert r["readOnly"] == (r["eventName"] == "DescribeVolumes"), r
    assert "Plaintext" not in e["CloudTrailEvent"] and "CiphertextBlob" not in e["CloudTrailEvent"], r
by = {json.loads(e["CloudTrailEvent"])["eventName"]: json.loads(e["CloudTrailEvent"]) for e in events}
assert by["CreateVolume"]["requestParameters"] == {"size": "1"}, by["CreateVolume"]
assert by["CreateVolume"]["responseElements"]["volumeId"] == vol and by["CreateVolume"]["responseElements"]["encrypted"] is True
assert by["CreateVolume"]["resources"] == [{"accountId": by["CreateVolume"]["userIdentity"]["accountId"], "type": "AWS::EC2::Volume"}], by["CreateVolume"]["resources"]
assert by["AttachVolume"]["requestParameters"] == {"volumeId": vol} and by["AttachVolume"]["responseElements"]["state"] == "attached"
assert by["CreateSnapshot"]["requestParameters"] == {"volumeId": vol, "description": "nightly"}, by["CreateSnapshot"]
assert by["CreateSnapshot"]["responseElements"]["snapshotId"] == snap
assert by["DescribeVolumes"]["responseElements"] is None and "errorCode" not in by["DescribeVolumes"]
assert by["DeleteVolume"]["errorCode"] == "VolumeInUse" and vol in by["DeleteVolume"]["errorMessage"]
assert by["DeleteVolume"]["responseElements"] is None
assert by["DetachVolume"]["requestParameters"] == {"volumeId": vol} and "errorCode" not in by["DetachVolume"]
assert by["DeleteSnapshot"]["requestParameters"] == {"snapshotId": snap}
resources = {e["EventName"]: e["Resources"] for e in events}
assert resources["CreateSnapshot"] == [{"ResourceType": "AWS::EC2::Snapshot", "ResourceName": snap}], resources
assert resources["DetachVolume"] == [{"ResourceType": "AWS::EC2::Volume", "ResourceName": vol}], resources
' "$V" "$S" || fail "the EC2 records"
# ResourceName finds a volume's records; the key service's own stay apart under their EventSource
[ "$("$B" kms lookup-audit --lookup-attributes "AttributeKey=ResourceName,AttributeValue=$V" --output json |
     python3 -c 'import json,sys; print(sorted(e["EventName"] for e in json.load(sys.stdin)["Events"]))')" = "['AttachVolume', 'CreateVolume', 'DeleteVolume', 'DetachVolume']" ] || fail "ResourceName $V"
"$B" kms lookup-audit --lookup-attributes AttributeKey=EventSource,AttributeValue=kms.amazonaws.com --max-results 1000 --output json |
  python3 -c '
import json, sys
ev = json.load(sys.stdin)["Events"]
assert ev and all(e["EventSource"] == "kms.amazonaws.com" for e in ev), ev
names = {e["EventName"] for e in ev}
assert {"GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt", "RetireGrant"} <= names, names' || fail "kms records"
"$B" kms validate-audit >"$T/v.json" || fail "validate-audit: $(cat "$T/v.json")"
# `volume lookup-events` / `volume validate-audit` read the same trail (the key store's: embedded keys), and
# no trail of the volume store's own is made
[ "$("$B" volume lookup-events --lookup-attributes AttributeKey=EventSource,AttributeValue=ec2.amazonaws.com |
     python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Events"]))')" = 7 ] || fail "volume lookup-events"
"$B" volume validate-audit >/dev/null || fail "volume validate-audit"
[ ! -e "$VS/trail" ] || fail "a volume-store trail although the keys are embedded"
# the EBS direct API's records (eventSource ebs.amazonaws.com) in the same trail: allowed, failed, and denied
# (another account, --as-user, writing a snapshot shared with it for reading); the block calls as data events
K=$("$B" kms create-key --query KeyMetadata.Arn --output text)
OTHER=arn:aws:iam::444455556666:root
head -c 524288 /dev/urandom >"$T/blk"
SUM=$(openssl dgst -sha256 -binary "$T/blk" | base64)
E=$("$B" ebs start-snapshot --volume-size 1 --encrypted --kms-key-arn "$K" --query SnapshotId --output text)
"$B" ebs put-snapshot-block --snapshot-id "$E" --block-index 1 --block-data "fileb://$T/blk" --data-length 524288 \
  --checksum "$SUM" --checksum-algorithm SHA256 >/dev/null
set +e; "$B" ebs complete-snapshot --snapshot-id "$E" --changed-blocks-count 2 >/dev/null 2>&1; rc=$?; set -e
[ $rc = 254 ] || fail "complete-snapshot with the wrong count: exit $rc"
"$B" ebs complete-snapshot --snapshot-id "$E" --changed-blocks-count 1 >/dev/null
TOK=$("$B" ebs list-snapshot-blocks --snapshot-id "$E" --query 'Blocks[0].BlockToken' --output text)
"$B" ebs get-snapshot-block --snapshot-id "$E" --block-index 1 --block-token "$TOK" "$T/got" >/dev/null
cmp "$T/got" "$T/blk" || fail "get-snapshot-block"
"$B" ec2 modify-snapshot-attribute --snapshot-id "$E" --attribute createVolumePermission --operation-type add \
  --user-ids 444455556666 >/dev/null
set +e; out=$("$B" ebs --as-user "$OTHER" put-snapshot-block --snapshot-id "$E" --block-index 2 --block-data "fileb://$T/blk" \
  --data-length 524288 --checksum "$SUM" --checksum-algorithm SHA256 2>&1); rc=$?; set -e
[ $rc = 254 ] && [[ $out == *"(AccessDeniedException)"* ]] || fail "another account wrote a shared snapshot: exit $rc: $out"
"$B" ebs --as-user "$OTHER" list-snapshot-blocks --snapshot-id "$E" >/dev/null || fail "another account lists a shared snapshot"
"$B" kms lookup-audit --lookup-attributes AttributeKey=EventSource,AttributeValue=ebs.amazonaws.com --output json |
  python3 -c '
import json, sys
snap, other = sys.argv[1:]
events = json.load(sys.stdin)["Events"][::-1]
recs = [json.loads(e["CloudTrailEvent"]) for e in events]
got = [(r["eventName"], r.get("errorCode"), r["userIdentity"]["accountId"]) for r in recs]
me = "111122223333"
assert got == [("StartSnapshot", None, me), ("PutSnapshotBlock", None, me), ("CompleteSnapshot", "ValidationException", me),
               ("CompleteSnapshot", None, me), ("ListSnapshotBlocks", None, me), ("GetSnapshotBlock", None, me),
               ("PutSnapshotBlock", "AccessDeniedException", other), ("ListSnapshotBlocks", None, other)], got
for e, r in zip(events, recs):
    data = r["eventName"] not in ("StartSnapshot", "CompleteSnapshot")
    assert r["eventSource"] == "ebs.amazonaws.com" and r["managementEvent"] is not data, r
    assert r["eventCategory"] == ("Data" if data else "Management"), r
    assert r["readOnly"] == r["eventName"].startswith(("List", "Get")), r
    assert e["Resources"] == [{"ResourceType": "AWS::EC2::Snapshot", "ResourceName": snap}], e["Resources"]
    assert "blockData" not in r["requestParameters"] and r["recipientAccountId"] == r["userIdentity"]["accountId"], r
assert recs[0]["requestParameters"] == {"volumeSize": "1", "encrypted": True, "kmsKeyArn": recs[0]["requestParameters"]["kmsKeyArn"]}
assert "UNAUTHORIZED_ACCOUNT" in recs[6]["errorMessage"] and recs[6]["responseElements"] is None, recs[6]
assert recs[5]["responseElements"] is None and recs[1]["responseElements"]["checksumAlgorithm"] == "SHA256", recs
' "$E" 444455556666 || fail "the EBS records"
# snapshot upload / download leave the EBS calls they stand for: StartSnapshot, one PutSnapshotBlock per stored
# block, CompleteSnapshot; ListSnapshotBlocks, one GetSnapshotBlock per block (data events, as coldsnap's calls)
head -c 524288 /dev/urandom >"$T/img"; head -c 524288 /dev/zero >>"$T/img"; head -c 1000 /dev/urandom >>"$T/img"
N0=$("$B" kms lookup-audit --lookup-attributes AttributeKey=EventSource,AttributeValue=ebs.amazonaws.com --max-results 1000 --output json |
     python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Events"]))')
U=$("$B" snapshot upload "$T/img" --description img --query SnapshotId --output text)
"$B" snapshot download "$U" "$T/img-back"
cmp <(head -c "$(stat -c %s "$T/img")" "$T/img-back") "$T/img" || fail "download"
set +e; "$B" snapshot download snap-0123456789abcdef0 "$T/none" >/dev/null 2>&1; rc=$?; set -e
[ $rc = 254 ] || fail "download of a missing snapshot: exit $rc"
"$B" kms lookup-audit --lookup-attributes AttributeKey=EventSource,AttributeValue=ebs.amazonaws.com --max-results 1000 --output json |
  python3 -c '
import json, sys
snap, n0 = sys.argv[1], int(sys.argv[2])
events = json.load(sys.stdin)["Events"][::-1][n0:]
recs = [json.loads(e["CloudTrailEvent"]) for e in events]
got = [(r["eventName"], r.get("errorCode"), r["userAgent"].split("command/")[1]) for r in recs]
up, down = "snapshot.upload", "snapshot.download"
assert got == [("StartSnapshot", None, up), ("PutSnapshotBlock", None, up), ("PutSnapshotBlock", None, up),
               ("CompleteSnapshot", None, up), ("ListSnapshotBlocks", None, down), ("GetSnapshotBlock", None, down),
               ("GetSnapshotBlock", None, down), ("ListSnapshotBlocks", "ResourceNotFoundException", down)], got
for e, r in zip(events[:7], recs):
    data = r["eventName"] not in ("StartSnapshot", "CompleteSnapshot")
    assert r["eventSource"] == "ebs.amazonaws.com" and r["managementEvent"] is not data, r
    assert r["readOnly"] == r["eventName"].startswith(("List", "Get")), r
    assert e["Resources"] == [{"ResourceType": "AWS::EC2::Snapshot", "ResourceName": snap}], e["Resources"]
assert recs[0]["requestParameters"] == {"volumeSize": "1", "encrypted": True, "description": "img"}, recs[0]
assert recs[0]["responseElements"]["snapshotId"] == snap, recs[0]
assert [r["requestParameters"]["blockIndex"] for r in recs[1:3]] == ["0", "2"], recs[1:3]   # the zero block is a hole
assert recs[1]["responseElements"] == {"checksum": recs[1]["requestParameters"]["checksum"], "checksumAlgorithm": "SHA256"}
assert recs[3]["requestParameters"]["changedBlocksCount"] == "2" and recs[3]["responseElements"] == {"status": "completed"}
assert [r["requestParameters"]["blockIndex"] for r in recs[5:7]] == ["0", "2"] and recs[5]["responseElements"] is None
assert recs[7]["errorMessage"], recs[7]
' "$U" "$N0" || fail "the records of snapshot upload / download"
# an attachment whose daemon fails after it went to the background (a real fault there: losetup, run by the
# daemon for --loop, fails): the command waits for the daemon's report, prints the error and exits as a failed
# call, AttachVolume is recorded with its errorCode, the volume is available (no attachment, no unclean mark)
mkdir -p "$T/fakebin"; printf '#!/bin/sh\necho "losetup: injected failure" >&2\nexit 1\n' >"$T/fakebin/losetup"
chmod +x "$T/fakebin/losetup"
F=$("$B" ec2 create-volume --size 1 --query VolumeId --output text)
set +e; out=$(PATH="$T/fakebin:$PATH" "$B" volume attach "$F" --loop 2>&1); rc=$?; set -e
[ $rc = 254 ] && [[ $out == *"(InternalError) when calling the AttachVolume operation: losetup of"* ]] ||
  fail "an attachment failed in its daemon: exit $rc: $out"
[ "$("$B" ec2 describe-volumes --volume-ids "$F" --query 'Volumes[0].State' --output text)" = available ] ||
  fail "the failed attachment left $F in use"
[ ! -e "$VS/run/$F.json" ] && ! mountpoint -q "$VS/run/$F.mnt" || fail "the failed attachment of $F was not undone"
ec2_events | python3 -c '
import json, sys
vol = sys.argv[1]
recs = [json.loads(e["CloudTrailEvent"]) for e in json.load(sys.stdin)["Events"]]
att = [r for r in recs if r["eventName"] == "AttachVolume" and r["requestParameters"] == {"volumeId": vol}]
assert len(att) == 1 and att[0]["errorCode"] == "InternalError" and "losetup" in att[0]["errorMessage"], att
assert att[0]["responseElements"] is None, att' "$F" || fail "the failed attachment's record"
out=$("$B" volume attach "$F" 2>&1 >/dev/null) || fail "attach after the failed one: $out"
[ -z "$out" ] || fail "attach after the failed one said: $out"   # no unclean-attach warning, no stale grant
"$B" volume detach "$F" >/dev/null
"$B" kms list-grants --key-id "$("$B" ec2 describe-volumes --volume-ids "$F" --query 'Volumes[0].KmsKeyId' --output text)" \
  | python3 -c 'import json, sys; g = json.load(sys.stdin)["Grants"]; assert g == [], g' ||
  fail "a grant of the failed attachment stayed"
"$B" kms validate-audit >"$T/v.json" || fail "validate-audit after the EBS calls: $(cat "$T/v.json")"
# an EC2 record edited in the store file is found
SEQ=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT seq FROM audit WHERE operation=\"CreateSnapshot\"").fetchone()[0])' "$T/store/keystore.db")
python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.execute("UPDATE audit SET event=replace(event, \"nightly\", \"weekly\") WHERE seq=?", (int(sys.argv[2]),)); db.commit()' "$T/store/keystore.db" "$SEQ"
set +e; "$B" kms validate-audit >"$T/v.json"; rc=$?; set -e
[ $rc = 1 ] || fail "an edited EC2 record passed validate-audit: $(cat "$T/v.json")"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["FirstBadRecord"]["Seq"])' "$T/v.json")" = "$SEQ" ] || fail "the first bad record: $(cat "$T/v.json")"
echo "vol_audit: ok"
