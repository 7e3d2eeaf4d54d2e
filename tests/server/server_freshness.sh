#!/usr/bin/env bash
# server_freshness.sh — another process changing the store under a running `envelopefs kms serve`: the
# CLI (embedded store, its own process) creates, disables, re-enables and schedules the deletion of a
# key; the server follows within its staleness bound (KMS_FRESHNESS_MS, 2 ms; we wait 50 ms), also
# while it is busy, and refuses the disabled or pending key. Then the server keeps serving under load
# while the CLI flips the key, and never answers from a state older than the bound (checked by
# timestamps on both sides). Also: an access key deleted by the CLI is refused by the server within the
# same bound although the server has it cached, while other keys keep working.
. "$(dirname "$0")/lib.sh"
start_server
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1
S() { "$B" kms --endpoint-url "$URL" "$@"; }      # through the server
L() { "$B" kms "$@"; }                            # the store directly (another process)
gdk() { S generate-data-key --key-id "$1" --key-spec AES_256 --query KeyId --output text; }
expect() { local name=$1; shift; if "$@" >"$T/out" 2>"$T/err"; then fail "$* succeeded, expected $name"; fi
           grep -q "($name)" "$T/err" || fail "$*: expected $name, got $(cat "$T/err")"; }

KID=$(L create-key --description fresh --query KeyMetadata.KeyId --output text)
sleep 0.05
gdk "$KID" | grep -q "$KID" || fail "a key created by the CLI is not usable through the server"
L disable-key --key-id "$KID"
sleep 0.05
expect DisabledException gdk "$KID"
L enable-key --key-id "$KID"
sleep 0.05
gdk "$KID" | grep -q "$KID" || fail "re-enabled key refused"
L schedule-key-deletion --key-id "$KID" --pending-window-in-days 7 >/dev/null
sleep 0.05
expect KMSInvalidStateException gdk "$KID"
L cancel-key-deletion --key-id "$KID" >/dev/null
L enable-key --key-id "$KID"
sleep 0.05

# Revocation: bob's key is used (so the server caches it), deleted by the CLI, then refused.
L create-access-key --user bob >"$T/bob.json"
BAK=$(jget AccessKey.AccessKeyId <"$T/bob.json"); BSK=$(jget AccessKey.SecretAccessKey <"$T/bob.json")
bob() { AWS_ACCESS_KEY_ID=$BAK AWS_SECRET_ACCESS_KEY=$BSK S "$@"; }
bob list-keys >/dev/null || fail "a new access key is refused"
bob list-keys >/dev/null || fail "a cached access key is refused"
L list-access-keys --user bob | grep -q "\"$BAK\"" || fail "list-access-keys does not show bob's key"
L list-access-keys | grep -q SecretAccessKey && fail "list-access-keys shows secrets"
L delete-access-key --access-key-id "$BAK"
sleep 0.05
expect UnrecognizedClientException bob list-keys
S list-keys >/dev/null || fail "deleting bob's key broke alice's"
[ "$(L list-access-keys --user bob | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["AccessKeyMetadata"]))')" = 0 ] \
  || fail "a deleted access key is still listed"
expect NotFoundException L delete-access-key --access-key-id "$BAK"

# Under load: a Python client hammers GenerateDataKey over keep-alive connections and records
# (send time, answer); the CLI disables the key at a recorded time. Every request sent more than the
# bound (plus scheduling slack, 20 ms) after the CLI returned must be refused.
python3 - "$URL" "$KID" "$AK" "$SK" "$B" <<'PY' || fail "the server answered from a stale key state under load"
import json, os, subprocess, sys, threading, time, http.client, urllib.parse
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, kid, ak, sk, b = sys.argv[1:6]
u = urllib.parse.urlparse(url)
stop = threading.Event(); log = []; lock = threading.Lock()
def client():
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    body = json.dumps({"KeyId": kid, "KeySpec": "AES_256"})
    while not stop.is_set():
        req = AWSRequest(method="POST", url=url + "/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.GenerateDataKey"})
        SigV4Auth(Credentials(ak, sk), "kms", "us-east-1").add_auth(req)
        t = time.monotonic()
        c.request("POST", "/", body=body, headers=dict(req.headers.items()))
        r = c.getresponse(); data = r.read()
        with lock: log.append((t, r.status, json.loads(data).get("__type", "")))
ths = [threading.Thread(target=client) for _ in range(4)]
for t in ths: t.start()
time.sleep(0.3)
subprocess.run([b, "kms", "disable-key", "--key-id", kid], check=True)
done = time.monotonic()
time.sleep(0.3)
stop.set()
for t in ths: t.join()
late_ok = [e for e in log if e[0] > done + 0.02 and e[1] == 200]
refused = [e for e in log if e[1] != 200]
print(f"{len(log)} requests, {len(refused)} refused, {len(late_ok)} served after the bound", file=sys.stderr)
bad = [e for e in refused if e[2] != "DisabledException"]
sys.exit(1 if late_ok or bad or not refused or not log else 0)
PY
echo "server_freshness: ok"
