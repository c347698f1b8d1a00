#!/usr/bin/env bash
# gpu-check.sh — the one-shot proof of the CUDA backend on a machine with an NVIDIA GPU.
#
# For a GPU machine that has the CUDA toolkit, meson, ninja and a python3 with numpy, but
# no libzmq/libyaml/libsystemd: builds the engine-only configuration for the present card,
# runs the engine, golden and compat tests on the `cuda` backend, compares CUDA with the
# CPU reference at B = 1, 7, 64, 1024 for f32/bf16/f16 weights (test_backend_cmp: relative
# L2, max |diff|, argmax, two runs bit-identical, states portable both ways), runs
# compute-sanitizer where present, then the benchmark (rwkv-bench --random: 0.1B, 1.5B and
# 7.2B shapes, B = 1, 64, 256, 1024, with and without logits). Prints one short table at
# the end and keeps every log in $OUT (default build-gpu/check), so nothing is lost when
# the run is cut short. Budget: under 8 minutes on an H100/H200.
# Usage: tools/gpu-check.sh [--quick]   (--quick: tests only, no benchmark)
#        tools/gpu-check.sh --dry-run (no GPU: the same steps on the emulated backend cuda-emu,
#        small shapes, B up to 64: checks this script itself)
set -u
MODE=${1:-}
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:/opt/torch/.venv/bin:$PATH"
BUILD=${BUILD:-build-gpu}
OUT=${OUT:-$BUILD/check}
mkdir -p "$OUT"
T0=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - T0 )); }

say "# gpu-check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
BE=cuda BATCHES=1,7,64,1024 SHAPES="12,768 24,2048 32,4096" BENCH_B=1,64,256,1024 CUDA_OPT=enabled
if [ "$MODE" = --dry-run ]; then
  BE=cuda-emu BATCHES=1,7,64 SHAPES="2,256,1000" BENCH_B=1,8 CAP=90 CUDA_OPT=auto
  say "dry run: backend cuda-emu, no GPU needed"
elif ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  say "no GPU visible (nvidia-smi -L failed): nothing to check"; exit 77
else
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee -a "$SUMMARY"
  CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
fi
PY=""
for p in /usr/bin/python3 /opt/torch/.venv/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then PY=$(command -v "$p"); break; fi
done
say "nvcc: $(nvcc --version | tail -1); python with numpy: ${PY:-none}; arch sm_$CAP"

# ---- build ------------------------------------------------------------------------------
opts=(-Ddaemon=disabled -Dcuda=$CUDA_OPT -Dgpu_archs="$CAP" -Dbuildtype=release)
[ -n "$PY" ] && opts+=(-Dpython="$PY") || opts+=(-Dgolden=false)
if ! { [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "${opts[@]}" > "$OUT/setup.log" 2>&1; } \
   || ! ninja -C "$BUILD" > "$OUT/build.log" 2>&1; then
  say "BUILD FAILED (see $OUT/setup.log, $OUT/build.log)"; tail -30 "$OUT/build.log" "$OUT/setup.log" 2>/dev/null; exit 1
fi
# registers, shared memory and spills of every kernel, from ptxas -v in the build log
grep -A1 "Compiling entry function" "$OUT/build.log" | grep -o "_Z[A-Za-z0-9_]*\|Used [0-9]* registers.*" \
  | paste - - > "$OUT/registers.txt" 2>/dev/null || true
say "built in $(elapsed) s; kernels (registers, smem): $(wc -l < "$OUT/registers.txt") entries in $OUT/registers.txt"
"$BUILD/kernels/rwkv-run" --backend list | tee -a "$SUMMARY"
export RWKV_BACKEND_DIR="$PWD/$BUILD/kernels/cuda"

# ---- tests on the cuda backend ----------------------------------------------------------
tests=$(meson test -C "$BUILD" --list 2>/dev/null | sed 's/.* \/ //' | grep -- "-$BE\$")
meson test -C "$BUILD" --num-processes 8 --print-errorlogs $tests test_backends test_cli > "$OUT/tests.log" 2>&1
say "tests on $BE: $(grep -E '^(Ok|Fail|Skipped|Timeout):' "$OUT/tests.log" | tr -s ' ' | paste -sd' ')"
grep -E ' (FAIL|TIMEOUT) ' "$OUT/tests.log" | tee -a "$SUMMARY"

# ---- CUDA vs CPU at B = 1, 7, 64, 1024 -------------------------------------------------
cmp() { # checkpoint weights tol_abs tol_rel
  local log="$OUT/cmp-$(basename "$1" .pth)-$2.log"
  RWKV_CMP_BATCHES=$BATCHES timeout 300 "$BUILD/tests/test_backend_cmp" "$1" "$BE" "$2" "$3" "$4" > "$log" 2>&1
  local rc=$?
  local worst_abs worst_rel agree
  worst_abs=$(grep -o 'max |diff| [0-9.e+-]*' "$log" | awk '{print $3}' | sort -g | tail -1)
  worst_rel=$(grep -o 'rel L2 [0-9.e+-]*' "$log" | awk '{print $3}' | sort -g | tail -1)
  agree=$(grep 'logits' "$log" | grep -o 'argmax [0-9]*/[0-9]*' | awk -F'[ /]' '{a+=$2; n+=$3} END {print a "/" n}')
  printf '%-28s %-7s %-5s max|diff| %-10s relL2 %-10s argmax %-10s %s\n' "$(basename "$1" .pth)" "$2" \
    "$([ $rc = 0 ] && echo ok || echo FAIL)" "${worst_abs:-?}" "${worst_rel:-?}" "${agree:-?}" "(bound $3, $4)" | tee -a "$SUMMARY"
}
if [ -f "$BUILD/tests/mixed-l4-c256.pth" ]; then
  say "# $BE vs cpu, B = $BATCHES (+ ragged runs), worst over all passes"
  # bounds: tests/meson.build (cmp_f32, cmp_bf16, cmp_f16)
  cmp "$BUILD/tests/mixed-l4-c256.pth" f32 1e-4 1e-5
  cmp "$BUILD/tests/mixed-l4-c256.pth" bf16 1.5 3e-2
  cmp "$BUILD/tests/mixed-l4-c256.pth" f16 0.25 6e-3
  cmp "$BUILD/tests/bf16-l2-c64-v65536.pth" f32 1e-4 1e-5
  cmp "$BUILD/tests/bf16-l2-c64-v65536.pth" stored 1.5 3e-2
  cmp "$BUILD/tests/fp16-l2-c256-ffn896.pth" stored 0.25 6e-3
else
  say "no golden checkpoints (python with numpy missing): CUDA vs CPU comparison skipped"
fi

# ---- compute-sanitizer ------------------------------------------------------------------
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$CS" ] && [ "$BE" = cuda ] && [ -f "$BUILD/tests/unit-model.pth" ]; then
  for tool in memcheck racecheck synccheck; do
    timeout 60 "$CS" --tool $tool --error-exitcode 9 "$BUILD/tests/test_engine" "$BUILD/tests/unit-model.pth" cuda \
      > "$OUT/sanitizer-$tool.log" 2>&1
    say "compute-sanitizer $tool: $([ $? = 0 ] && echo clean || echo "FAILED (see $OUT/sanitizer-$tool.log)")"
  done
else
  say "compute-sanitizer: not present"
fi
say "tests done at $(elapsed) s"
[ "$MODE" = "--quick" ] && exit 0

# ---- benchmark --------------------------------------------------------------------------
say "# rwkv-bench --backend $BE, random weights (bf16), V = 65536; floor vs H200 peak-sheet figures"
for shape in $SHAPES; do
  timeout 200 "$BUILD/tools/rwkv-bench" --random "$shape" --backend "$BE" --weights stored \
    --batch "$BENCH_B" --logits 1,0 --steps 16 --runs 3 > "$OUT/bench-$shape.log" 2>&1
  grep -E '^(model|random)' "$OUT/bench-$shape.log" | tee -a "$SUMMARY"
  grep '^#.*params' "$OUT/bench-$shape.log" | tee -a "$SUMMARY"
done
say "finished in $(elapsed) s"
