#!/usr/bin/env bash
# test_audit.sh — the audit trail is tamper-evident: `envelopefs kms validate-audit` passes on an
# untouched trail and, for each way of tampering with the store file (edit, edit and re-hash, delete,
# insert, reorder, truncate the newest, delete the oldest, forge a digest), fails naming the first bad
# record. Each case runs on a fresh copy of one store.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export ENVELOPEFS_STORE=$T/orig
$B kms init-store --generate-root-key >/dev/null
KID=$($B kms create-key --description audit | python3 -c 'import json,sys; print(json.load(sys.stdin)["KeyMetadata"]["KeyId"])')
for i in $(seq 12); do $B kms generate-random --number-of-bytes 4 >/dev/null; done
$B kms describe-key --key-id "$KID" >/dev/null
PK=$($B kms get-audit-public-key | python3 -c 'import json,sys; print(json.load(sys.stdin)["PublicKey"])')
$B kms validate-audit --public-key "$PK" >"$T/ok.json" || fail "untouched trail: $(cat "$T/ok.json")"

# sql CASE SQL: a copy of the store with SQL (python's sqlite3, so the file's own format) applied
tamper() {
  rm -rf "$T/case"; cp -a "$T/orig" "$T/case"
  python3 - "$T/case/keystore.db" "$2" <<'PY'
import hashlib, sqlite3, struct, sys
db = sqlite3.connect(sys.argv[1])
code = sys.argv[2]
def rehash(seq):
    """What an attacker who knows the format can do: recompute a record's hash over its new contents."""
    r = db.execute("SELECT prev, seq, time, account, user, source, operation, key_id, result, event_id,"
                   " access_key, event, read_only FROM audit WHERE seq=?", (seq,)).fetchone()
    h = hashlib.sha256(b"envelopefs-audit-v1\0" + r[0] + struct.pack(">qq", r[1], r[2]))
    for s in r[3:12]:
        b = (s or "").encode()
        h.update(struct.pack(">Q", len(b)) + b)
    h.update(bytes([1 if r[12] else 0]))
    db.execute("UPDATE audit SET hash=? WHERE seq=?", (h.digest(), seq))
exec(code)
db.commit()
PY
}
# expect CASE SEQ: validate-audit fails and names record SEQ first
expect() {
  set +e; ENVELOPEFS_STORE=$T/case ENVELOPEFS_ROOT_KEY_FILE=$T/case/root.key $B kms validate-audit --public-key "$PK" >"$T/v.json" 2>"$T/err"; rc=$?; set -e
  [ $rc -eq 1 ] || fail "$1: validate-audit exited $rc: $(cat "$T/v.json")"
  got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["FirstBadRecord"]["Seq"])' "$T/v.json")
  [ "$got" = "$2" ] || fail "$1: first bad record $got, expected $2: $(cat "$T/v.json")"
  echo "$1: detected at record $got ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["FirstBadRecord"]["Reason"])' "$T/v.json"))"
}
q() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$T/orig/keystore.db" "$1"; }
LO=$(q "SELECT min(seq) FROM audit"); HI=$(q "SELECT max(seq) FROM audit"); MID=$((LO + 5))
[ $((HI - LO)) -ge 12 ] || fail "too few records: $LO..$HI"

tamper edit "db.execute(\"UPDATE audit SET event=replace(event, 'GenerateRandom', 'Decrypt') WHERE seq=$MID\")"
expect edit "$MID"
tamper edit-column "db.execute(\"UPDATE audit SET user='mallory' WHERE seq=$MID\")"
expect edit-column "$MID"
tamper edit-rehash "db.execute(\"UPDATE audit SET user='mallory' WHERE seq=$MID\"); rehash($MID)"
expect edit-rehash "$MID"
tamper delete "db.execute('DELETE FROM audit WHERE seq=$MID')"
expect delete "$MID"
tamper delete-oldest "db.execute('DELETE FROM audit WHERE seq=$LO')"
expect delete-oldest "$LO"
tamper insert "
db.execute('UPDATE audit SET seq=-seq WHERE seq>$MID'); db.execute('UPDATE audit SET seq=1-seq WHERE seq<0')
db.execute(\"INSERT INTO audit SELECT $MID+1, time, account, user, source, operation, key_id, result, 'forged', access_key, read_only, event, prev, hash FROM audit WHERE seq=$MID\")"
expect insert "$((MID + 1))"
tamper reorder "db.execute('UPDATE audit SET seq=-1 WHERE seq=$MID'); db.execute('UPDATE audit SET seq=$MID WHERE seq=$MID+1'); db.execute('UPDATE audit SET seq=$MID+1 WHERE seq=-1')"
expect reorder "$MID"
tamper truncate-newest "db.execute('DELETE FROM audit WHERE seq>$HI-3')"
expect truncate-newest "$((HI - 2))"
tamper truncate-one "db.execute('DELETE FROM audit WHERE seq=$HI')"
expect truncate-one "$HI"
tamper forge-digest "db.execute('UPDATE audit_digests SET last_seq=last_seq-1 WHERE id=(SELECT max(id) FROM audit_digests)')"
expect forge-digest "-$(q "SELECT max(id) FROM audit_digests")"
tamper replace-key "db.execute(\"UPDATE meta SET v=zeroblob(32) WHERE k='audit_sign_pk'\")"
set +e; ENVELOPEFS_STORE=$T/case $B kms list-keys >/dev/null 2>"$T/err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "audit public key" "$T/err" || fail "a replaced audit public key was not noticed (rc=$rc)"

# --start-time: the check starts at the newest digest before that time, and still catches an edit after it
sleep 1.1; T1=$(date -u +%s); sleep 1.1
for i in $(seq 3); do $B kms generate-random --number-of-bytes 4 >/dev/null; done
$B kms validate-audit --start-time "$T1" >"$T/st.json" || fail "--start-time: $(cat "$T/st.json")"
FIRST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["FirstSeq"])' "$T/st.json")
[ "$FIRST" -gt "$LO" ] || fail "--start-time checked from $FIRST, not from a later digest"
NEW=$(q "SELECT max(seq) FROM audit")
tamper edit-late "db.execute(\"UPDATE audit SET result='AccessDeniedException' WHERE seq=$NEW\")"
set +e; ENVELOPEFS_STORE=$T/case $B kms validate-audit --start-time "$T1" >"$T/v.json"; rc=$?; set -e
[ $rc -eq 1 ] || fail "--start-time missed an edit of record $NEW"
echo "test_audit: ok"
