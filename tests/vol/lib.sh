# lib.sh — shared setup of the volume tests (sourced): the binary, a temporary store in $T with its
# volume store $VS, a cleanup that detaches every attached volume and unmounts what the test mounted
# under $T/m*, and the helpers every test uses. Source it as `. "$(dirname "$0")/lib.sh" NAME [fuse]
# [loop]`: NAME names the temporary directory; `fuse` / `loop` skip (exit 77) where /dev/fuse or loop
# devices are absent and require e2fsprogs.
set -euo pipefail
B=${ENVELOPEFS_BIN:?ENVELOPEFS_BIN must point at the envelopefs binary}
_vol_name=${1:?lib.sh NAME}
shift
for _need in "$@"; do
  case $_need in
    fuse) [ -e /dev/fuse ] || { echo "SKIP: /dev/fuse absent"; exit 77; } ;;
    loop) [ -e /dev/loop-control ] || { echo "SKIP: no loop devices"; exit 77; }
          command -v mkfs.ext4 >/dev/null || { echo "FAIL: e2fsprogs missing (scripts/deps)"; exit 1; } ;;
  esac
done
T=$(mktemp -d "/tmp/$_vol_name.XXXXXX")
export ENVELOPEFS_STORE=$T/store
VS=$T/store/volumes
fail() { echo "FAIL: $*" >&2; exit 1; }
vol_cleanup() {
  cd /
  for m in "$T"/m*; do mountpoint -q "$m" 2>/dev/null && umount "$m" 2>/dev/null; done
  for v in $(ls "$VS"/run 2>/dev/null | sed -n 's/\.json$//p'); do "$B" volume detach "$v" >/dev/null 2>&1 || true; done
  for m in "$VS"/run/*.mnt; do mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null; done
  rm -rf "$T"
}
trap vol_cleanup EXIT
q() { "$B" ec2 "$@" --output text; }
expect_err() { # expect_err CODE CMD...: fails with exit 254 and the EC2 code
  local code=$1 out rc=0; shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = 254 ] || fail "expected exit 254 from $*, got $rc: $out"
  case $out in *"An error occurred ($code)"*) ;; *) fail "expected $code from $*, got: $out";; esac
}
# pid_of VOL: the attach daemon's pid, from its run file
pid_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Pid"])' "$VS/run/$1.json"; }
attach_loop() { "$B" volume attach "$1" --loop --query Device --output text; }
sums() { (cd "$1" && find . -type f ! -path './lost+found*' -print0 | sort -z | xargs -0 sha256sum); }
