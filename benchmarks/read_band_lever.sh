#!/usr/bin/env bash
# Issue 19's read-noise lever at equal steps: the shipped student (models/fan-student.pt) fine-tuned
# STEPS more steps as its last stage was made (Charbonnier, noise-relative level weighting, lr 3e-4
# cosine; benchmarks/finetune_student.sh), once with today's read-noise prior (UPI's narrow scatter
# around its line: data.read_band=0) and once with the read noise log-uniform within BAND natural-log
# units of the line (data.read_band=BAND; 2.3 = 0.1x-10x, the noise grid's span), the same seed and
# so the same photos, crops and shot levels in the same order. Then the start and both fine-tunes on
# the noise grid (benchmarks/noise_grid.py: held-out photos, 6 shot levels x read noise 0.1x / 1x / 10x
# the line, BM3D given the true noise). Writes benchmarks/results/read_band_lever.{md,json,png} and the
# two fine-tunes with their cards: models/ablations/fan-student-rb{0,BAND}.{pt,md,json} (not shipped:
# a new student would need the array and its int8 checkpoints re-made).
# Usage: benchmarks/read_band_lever.sh   (STEPS=3000 BAND=2.3; on 2 cores ~9 min a fine-tune and
#   ~11 min for the grid; re-running skips a shipped fine-tune and resumes one from runs/<name>/last.pt)
set -euo pipefail
STEPS=${STEPS:-3000}
BAND=${BAND:-2.3}
MODELS=models/ablations
COMMON="model.init=models/fan-student.pt schedule.lr=0.0003 schedule.steps=$STEPS schedule.warmup=20 loss.level_weighting=relative"
mkdir -p runs
for band in 0 "$BAND"; do
  # shellcheck disable=SC2086  # COMMON holds several settings on purpose
  [ -f "$MODELS/fan-student-rb$band.pt" ] || fad-train charbonnier name="fan-student-rb$band" $COMMON \
    data.read_band="$band" --threads 2 --ship "$MODELS/fan-student-rb$band.pt" </dev/null
done
python benchmarks/noise_grid.py --models fan-student fan-student-rb0 "fan-student-rb$BAND" \
  --baselines bm3d --name read_band_lever --cards fan-student-rb0 "fan-student-rb$BAND"
