# hsm_token.sh — sourced by the custom key store tests: a SoftHSM2 token in $T/tokens (SOFTHSM2_CONF, a token
# labelled $HSM_LABEL with user PIN $HSM_PIN) and a clusters file naming it as $HSM_CLUSTER
# (ENVELOPEFS_HSM_CLUSTERS), and $HSM_CLUSTER2 naming a token that does not exist. Exits 77 (skipped) when SoftHSM2 is not installed.
HSM_MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
HSM_LABEL=envelopefs-cli HSM_PIN=cli-pin-4321 HSM_CLUSTER=cluster-abcdefghijk HSM_CLUSTER2=cluster-ccccccccccc
if [ ! -r "$HSM_MODULE" ] || ! command -v softhsm2-util >/dev/null; then
  echo "SKIP: SoftHSM2 is not installed ($HSM_MODULE, softhsm2-util)"; exit 77
fi
mkdir -p "$T/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T" >"$T/softhsm2.conf"
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label "$HSM_LABEL" --pin "$HSM_PIN" --so-pin "so-$HSM_PIN" >/dev/null
printf '# cluster id, PKCS#11 module, token label\n%s %s %s\n%s %s no-such-token\n' "$HSM_CLUSTER" "$HSM_MODULE" \
  "$HSM_LABEL" "$HSM_CLUSTER2" "$HSM_MODULE" >"$T/hsm-clusters"
export ENVELOPEFS_HSM_CLUSTERS=$T/hsm-clusters
