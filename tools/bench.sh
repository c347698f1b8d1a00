#!/usr/bin/env bash
# bench.sh — the CPU benchmark of the engine issue: random checkpoints of the published 0.1B
# (L12 C768) and 0.4B (L24 C1024) shapes, V = 65536, fp32 and bf16 storage (the bf16 file
# also with weights bf16dot: bf16 dot products, inputs rounded to bf16), batch
# 1/8/16/32/64/128 (BATCH=...), threads 1/2. Checkpoints are generated once into $BENCH_DIR (default build/bench).
# Usage: tools/bench.sh [extra rwkv-bench options]
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DIR=${BENCH_DIR:-$BUILD/bench}
PY=${PYTHON3:-/usr/bin/python3}
mkdir -p "$DIR"
gen() { # name layers embd dtype
  [ -f "$DIR/$1.pth" ] || "$PY" tools/gen-checkpoint.py --out "$DIR/$1.pth" --layers "$2" --embd "$3" \
      --vocab 65536 --dtype "$4" --seed 1
}
gen rwkv7-0.1b-fp32 12 768 fp32
gen rwkv7-0.1b-bf16 12 768 bf16
gen rwkv7-0.4b-fp32 24 1024 fp32
gen rwkv7-0.4b-bf16 24 1024 bf16
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
# batch 1, 8 and 64 are the issue's figures; 16, 32, 128 show where scaling stops
BATCH=${BATCH:-1,8,16,32,64,128}
for m in 0.1b 0.4b; do
  "$BUILD/tools/rwkv-bench" --model "$DIR/rwkv7-$m-fp32.pth" --weights f32 --batch "$BATCH" "$@"
  "$BUILD/tools/rwkv-bench" --model "$DIR/rwkv7-$m-bf16.pth" --weights stored,bf16dot --batch "$BATCH" "$@"
done
