#!/usr/bin/env bash
# vol_audit.sh — EC2's records: every `ec2` verb and `volume attach`/`detach` leaves one CloudTrail-shaped
# record (eventSource ec2.amazonaws.com, eventName the EC2 action, requestParameters, responseElements on
# mutating calls, errorCode/errorMessage on failures, requestID, eventID, readOnly) in the key store's
# trail, next to the key service's own (AttachVolume's CreateGrant, Decrypt, RetireGrant); lookup-audit
# filters them by EventSource; validate-audit checks them in the same chain and finds an edited one;
# `volume lookup-events` / `validate-audit` read that trail. (With --kms URL: vol_audit_remote.sh.)
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
# an EC2 record edited in the store file is found
SEQ=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT seq FROM audit WHERE operation=\"CreateSnapshot\"").fetchone()[0])' "$T/store/keystore.db")
python3 -c 'import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.execute("UPDATE audit SET event=replace(event, \"nightly\", \"weekly\") WHERE seq=?", (int(sys.argv[2]),)); db.commit()' "$T/store/keystore.db" "$SEQ"
set +e; "$B" kms validate-audit >"$T/v.json"; rc=$?; set -e
[ $rc = 1 ] || fail "an edited EC2 record passed validate-audit: $(cat "$T/v.json")"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["FirstBadRecord"]["Seq"])' "$T/v.json")" = "$SEQ" ] || fail "the first bad record: $(cat "$T/v.json")"
echo "vol_audit: ok"
