#!/usr/bin/env bash
# Everything GPU-side in one call (for a session lent a GPU machine), under 9 minutes on one
# H100: benchmarks/gpu_suite.py (CUDA parity; the real commands end to end through the CLI;
# torchrun with one process under DDP and FSDP2; each paper recipe's peak memory at its per-GPU
# batch; the UMT-B/16 stage-1 step eager / compiled / official-style with MFU; the DataLoader
# with 16 workers beside the step's appetite, torchcodec's CUDA decoder). One summary table,
# OUT_DIR/gpu_suite.json and OUT_DIR/gpu_suite.log.
# UMT_GPU_EXTRA=1 then runs the other step benchmarks at paper size too (more minutes).
# Usage (repo root, with umt importable): bash benchmarks/gpu_suite.sh [OUT_DIR] [gpu_suite.py options]
# The plumbing on a CPU in seconds: bash benchmarks/gpu_suite.sh /tmp/smoke --device cpu --smoke
set -uo pipefail
cd "$(dirname "$0")"
OUT="${1:-${OUT:-/tmp/umt-gpu}}"
shift || true
mkdir -p "$OUT"
PY="${PYTHON:-python}"
"$PY" gpu_suite.py --out "$OUT" "$@"
status=$?
if [ "${UMT_GPU_EXTRA:-0}" = 1 ]; then
  run() { echo "### $*"; "$@" 2>&1 | tee -a "$OUT/gpu_extra.log"; }
  run "$PY" model_speed.py --device cuda --iters 20
  run "$PY" stage1_step.py --device cuda --preset umt-l16 --steps 10
  run "$PY" finetune_step.py --device cuda --preset umt-b16 --steps 20 --precision bf16 --impl both --compile
  run "$PY" finetune_step.py --device cuda --preset umt-b16 --steps 20 --precision fp16 --impl umt --decode
  run "$PY" stage2_step.py --device cuda --preset umt-b16 --steps 10 --precision bf16 --impl both --compile
  run "$PY" stage2_step.py --device cuda --preset umt-b16 --steps 10 --precision fp16
  run "$PY" downstream_step.py --device cuda --preset umt-b16 --steps 10 --precision bf16
  run "$PY" search_latency.py --threads 16 --rerank
  grep -h '^{' "$OUT/gpu_extra.log" > "$OUT/gpu_extra.jsonl" || true
fi
exit $status
