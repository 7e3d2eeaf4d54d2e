#!/usr/bin/env bash
# server_peercred.sh — principals by uid on `envelopefs kms serve --unix` (SO_PEERCRED): root (uid 0)
# and nobody (by name) are mapped with --unix-principal, uid 65533 is not. Unsigned requests act as the
# mapped principal (audit: userName, type, sourceIPAddress "unix", unixPeer.uid, no access key); an
# unmapped uid is refused with MissingAuthenticationTokenException; a key policy naming one mapped
# principal refuses the other with AccessDeniedException naming its ARN, and a grant to it lets it in for
# the granted operation only; signed requests on the socket
# act as their access key's principal (raw HTTP signed by botocore, and our client with credentials);
# --unix-mode sets the socket's mode; `envelopefs init/mount --kms unix:SOCKET` round trip without
# credentials. Runs as root (setpriv for the other uids).
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (setpriv to other uids)"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIP: setpriv absent"; exit 77; }
NOBODY=$(id -u nobody) || { echo "SKIP: no user nobody"; exit 77; }
A=111122223333 OPS=arn:aws:iam::111122223333:user/ops APP=arn:aws:iam::111122223333:user/app
chmod 0711 "$T"   # the other uids reach the socket through $T; the store below stays the server's
"$B" kms init-store --generate-root-key --account $A >/dev/null
"$B" kms create-access-key --account $A --user alice >"$T/ak.json"
AK=$(jget AccessKey.AccessKeyId <"$T/ak.json"); SK=$(jget AccessKey.SecretAccessKey <"$T/ak.json")
OPEN=$("$B" kms create-key --description open --query KeyMetadata.Arn --output text)
OPSKEY=$("$B" kms create-key --description ops-only --query KeyMetadata.Arn --output text)
"$B" kms put-key-policy --key-id "$OPSKEY" --bypass-policy-lockout-safety-check --policy \
  "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"$OPS\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}]}"
SOCK=$T/kms.sock

# configuration errors are refused before anything listens
if "$B" kms serve --listen 127.0.0.1:1 --unix-principal 0=$OPS --foreground 2>"$T/err"; then fail "--unix-principal without --unix"; fi
grep -q "needs --unix" "$T/err" || fail "message: $(cat "$T/err")"
if "$B" kms serve --unix "$SOCK" --unix-principal 0=arn:aws:iam::1:user/x --foreground 2>"$T/err"; then fail "a bad ARN"; fi
grep -q "is not arn:aws:iam::ACCOUNT:root" "$T/err" || fail "message: $(cat "$T/err")"
if "$B" kms serve --unix "$SOCK" --unix-principal no-such-user-here=$OPS 2>"$T/err"; then fail "an unknown user"; fi
grep -q "no user .no-such-user-here" "$T/err" || fail "message: $(cat "$T/err")"
if "$B" kms serve --unix "$SOCK" --unix-principal 0=$OPS --unix-principal root=$APP 2>"$T/err"; then fail "uid 0 twice"; fi
grep -q "mapped twice" "$T/err" || fail "message: $(cat "$T/err")"
if "$B" kms serve --unix "$SOCK" --unix-mode 0999 2>/dev/null; then fail "--unix-mode 0999"; fi

"$B" kms serve --unix "$SOCK" --unix-mode 0666 --unix-principal 0=$OPS --unix-principal nobody=$APP \
  --pid-file "$T/server.pid"
[ "$(stat -c %a "$SOCK")" = 666 ] || fail "socket mode $(stat -c %a "$SOCK"), not 666"
# as another uid: our client, no credentials anywhere (HOME without ~/.aws)
as_uid() { local u=$1; shift; env -u ENVELOPEFS_STORE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME=/nonexistent \
  setpriv --reuid="$u" --regid="$u" --clear-groups "$B" kms --endpoint-url "unix:$SOCK" "$@"; }

# root, unsigned, raw HTTP and botocore-signed (the Python half)
python3 "$(dirname "$0")/server_peercred.py" "$SOCK" "$AK" "$SK" "$OPEN" "$OPSKEY" "$OPS" arn:aws:iam::$A:user/alice

# the records: the mapped principal, by uid, without an access key; the signed ones as alice
"$B" kms lookup-audit --max-results 50 >"$T/audit.json"
python3 - "$T/audit.json" "$OPSKEY" <<'P' || fail "audit records"
import json, sys
events = [json.loads(e["CloudTrailEvent"]) for e in json.load(open(sys.argv[1]))["Events"]]
ops_key = sys.argv[2]
mine = [e for e in events if e["eventName"] == "GenerateDataKey" and not e.get("errorCode")]
by_ops = [e for e in mine if e["userIdentity"].get("userName") == "ops"]
by_alice = [e for e in mine if e["userIdentity"].get("userName") == "alice"]
assert len(by_ops) == 2 and len(by_alice) == 1, [e["userIdentity"] for e in mine]
for e in by_ops:
    ui = e["userIdentity"]
    assert ui["type"] == "IAMUser" and ui["arn"] == "arn:aws:iam::111122223333:user/ops", ui
    assert "accessKeyId" not in ui and ui["unixPeer"]["uid"] == 0 and ui["unixPeer"]["pid"] > 0, ui
    assert e["sourceIPAddress"] == "unix", e["sourceIPAddress"]
assert any(r["ARN"] == ops_key for e in by_ops for r in e["resources"]), "the ops-only key's record"
ui = by_alice[0]["userIdentity"]
assert ui.get("accessKeyId") and ui["unixPeer"]["uid"] == 0, ui   # signed: the key decides, the uid is noted
denied = [e for e in events if e.get("errorCode") == "AccessDeniedException"]
assert denied and denied[0]["userIdentity"]["userName"] == "alice", denied
print("audit: unsigned calls as ops (uid 0, no access key, sourceIPAddress unix); signed as alice")
P

# nobody (mapped by name to app): allowed by the open key's default policy, refused by the ops-only key's
as_uid "$NOBODY" generate-data-key --key-id "$OPEN" --key-spec AES_256 >"$T/gdk.json" || fail "nobody on the open key"
[ -n "$(jget CiphertextBlob <"$T/gdk.json")" ] || fail "nobody: no data key"
if as_uid "$NOBODY" generate-data-key --key-id "$OPSKEY" --key-spec AES_256 >/dev/null 2>"$T/err"; then
  fail "nobody used the ops-only key"; fi
grep -q "AccessDeniedException" "$T/err" && grep -q "User: $APP is not authorized to perform: kms:GenerateDataKey" "$T/err" \
  || fail "nobody's refusal: $(cat "$T/err")"
# grants name the mapped principal as any other: a grant to app lets nobody generate, not decrypt
"$B" kms --as-user ops create-grant --key-id "$OPSKEY" --grantee-principal "$APP" --operations GenerateDataKey >/dev/null
as_uid "$NOBODY" generate-data-key --key-id "$OPSKEY" --key-spec AES_256 >"$T/gdk.json" || fail "nobody with a grant"
jget CiphertextBlob <"$T/gdk.json" | base64 -d >"$T/blob"
if as_uid "$NOBODY" decrypt --ciphertext-blob "fileb://$T/blob" >/dev/null 2>"$T/err"; then fail "the grant allowed Decrypt"; fi
grep -q "AccessDeniedException" "$T/err" || fail "decrypt without a grant: $(cat "$T/err")"
"$B" kms lookup-audit --max-results 1 >"$T/audit.json"
python3 - "$T/audit.json" <<'P' || fail "the granted call's record"
import json, sys
e = json.loads(json.load(open(sys.argv[1]))["Events"][0]["CloudTrailEvent"])
assert e["eventName"] == "Decrypt" and e["errorCode"] == "AccessDeniedException" and e["userIdentity"]["userName"] == "app", e
P
# an unmapped uid: refused as an unsigned request is anywhere, and recorded with its uid
if as_uid 65533 list-keys >/dev/null 2>"$T/err"; then fail "an unmapped uid was served"; fi
grep -q "MissingAuthenticationTokenException" "$T/err" || fail "unmapped uid: $(cat "$T/err")"
# ... unless it signs: then it is the access key's principal (our client over unix: with credentials)
AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK env -u ENVELOPEFS_STORE HOME=/nonexistent \
  setpriv --reuid=65533 --regid=65533 --clear-groups "$B" kms --endpoint-url "unix://$SOCK" list-keys >/dev/null \
  || fail "a signed request from an unmapped uid"
"$B" kms lookup-audit --max-results 3 >"$T/audit.json"
python3 - "$T/audit.json" "$NOBODY" <<'P' || fail "audit records of the other uids"
import json, sys
ev = [json.loads(e["CloudTrailEvent"]) for e in json.load(open(sys.argv[1]))["Events"]]
signed, unmapped, denied = ev[0], ev[1], ev[2]
assert signed["userIdentity"]["userName"] == "alice" and signed["userIdentity"]["unixPeer"]["uid"] == 65533, signed
assert unmapped["errorCode"] == "MissingAuthenticationTokenException" and unmapped["userIdentity"]["unixPeer"]["uid"] == 65533, unmapped
assert denied["errorCode"] == "AccessDeniedException" and denied["userIdentity"]["userName"] == "app", denied
assert denied["eventName"] == "Decrypt" and denied["userIdentity"]["unixPeer"]["uid"] == int(sys.argv[2]), denied
print("audit: app refused Decrypt (uid nobody), the unmapped uid recorded, its signed call as alice")
P
# a relative unix: path is refused by the client
if "$B" kms --endpoint-url unix:kms.sock list-keys 2>"$T/err"; then fail "a relative socket path"; fi
grep -q "absolute socket path" "$T/err" || fail "message: $(cat "$T/err")"

# a mount through the socket, no credentials: root acts as ops, the one principal the key allows
if [ -e /dev/fuse ]; then
  mkdir -p "$T/cipher" "$T/mnt1"
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME=/nonexistent \
    "$B" init "$T/cipher" --kms "unix:$SOCK" --kms-key-id "$OPSKEY" >/dev/null || fail "init --kms unix:"
  HOME=/nonexistent "$B" mount "$T/cipher" "$T/mnt1" || fail "mount --kms unix:"
  head -c 100000 /dev/urandom >"$T/ref"
  cp "$T/ref" "$T/mnt1/f"; echo hello >"$T/mnt1/small"
  "$B" unmount "$T/mnt1"
  HOME=/nonexistent "$B" mount "$T/cipher" "$T/mnt1" || fail "remount"
  cmp "$T/ref" "$T/mnt1/f" || fail "round trip through unix:"
  [ "$(cat "$T/mnt1/small")" = hello ] || fail "small file"
  "$B" unmount "$T/mnt1"
  n=$("$B" kms lookup-audit --lookup-attributes AttributeKey=Username,AttributeValue=ops --max-results 50 \
      | python3 -c 'import json,sys; print(sum(json.loads(e["CloudTrailEvent"])["userIdentity"].get("unixPeer",{}).get("uid")==0 and e["EventName"]=="GenerateDataKey" for e in json.load(sys.stdin)["Events"]))')
  [ "$n" -ge 4 ] || fail "the mount's data keys are not in the trail as ops by uid 0 ($n)"
  echo "mount over unix: round trip as ops ($n GenerateDataKey records by uid 0)"
else
  echo "no /dev/fuse: mount part skipped"
fi
"$B" kms validate-audit >/dev/null || fail "validate-audit"
stop_server
[ ! -e "$SOCK" ] || fail "the socket outlived the server"
echo "server_peercred: all checks passed"
