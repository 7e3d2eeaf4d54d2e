#!/usr/bin/env bash
# server_mrk.sh — multi-Region keys through two `envelopefs kms serve` on loopback, each on its own key store
# (regions us-east-1 and eu-west-1, one regions file): runs server_mrk.py with boto3 against both.
. "$(dirname "$0")/lib.sh"
cat >"$T/regions.json" <<J
{"regions": {"us-east-1": {"store": "$T/a"}, "eu-west-1": {"store": "$T/b"}}}
J
declare -A PORTS
for r in a:us-east-1 b:eu-west-1; do
  s=${r%%:*}; reg=${r#*:}
  "$B" kms init-store --store "$T/$s" --generate-root-key --region "$reg" >/dev/null
  "$B" kms --store "$T/$s" create-access-key --user alice >"$T/ak-$s.json"
  p=$(free_port); PORTS[$s]=$p
  "$B" kms --store "$T/$s" --regions "$T/regions.json" serve --listen "127.0.0.1:$p" --pid-file "$T/server-$s.pid"
  PIDS+=("$(cat "$T/server-$s.pid")")
  wait_port "$p" || fail "server $s did not start"
done
python3 "$(dirname "$0")/server_mrk.py" \
  "http://127.0.0.1:${PORTS[a]}" "$(jget AccessKey.AccessKeyId <"$T/ak-a.json")" "$(jget AccessKey.SecretAccessKey <"$T/ak-a.json")" \
  "http://127.0.0.1:${PORTS[b]}" "$(jget AccessKey.AccessKeyId <"$T/ak-b.json")" "$(jget AccessKey.SecretAccessKey <"$T/ak-b.json")"
# both trails record the replication; no key material in either
for s in a b; do
  "$B" kms --store "$T/$s" lookup-audit --max-results 1000 >"$T/ev-$s.json"
  grep -q ReplicateKey "$T/ev-$s.json" || fail "no ReplicateKey record in store $s"
  grep -q UpdatePrimaryRegion "$T/ev-$s.json" || fail "no UpdatePrimaryRegion record in store $s"
  # the key material never appears in a record: the replication records carry no base64 run of 32+ bytes
  python3 - "$T/ev-$s.json" <<'PY' || fail "a trail record of store $s carries key material"
import json, re, sys
txt = open(sys.argv[1]).read()
recs = [l for l in re.split(r"(?=\{[^{}]*\"eventName\")", txt) if re.search(r"ReplicateKey|UpdatePrimaryRegion", l)]
assert recs, "no replication records"
for r in recs:
    assert "Plaintext" not in r and not re.search(r"[A-Za-z0-9+/]{43,}={0,2}", r), r[:400]
PY
done
echo "server_mrk: all checks passed"
