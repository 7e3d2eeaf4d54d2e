# lib.sh — helpers for the network tests: a key store, an `envelopefs kms serve` on a free loopback
# port with an access key, moto_server on another; everything is stopped on exit.
set -euo pipefail
B=${ENVELOPEFS_BIN:?}
T=$(mktemp -d /tmp/efs-net.XXXXXX)
export ENVELOPEFS_STORE=$T/store
PIDS=()
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  cd /
  for m in "$T"/mnt*; do mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }; done
  [ -f "$T/server.pid" ] && kill "$(cat "$T/server.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); [d:=d[k] for k in sys.argv[1].split(".")]; print(d)' "$1"; }
wait_port() { for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# start_server [serve options]: store + access key + daemon; sets PORT, URL, AK, SK
start_server() {
  [ -f "$ENVELOPEFS_STORE/keystore.db" ] || "$B" kms init-store --generate-root-key >/dev/null
  if [ -z "${AK:-}" ]; then
    "$B" kms create-access-key --user alice >"$T/ak.json"
    AK=$(jget AccessKey.AccessKeyId <"$T/ak.json"); SK=$(jget AccessKey.SecretAccessKey <"$T/ak.json")
  fi
  PORT=${PORT:-$(free_port)}
  "$B" kms serve --listen "127.0.0.1:$PORT" --pid-file "$T/server.pid" "$@"
  wait_port "$PORT" || fail "server did not start"
  URL=http://127.0.0.1:$PORT
}
stop_server() { kill "$(cat "$T/server.pid")"; for _ in $(seq 50); do [ -f "$T/server.pid" ] || break; sleep 0.1; done; rm -f "$T/server.pid"; }

start_moto() {
  MOTO_PORT=$(free_port)
  moto_server -p "$MOTO_PORT" >"$T/moto.log" 2>&1 & PIDS+=($!)
  wait_port "$MOTO_PORT" || fail "moto_server did not start"
  MOTO_URL=http://127.0.0.1:$MOTO_PORT
}
