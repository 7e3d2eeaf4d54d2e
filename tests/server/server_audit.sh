#!/usr/bin/env bash
# server_audit.sh — the audit trail of a real server: (1) durable before the answer: kill -9 the
# server during a loop of CreateKey calls; every key the client saw created has its record, and the
# trail still validates; (2) no secret in any record or log: data keys, plaintexts, the secret access
# key, the passphrase and the root key, in hex and base64, grepped in every column of every record
# and in the server's debug log; (3) failed authentication is recorded with the claimed access key id
# and source address, and a flood of failures is rate-limited.
. "$(dirname "$0")/lib.sh"
P=$(dirname "$0")/server_audit.py
# a passphrase store, so the passphrase is one of the secrets looked for
PASS="correct horse battery staple $RANDOM$RANDOM"
printf '%s\n' "$PASS" >"$T/pass"; chmod 600 "$T/pass"
export ENVELOPEFS_PASSPHRASE_FILE=$T/pass ENVELOPEFS_LOG_FILE=$T/server.log ENVELOPEFS_LOG=debug
"$B" kms init-store --passphrase-file "$T/pass" >/dev/null
start_server
PID=$(cat "$T/server.pid")
python3 "$P" loop "$URL" "$AK" "$SK" "$T/created" & LOOP=$!
touch "$T/created"; for _ in $(seq 100); do [ "$(wc -l <"$T/created")" -ge 150 ] && break; sleep 0.1; done
kill -9 "$PID"
wait $LOOP
rm -f "$T/server.pid"
N=$(wc -l <"$T/created")
[ "$N" -ge 20 ] || fail "only $N keys were created before the kill"
python3 - "$ENVELOPEFS_STORE/keystore.db" "$T/created" <<'PY' || fail "records lost by kill -9"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
have = {r[0] for r in db.execute("SELECT key_id FROM audit WHERE operation='CreateKey' AND result='OK'")}
seen = [l.strip() for l in open(sys.argv[2]) if l.strip()]
missing = [k for k in seen if k not in have]
print(f"kill -9: {len(seen)} CreateKey calls answered, {len(missing)} without a record")
assert not missing, missing[:5]
PY
"$B" kms validate-audit >"$T/v.json" || fail "validate-audit after kill -9: $(cat "$T/v.json")"

unset PORT
ENVELOPEFS_KMS_SYNC=full start_server  # every commit fsynced: the same records, the same checks
python3 "$P" secrets "$URL" "$AK" "$SK" "$T/secrets"
python3 "$P" authfail "$URL" "$AK" "$SK" 400
stop_server
# every record, every column (hex of the blobs too), and the log
python3 - "$ENVELOPEFS_STORE/keystore.db" >"$T/records" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for row in db.execute("SELECT * FROM audit"):
    print("\t".join(c.hex() if isinstance(c, bytes) else str(c) for c in row))
for row in db.execute("SELECT * FROM audit_digests"):
    print("\t".join(c.hex() if isinstance(c, bytes) else str(c) for c in row))
PY
[ -s "$T/server.log" ] && [ "$(wc -l <"$T/records")" -gt 100 ] || fail "nothing to search"
{ cat "$T/secrets"; python3 -c 'import sys; print(sys.argv[1].encode().hex()); print(sys.argv[2].encode().hex())' "$SK" "$PASS"; } >"$T/all"
python3 - "$T/all" "$T/records" "$T/server.log" <<'PY' || fail "a secret appears in the audit trail or the log"
import base64, sys
secrets = [bytes.fromhex(l.strip()) for l in open(sys.argv[1]) if l.strip()]
forms = []
for s in secrets:
    forms += [s.hex(), s.hex().upper(), base64.b64encode(s).decode(), base64.urlsafe_b64encode(s).decode().rstrip("="),
              base64.b64encode(s).decode().rstrip("=")]
    try:
        forms.append(s.decode())  # the secret access key and passphrase are text
    except UnicodeDecodeError:
        pass
for path in sys.argv[2:]:
    text = open(path, errors="replace").read()
    for f in forms:
        assert len(f) >= 16 and f not in text, f"{path} holds a secret ({f[:8]}...)"
print(f"secrets: {len(secrets)} secrets in {len(forms)} forms absent from the records and the log")
PY
# failed authentication: recorded with the claimed key and address, at most the burst plus the rate
python3 - "$ENVELOPEFS_STORE/keystore.db" "$AK" <<'PY' || fail "authentication failures"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT access_key, source, result, event FROM audit WHERE result IN"
                  " ('InvalidSignatureException', 'UnrecognizedClientException')").fetchall()
sig = [r for r in rows if r[2] == "InvalidSignatureException"]
unk = [r for r in rows if r[2] == "UnrecognizedClientException"]
assert sig and all(r[0] == sys.argv[2] and r[1] == "http:127.0.0.1" for r in sig), rows[:3]
assert unk and unk[0][0] == "AKIAUNKNOWNKEY000000", unk
ev = json.loads(sig[0][3])
assert ev["errorCode"] == "InvalidSignatureException" and ev["userIdentity"]["accessKeyId"] == sys.argv[2]
assert ev["sourceIPAddress"] == "127.0.0.1", ev
print(f"authfail: 402 failures, {len(rows)} recorded")
assert len(rows) < 300, f"{len(rows)} records: the rate limit did not hold"
assert any("not recorded: rate limit" in json.loads(r[3]).get("errorMessage", "") for r in rows), "no suppression count"
PY
"$B" kms validate-audit >"$T/v.json" || fail "validate-audit: $(cat "$T/v.json")"
echo "server_audit: ok"
