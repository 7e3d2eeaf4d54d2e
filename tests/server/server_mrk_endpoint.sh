#!/usr/bin/env bash
# server_mrk_endpoint.sh — multi-Region keys between two servers that reach each other only over HTTP (the
# replication protocol, docs/DESIGN.md "Replication between servers"): two `envelopefs kms serve` on loopback,
# each on its own key store (us-east-1, us-west-2), each with a regions file naming the other region by its URL
# and the access key it signs with there (a 0600 credentials file; each server takes the protocol from that key only,
# --replication-keys). server_mrk_endpoint.py drives them with boto3
# in phases, the first server stopped in between (and once frozen with SIGSTOP: a dead peer stalls only the
# call that asks it); then both trails and logs are checked for secrets.
. "$(dirname "$0")/lib.sh"
PY="$(dirname "$0")/server_mrk_endpoint.py"
declare -A PORTS REG=([a]=us-east-1 [b]=us-west-2) OTHER=([a]=b [b]=a)
for s in a b; do
  "$B" kms init-store --store "$T/$s" --generate-root-key --region "${REG[$s]}" >/dev/null
  "$B" kms --store "$T/$s" create-access-key --user alice >"$T/ak-$s.json"
  # the other region's server signs with this one (its replication access key)
  "$B" kms --store "$T/$s" create-access-key --user replicator >"$T/repl-$s.json"
  chmod 600 "$T/repl-$s.json"
  PORTS[$s]=$(free_port)
done
for s in a b; do
  o=${OTHER[$s]}
  cat >"$T/regions-$s.json" <<J
{"regions": {"${REG[$o]}": {"kms": "http://127.0.0.1:${PORTS[$o]}", "credentials": "repl-$o.json"},
             "eu-central-1": {"kms": "http://127.0.0.1:9", "credentials": "repl-$o.json"}}}
J
done
# (no timeout on the replica-status question: the dead-peer phase stops a server and the question must wait)
start() { # start SERVER
  ENVELOPEFS_TEST_REPLICATION_STATUS_TIMEOUT_MS=0 ENVELOPEFS_TEST_CLOCK_OFFSET_S=${CLOCK_OFFSET:-} \
  ENVELOPEFS_LOG_FILE="$T/log-$1" ENVELOPEFS_LOG=debug "$B" kms --store "$T/$1" --regions "$T/regions-$1.json" serve \
    --listen "127.0.0.1:${PORTS[$1]}" --pid-file "$T/server-$1.pid" \
    --replication-keys "$(jget AccessKey.AccessKeyId <"$T/repl-$1.json")"
  PIDS+=("$(cat "$T/server-$1.pid")")
  wait_port "${PORTS[$1]}" || fail "server $1 did not start"
}
stop() { # stop SERVER: returns once it is gone
  local p; p=$(cat "$T/server-$1.pid"); kill "$p"
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  fail "server $1 did not stop"
}
start a; start b
run() { REPL_B_AK=$(jget AccessKey.AccessKeyId <"$T/repl-b.json") REPL_B_SK=$(jget AccessKey.SecretAccessKey <"$T/repl-b.json") \
  python3 "$PY" "$1" "$T/state.json" \
  "http://127.0.0.1:${PORTS[a]}" "$(jget AccessKey.AccessKeyId <"$T/ak-a.json")" "$(jget AccessKey.SecretAccessKey <"$T/ak-a.json")" \
  "http://127.0.0.1:${PORTS[b]}" "$(jget AccessKey.AccessKeyId <"$T/ak-b.json")" "$(jget AccessKey.SecretAccessKey <"$T/ak-b.json")"; }

run replicate
# bad credentials for the destination: refused there, nothing made
cp "$T/repl-b.json" "$T/repl-b.good"
python3 - "$T/repl-b.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["AccessKey"]["SecretAccessKey"] = "x" * 40; json.dump(d, open(sys.argv[1], "w"))
PY
run bad-credentials
chmod 644 "$T/repl-b.json"
run loose-credentials
cp "$T/repl-b.good" "$T/repl-b.json"; chmod 600 "$T/repl-b.json"
run rotate
stop a
run primary-down         # us-west-2 decrypts both regions' ciphertext, with us-east-1 gone
start a
stop b
run missed-push          # a rotation while us-west-2 is down
grep -q 'did not reach region us-west-2' "$T/log-a" || fail "the lost push is not in us-east-1's log"
start b
run catch-up             # it gets the version at the primary's next push
run update-primary
# a stopped peer stalls only the call that asks it (ScheduleKeyDeletion's replica check), not the server
trap 'for s in a b; do [ -f "$T/server-$s.pid" ] && kill -CONT "$(cat "$T/server-$s.pid")" 2>/dev/null; done; cleanup' EXIT
PEER_PID=$(cat "$T/server-a.pid") PEER_PORT=${PORTS[a]} run dead-peer
run protocol             # the protocol's operations are not AWS's, and refuse who may not use them
run replica-scheduled    # the primary (us-west-2) is PendingReplicaDeletion since dead-peer; its replica is scheduled
stop a; CLOCK_OFFSET=$((8 * 86400)) start a   # us-east-1 8 days on: the replica's waiting period is over
stop b; start b
run replica-deleted      # the primary found its last replica gone: PendingDeletion, its 7 days from then

# each side recorded its own part; no key material, token or secret in a record or a log line
for s in a b; do
  "$B" kms --store "$T/$s" lookup-audit --max-results 1000 >"$T/ev-$s.json"
done
python3 - "$T" <<'PY' || fail "trail or log check"
import json, re, sys
t = sys.argv[1]
def events(s):
    return [json.loads(e["CloudTrailEvent"]) for e in json.load(open(f"{t}/ev-{s}.json"))["Events"]]
a, b = events("a"), events("b")
def names(ev, **kw):
    return [e for e in ev if all(e.get(k) == v for k, v in kw.items())]
# the source: ReplicateKey by alice, UpdatePrimaryRegion; the destination: the replica's creation by the
# replicator access key, the pushes, the primary role taken
assert names(a, eventName="ReplicateKey") and all(e["userIdentity"]["userName"] == "alice" for e in names(a, eventName="ReplicateKey"))
rb = [e for e in names(b, eventName="ReplicateKey") if "errorCode" not in e]
assert len([e for e in rb if e["userIdentity"]["userName"] == "replicator" and
            e["userAgent"] == "envelopefs-replication/1"]) == 2, rb
assert len([e for e in rb if e["userAgent"].startswith("Python-urllib")]) == 1, rb  # the planted one, on record
# alice's refused attempt at the protocol is on record too
assert any(e.get("errorCode") == "AccessDeniedException" and e["userIdentity"].get("userName") == "alice"
           for e in names(b, eventName="GetReplicationParameters")), "alice's refused protocol call is not recorded"
assert names(b, eventName="SynchronizeMultiRegionKey"), "no push recorded in us-west-2"
assert [e for e in names(b, eventName="UpdatePrimaryRegion") if "errorCode" not in e], "no UpdatePrimaryRegion in us-west-2"
assert names(a, eventName="SynchronizeMultiRegionKey"), "no push from the new primary recorded in us-east-1"
# the bad credentials were refused, and recorded, where they were presented
assert any(e.get("errorCode") for e in names(b, eventName="GetReplicationParameters")), "no refused call in us-west-2's trail"
secrets = [json.load(open(f"{t}/{f}"))["AccessKey"]["SecretAccessKey"] for f in ("repl-a.json", "repl-b.good", "ak-a.json", "ak-b.json")]
WIRE = {"WrappedKey", "ReplicationToken", "Versions", "Material", "wrappedKey", "replicationToken", "versions",
        "material", "PublicKey", "publicKey", "Plaintext", "plaintext"}
def keys(o):
    if isinstance(o, dict):
        for k, v in o.items():
            yield k
            yield from keys(v)
    elif isinstance(o, list):
        for v in o:
            yield from keys(v)
for ev in (a, b):
    for e in ev:
        assert not WIRE & set(keys(e)), e
        txt = json.dumps(e)
        assert not re.search(r"[A-Za-z0-9+/]{60,}={0,2}", txt), txt[:400]
for f in ("ev-a.json", "ev-b.json", "log-a", "log-b"):
    txt = open(f"{t}/{f}").read()
    for sk in secrets:
        assert sk not in txt, f"a secret access key in {f}"
for f in ("log-a", "log-b"):
    txt = open(f"{t}/{f}").read()
    assert not re.search(r"[A-Za-z0-9+/]{60,}={0,2}", txt), f"a long base64 run in {f}"
print("trails and logs: ok")
PY
echo "server_mrk_endpoint: all checks passed"
