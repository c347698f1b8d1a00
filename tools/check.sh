#!/usr/bin/env bash
# check.sh — everything `make check` runs, with one summary line at the end.
#   1. the normal build (warnings are errors) and every meson test suite;
#   2. an ASan+UBSan build running the unit, golden, compat and fuzz-corpus suites;
#   3. an engine-only build without -march=native (the portable kernels, and proof that the
#      engine builds where libzmq/libyaml/libsystemd are absent), unit + golden + compat;
#   4. each libFuzzer target for FUZZ_SECONDS (default 60) from its seed corpus.
# Prints "N passed, N failed" last; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
JOBS=${JOBS:-$(nproc)}
passed=0 failed=0 skipped=0

count() { # count results of a meson testlog.json
  local log=$1 p f s
  [ -f "$log" ] || { failed=$((failed + 1)); return; }
  p=$(grep -c '"result": "\(OK\|EXPECTEDFAIL\)"' "$log")
  f=$(grep -c '"result": "\(FAIL\|TIMEOUT\|ERROR\|UNEXPECTEDPASS\)"' "$log")
  s=$(grep -c '"result": "SKIP"' "$log")
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

step() { echo; echo "==== $*"; }

step "normal build ($BUILD, werror)"
if { [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" -Dwerror=true; } && meson configure "$BUILD" -Dwerror=true && ninja -C "$BUILD"; then
  meson test -C "$BUILD" --num-processes "$JOBS" --print-errorlogs
  count "$BUILD/meson-logs/testlog.json"
else
  echo "BUILD FAILED: $BUILD"; failed=$((failed + 1))
fi

step "ASan+UBSan build ($ASAN_BUILD)"
if { [ -f "$ASAN_BUILD/build.ninja" ] || meson setup "$ASAN_BUILD" -Dbuildtype=debugoptimized \
       -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true; } && ninja -C "$ASAN_BUILD"; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C "$ASAN_BUILD" --num-processes "$JOBS" --print-errorlogs --suite unit --suite golden --suite compat --suite fuzz \
    --timeout-multiplier 4
  count "$ASAN_BUILD/meson-logs/testlog.json"
else
  echo "BUILD FAILED: $ASAN_BUILD"; failed=$((failed + 1))
fi

PORT_BUILD=${PORT_BUILD:-build-portable}
step "engine-only portable build ($PORT_BUILD: -Ddaemon=disabled -Dnative=false, scalar/auto-vectorised paths)"
if { [ -f "$PORT_BUILD/build.ninja" ] || meson setup "$PORT_BUILD" -Ddaemon=disabled -Dnative=false -Dwerror=true; } \
     && ninja -C "$PORT_BUILD"; then
  meson test -C "$PORT_BUILD" --num-processes "$JOBS" --print-errorlogs --suite unit --suite golden --suite compat
  count "$PORT_BUILD/meson-logs/testlog.json"
else
  echo "BUILD FAILED: $PORT_BUILD"; failed=$((failed + 1))
fi

step "libFuzzer targets ($FUZZ_BUILD, ${FUZZ_SECONDS}s each)"
if command -v clang >/dev/null && { [ -f "$FUZZ_BUILD/build.ninja" ] || CC=clang meson setup "$FUZZ_BUILD" \
       -Dfuzz=true -Dgolden=false -Db_lundef=false -Dbuildtype=debugoptimized; } && ninja -C "$FUZZ_BUILD"; then
  for target in "$FUZZ_BUILD"/tests/fuzz/fuzz_*; do
    [ -f "$target" ] && [ -x "$target" ] || continue
    name=$(basename "$target")
    corpus=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
    if "$target" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
         "$corpus" > "$FUZZ_BUILD/$name.log" 2>&1; then
      echo "fuzz $name: OK ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "$FUZZ_BUILD/$name.log" | grep -o '[0-9]*$') runs)"
      passed=$((passed + 1))
    else
      echo "fuzz $name: FAILED"; tail -40 "$FUZZ_BUILD/$name.log"; failed=$((failed + 1))
    fi
    rm -rf "$corpus"
  done
else
  echo "BUILD FAILED: $FUZZ_BUILD"; failed=$((failed + 1))
fi

echo
echo "$skipped skipped (exit 77: optional data or hardware absent)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
