#!/usr/bin/env bash
# Builds the HTTP/1.1 request-path fuzzer (fuzz_h1.c + the gateway core) with clang's
# libFuzzer, ASan and UBSan, and runs it for a bounded time (default 20 s) from the seeds.
#   fuzz_h1.sh SRC_DIR OUT_DIR [SECONDS]
# Exit 77 (ctest SKIP) when clang cannot build libFuzzer targets here.
set -euo pipefail
src=${1:?source dir}
out=${2:?output dir}
secs=${3:-20}
mkdir -p "$out/corpus"
command -v clang >/dev/null || { echo "clang missing: skip"; exit 77; }
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' >"$out/probe.c"
if ! clang -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>/dev/null; then
  echo "clang -fsanitize=fuzzer unavailable: skip"
  exit 77
fi
gw="$src/gateway"
# the core's files of the request path (gateway/CMakeLists.txt GW_CORE_NAMES, without the
# process runner gw_service)
core=()
for n in gw_server gw_req gw_h1 gw_h2 gw_tls gw_err gw_corr; do core+=("$gw/$n.c"); done
# shellcheck disable=SC2046
clang -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$gw" -I"$src/common" \
  $(pkg-config --cflags libnghttp2 libevent openssl) \
  "${core[@]}" "$src/common/cm_log.c" "$src/common/cm_metrics.c" "$src/common/cm_config.c" \
  "$src/common/cm_alloc.c" "$src/common/cm_corr.c" "$src/common/cm_time.c" \
  "$src/tests/gateway-core/fuzz_h1.c" -o "$out/fuzz_h1" \
  -lhttp_parser $(pkg-config --libs libnghttp2 libevent_core libevent_openssl libevent_pthreads openssl) \
  -lpthread -lm
cp "$src"/tests/gateway-core/fuzz_h1_seeds/* "$out/corpus/"
ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_h1" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=8192 -print_final_stats=1 "$out/corpus" 2>&1 | tail -20
exit "${PIPESTATUS[0]}"
