#!/usr/bin/env bash
# Everything GPU-side in one call (for a session lent a GPU machine): environment, CUDA parity
# against the official fixtures, model timings, the stage-1 step at the paper's UMT-B/16 size
# (batch 64, 8x224, CLIP-B/16 teacher, bf16) with and without torch.compile, and the UMT-B/16
# fine-tuning step (16 videos x 2 clips, 8x224, bf16 and fp16) with evaluation throughput, and the
# UMT-B/16 stage-2 step (32 pairs, 4x224, CLIP-B/16 teacher, BERT-base; bf16 and fp16), and the
# downstream steps at UMT-B/16 size: video QA and multiple choice (12x224, batch 32, BERT-base)
# and AVA detection (8x224, batch 8), and decoding Kinetics-like files per core and through a
# 16-worker DataLoader beside the stage-1 step's clips/s.
# Usage (repo root, with umt importable): bash benchmarks/gpu_suite.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")"
OUT="${1:-${OUT:-/tmp/umt-gpu}}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
run() { echo "### $*"; "$@" 2>&1 | tee -a "$OUT/gpu_suite.log"; }
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
run "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
run "$PY" device_parity.py --device cuda
run "$PY" model_speed.py --device cuda --iters 20
run "$PY" stage1_step.py --device cuda --preset umt-b16 --steps 20 --impl both
run "$PY" stage1_step.py --device cuda --preset umt-b16 --steps 20 --compile
run "$PY" stage1_step.py --device cuda --preset umt-l16 --steps 10
# Is a UMT-B/16 stage-1 run data-bound? The DataLoader with 16 workers on Kinetics-like files
# beside the step's clips/s measured above (eager, not compiled).
GPU_CLIPS=$(grep -h '"preset": "umt-b16"' "$OUT/gpu_suite.log" | grep '"compile": false' | tail -n 1 \
  | "$PY" -c 'import json, sys; print(json.loads(sys.stdin.read())["clips_per_s"])' 2>/dev/null)
run "$PY" data_throughput.py --kinetics-only --workers 16 --out "$OUT/data" \
  ${GPU_CLIPS:+--gpu-clips-per-s "$GPU_CLIPS"}
run "$PY" finetune_step.py --device cuda --preset umt-b16 --steps 20 --precision bf16 --impl both
run "$PY" finetune_step.py --device cuda --preset umt-b16 --steps 20 --precision fp16 --impl umt --decode
run "$PY" stage2_step.py --device cuda --preset umt-b16 --steps 10 --precision bf16 --impl both
run "$PY" stage2_step.py --device cuda --preset umt-b16 --steps 10 --precision fp16
run "$PY" downstream_step.py --device cuda --preset umt-b16 --steps 10 --precision bf16
run "$PY" search_latency.py --threads 16 --rerank
grep -h '^{' "$OUT/gpu_suite.log" > "$OUT/gpu_suite.jsonl" || true
echo "results: $OUT/gpu_suite.log, $OUT/gpu_suite.jsonl"
