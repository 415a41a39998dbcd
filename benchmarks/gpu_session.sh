#!/usr/bin/env bash
# One GPU session, prepared to run unattended inside a fixed wall-clock budget (the device lease is short):
#   1. a fresh `randomized` training corpus, simulated in parallel processes (tools/make_synthetic.py --processes);
#   2. the CUDA NMS (sparse cascade and dense fallback) at full size: benchmarks/nms.py;
#   3. cryopoint.detect of the shipped model on a full-size tomogram on the GPU: benchmarks/inference.py;
#   4. a training stage from the shipped weights on that corpus at GPU batch size: a 60-step probe measures
#      the throughput, and the stage gets as many steps as fit the time left (the step count is fixed before
#      the stage starts, so its learning-rate schedule is whole); exported like the shipped file;
#   5. if time is left, the same training under torchrun (nccl process group, one rank).
# Every step has its own time limit, so a slow step costs that step only. Results land in OUT_DIR (8 files).
#
#   bash benchmarks/gpu_session.sh OUT_DIR [BUDGET_SECONDS]
#   QUICK=1 bash benchmarks/gpu_session.sh /tmp/out 300     # a small rehearsal on the CPU
set -uo pipefail
OUT_DIR=${1:?usage: gpu_session.sh OUT_DIR [BUDGET_SECONDS]}
BUDGET=${2:-520}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
say() { echo "[gpu_session +$(($(date +%s) - START))s] $*"; }
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/session.log") 2>&1  # at most 8 files come back: this log, train.log, 3 reports, 2 models, metrics
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
WORK=${WORK:-/tmp/gpu_session}
export CRYOPOINT_CACHE=$WORK/cache
SEED=${SEED:-29}
if [ "${QUICK:-0}" = 1 ]; then
  RUNS=6 SHAPE="64 128 128" FULL="64 192 192" BATCH=4 WORKERS=2 PROCS=2 FOLDS=3 MAX_STEPS=200 PROBE=30
else
  RUNS=256 SHAPE="96 256 256" FULL="184 630 630" BATCH=32 WORKERS=12 PROCS=16 FOLDS=8 MAX_STEPS=20000 PROBE=60
fi
python3 - <<'EOF'
import platform, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor())
EOF

say "1. corpus: $RUNS randomized runs ($SHAPE), seed $SEED"
CORPUS=$WORK/corpus_s$SEED
if [ ! -d "$CORPUS/train" ]; then
  timeout 240 python3 tools/make_synthetic.py --out "$CORPUS" --runs "$RUNS" --shape $SHAPE --seed "$SEED" \
    --preset randomized --processes "$PROCS" | tail -c 300 || { say "corpus failed"; exit 1; }
fi

say "2. NMS benchmark ($FULL)"
timeout 150 python3 -m benchmarks.nms --shape $FULL --crop-fraction 92 --out "$OUT_DIR/nms_gpu.md" \
  || say "NMS benchmark failed or timed out"

say "3. inference benchmark ($FULL), GPU variants only"
timeout 180 python3 -m benchmarks.inference --shape $FULL --variants --threads 16 --out "$OUT_DIR/inference_gpu" \
  || say "inference benchmark failed or timed out"

COMMON=(configs/default_model.yaml "data.root=$CORPUS" "data.n_folds=$FOLDS" "data.num_workers=$WORKERS"
  "data.samples_per_epoch=65536" "train.batch_size=$BATCH" train.lr=1e-3 train.warmup_steps=200
  train.init_from=cryopoint/weights/default.pt "train.out_dir=$WORK/runs")
rm -rf "$WORK/runs"  # a run folder that exists would make the trainer pick a new name
say "4a. throughput probe ($PROBE steps, batch $BATCH)"
timeout 150 python3 tools/train.py "${COMMON[@]}" "train.steps=$PROBE" "train.val_every=$PROBE" train.log_every=10 \
  train.name=probe "data.val_runs=[TS_SYN${SEED}_1]" >>"$OUT_DIR/train.log" 2>&1 || say "probe failed"
STEPS=$(python3 -m benchmarks.gpu_session_steps "$WORK/runs/probe" "$(left)" "$MAX_STEPS")
if [ "${STEPS:-0}" -ge 200 ]; then
  say "4b. stage: $STEPS steps"
  timeout $(($(left) - 40)) python3 tools/train.py "${COMMON[@]}" "train.steps=$STEPS" \
    "train.val_every=$((STEPS / 2))" train.log_every=50 train.name=stage >>"$OUT_DIR/train.log" 2>&1 \
    || say "stage failed or timed out"
  cp "$WORK/runs/stage/"*.jsonl "$OUT_DIR/" 2>/dev/null
  for ck in best last; do
    [ -f "$WORK/runs/stage/$ck.pt" ] && python3 tools/export_model.py "$WORK/runs/stage/$ck.pt" \
      --out "$OUT_DIR/stage_$ck.pt" --set infer.runtime=torch --set "infer.roi=[96,320,320]" \
      --set infer.overlap=0 --set post.noise_tail=true | tail -n 2
  done
else
  say "no time for a stage (${STEPS:-0} steps)"
fi

if [ "$(left)" -gt 45 ]; then
  say "5. torchrun, one rank (nccl on CUDA): 20 steps"
  timeout $(($(left) - 5)) python3 -m torch.distributed.run --standalone --nproc_per_node=1 tools/train.py "${COMMON[@]}" train.steps=20 \
    train.val_every=20 train.name=torchrun "data.val_runs=[TS_SYN${SEED}_1]" >>"$OUT_DIR/train.log" 2>&1 \
    && say "torchrun ok" || say "torchrun failed"
  grep -h -o '"world_size": [0-9]*' "$WORK/runs/torchrun/"*.jsonl 2>/dev/null | head -1
fi
say "done; $(left) s of the budget left"
ls -la "$OUT_DIR"
