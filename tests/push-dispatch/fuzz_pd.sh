#!/usr/bin/env bash
# Builds fuzz_pd.c (push-dispatch's parsers of provider answers and tokenData) with clang's
# libFuzzer, ASan and UBSan, and runs it for a bounded time (default 15 s).
#   fuzz_pd.sh SRC_DIR OUT_DIR PROTO_GEN_DIR [SECONDS]
# Exit 77 (ctest SKIP) when clang cannot build libFuzzer targets here.
set -euo pipefail
src=${1:?source dir}
out=${2:?output dir}
gen=${3:?generated proto dir}
secs=${4:-15}
mkdir -p "$out/corpus"
command -v clang >/dev/null || { echo "clang missing: skip"; exit 77; }
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' >"$out/probe.c"
if ! clang -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>/dev/null; then
  echo "clang -fsanitize=fuzzer unavailable: skip"
  exit 77
fi
pd="$src/services/push-dispatch"
# shellcheck disable=SC2046
clang -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$pd" -I"$src/common" -I"$gen" \
  $(pkg-config --cflags libnghttp2 openssl libcjson libcurl rocksdb libprotobuf-c) \
  "$src/tests/push-dispatch/fuzz_pd.c" "$pd/pd_http.c" "$pd/pd_jwt.c" "$pd/pd_queue.c" \
  "$src/common/cm_log.c" "$src/common/cm_config.c" "$src/common/cm_b64.c" "$src/common/cm_rocksdb.c" \
  "$src/common/cm_seal.c" "$src/common/cm_alloc.c" "$src/common/cm_fs.c" "$src/common/cm_time.c" \
  "$gen/tigress/push/v1/push_dispatch.pb-c.c" -o "$out/fuzz_pd" \
  $(pkg-config --libs libnghttp2 openssl libcjson libcurl rocksdb libprotobuf-c) -lpthread -lm
# seeds: one per parser
printf '\x00https://hooks.example.com:8443/a/b?c=d' >"$out/corpus/url"
printf '\x01\x01\x2e{"reason":"BadDeviceToken"}' >"$out/corpus/apns"
printf '\x02{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}}' >"$out/corpus/fcm"
printf '\x03Wed, 21 Oct 2015 07:28:00 GMT' >"$out/corpus/ra"
printf '\x04\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01' >"$out/corpus/addr"
ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_pd" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=4096 -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" 2>&1 | tail -12
exit "${PIPESTATUS[0]}"
